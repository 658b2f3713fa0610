"""The ``.h5`` that matterport's ``keras_model.save_weights`` writes, read with h5py (no Keras).

Layout (Keras 2.0-2.15, HDF5 format): the root attribute ``layer_names`` lists the layers in
model order; each layer is a group whose ``weight_names`` attribute lists its datasets by path,
e.g. ``f["conv1"]["conv1/kernel:0"]``. The shared RPN is the nested Keras model ``rpn_model``,
one group holding ``rpn_conv_shared/*``, ``rpn_class_raw/*`` and ``rpn_bbox_pred/*``.
TimeDistributed heads are stored under the wrapper's name (``mrcnn_class_conv1/kernel:0``); a
group whose weights share one prefix is keyed by the group's name, whatever that prefix is.
Keras 2.15 adds an empty ``top_level_model_weights`` group that ``layer_names`` does not list.
A whole-model ``save`` puts the same layout under a ``model_weights`` group; both are read.

Array layouts are Keras's and are kept as they are here: Conv2D kernels (kh, kw, in, out), Dense
(in, out), Conv2DTranspose (kh, kw, out, in), BatchNorm gamma/beta/moving_mean/moving_variance.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.errors import CheckpointError

#: the name of a weight: the sub-layer it belongs to and the parameter, without ``:0``
_WEIGHT = re.compile(r"(?:.*/)?([^/]+)/([^/:]+)(?::\d+)?$")


@dataclass(frozen=True)
class KerasWeights:
    """Weights by Keras layer name: ``layers["conv1"] = {"kernel": array, "bias": array}``, in
    file order. ``groups`` maps each layer to the ``layer_names`` group that held it (the nested
    ``rpn_model`` for the RPN), for error messages."""

    layers: dict[str, dict[str, np.ndarray]]
    groups: dict[str, str]
    keras_version: str
    path: str

    @property
    def resnet_depth(self) -> int:
        """50 or 101, from the number of stage-4 blocks (6 or 23: ``res4a`` ... ``res4f`` / ``res4w``)."""
        blocks = {m.group(1) for name in self.layers if (m := re.fullmatch(r"res4([a-z]+)_branch2a", name))}
        depth = {6: 50, 23: 101}.get(len(blocks))
        if depth is None:
            raise CheckpointError(f"{Path(self.path).name}: has {len(blocks)} ResNet stage-4 blocks (res4?_branch2a "
                                  "layers); matterport's ResNet-50 has 6 and ResNet-101 23: is this a matterport "
                                  "Mask R-CNN .h5?")
        return depth


def _text(v: object) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def read_h5_weights(path: str | os.PathLike[str]) -> KerasWeights:
    """Read every layer's weights from a Keras ``save_weights`` / ``save`` ``.h5``; raise
    :class:`CheckpointError` when the file is not one (naming what is missing)."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights {p} not found")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise CheckpointError(f"{p.name}: not an HDF5 file ({e}); pass the .h5 that "
                              "model.keras_model.save_weights() wrote") from None
    with f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise CheckpointError(f"{p.name}: has no 'layer_names' attribute, so it is not a Keras 2 HDF5 weights "
                                  "file; pass the .h5 that model.keras_model.save_weights() wrote (Keras 3 "
                                  ".weights.h5 files are not supported)")
        layers: dict[str, dict[str, np.ndarray]] = {}
        groups: dict[str, str] = {}
        for gname in (_text(n) for n in root.attrs["layer_names"]):
            group = root[gname]
            wnames = [_text(n) for n in group.attrs.get("weight_names", [])]
            parsed = []
            for wname in wnames:
                m = _WEIGHT.match(wname)
                if m is None:
                    raise CheckpointError(f"{p.name}: layer {gname} has a weight named {wname!r}, not "
                                          "'<layer>/<param>:0'")
                parsed.append((wname, m.group(1), m.group(2)))
            # A group whose weights share one prefix is one layer: key it by the group's (the
            # layer's) name, whatever prefix Keras gave the weights (a TimeDistributed inner
            # layer, a "_1" suffix from a second build). A nested model (rpn_model) holds several
            # sub-layers: key each weight by its own sub-layer name.
            one_layer = len({sub for _, sub, _ in parsed}) == 1
            for wname, sub, param in parsed:
                layer = gname if one_layer else sub
                if param in layers.get(layer, {}):
                    raise CheckpointError(f"{p.name}: weight {layer}/{param} appears twice (in {groups[layer]} "
                                          f"and {gname})")
                layers.setdefault(layer, {})[param] = np.asarray(group[wname], dtype=np.float32)
                groups[layer] = gname
        return KerasWeights(layers=layers, groups=groups, keras_version=_text(root.attrs.get("keras_version", "?")),
                            path=str(p))
