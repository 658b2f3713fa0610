"""matterport/Mask_RCNN (Keras ``.h5`` + a ``Config`` subclass) without TensorFlow or Keras: the
Config read without running it (:mod:`.config`), the ``.h5`` read with h5py (:mod:`.h5weights`),
the network as torch modules (:mod:`.network`) and an eager rebuild of ``detect()``
(:mod:`.detect`, each convention a function of :mod:`.conventions`). ``docs/matterport.md``
specifies what the exported graph still needs."""
