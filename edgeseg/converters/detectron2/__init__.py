"""detectron2 Mask R-CNN checkpoints -> edgeseg graphs, without detectron2 (``edgeseg convert detectron2``)."""
