"""maskrcnn-benchmark and Detectron Mask R-CNN checkpoints (issue 22)."""
