"""The torchvision internals the Mask R-CNN graph reads (edgeseg/converters/maskrcnn/graph.py).

torchvision does not promise these; setup.py caps torchvision below the next minor release, and
this test fails loudly, naming what moved, when a new torchvision is tried.
"""

from __future__ import annotations

import inspect

import pytest
import torchvision
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import boxes as box_ops
from torchvision.ops.poolers import MultiScaleRoIAlign, _setup_scales

from edgeseg.converters.maskrcnn.archs import build_arch


def test_the_private_attributes_the_graph_reads_are_there() -> None:
    model = build_arch("resnet18_fpn_lite", 3)
    rpn, heads, transform = model.rpn, model.roi_heads, model.transform
    for name in ("_pre_nms_top_n", "_post_nms_top_n"):
        value = getattr(rpn, name, None)
        assert isinstance(value, dict) and "testing" in value, f"torchvision {torchvision.__version__}: rpn.{name}"
    for name in ("head", "box_coder", "anchor_generator", "nms_thresh", "min_size", "score_thresh"):
        assert hasattr(rpn, name), f"torchvision {torchvision.__version__}: rpn.{name} moved"
    assert isinstance(heads, RoIHeads)
    for name in ("box_roi_pool", "box_head", "box_predictor", "box_coder", "mask_roi_pool", "mask_head",
                 "mask_predictor", "score_thresh", "nms_thresh", "detections_per_img"):
        assert hasattr(heads, name), f"torchvision {torchvision.__version__}: roi_heads.{name} moved"
    for pool in (heads.box_roi_pool, heads.mask_roi_pool):
        assert isinstance(pool, MultiScaleRoIAlign)
        for name in ("featmap_names", "output_size", "sampling_ratio", "canonical_scale", "canonical_level"):
            assert hasattr(pool, name), f"torchvision {torchvision.__version__}: MultiScaleRoIAlign.{name} moved"
    for name in ("min_size", "max_size", "size_divisible", "image_mean", "image_std"):
        assert hasattr(transform, name), f"torchvision {torchvision.__version__}: transform.{name} moved"
    assert hasattr(rpn.anchor_generator, "num_anchors_per_location")


@pytest.mark.parametrize(("fn", "params"), [
    (_setup_scales, ["features", "image_shapes", "canonical_scale", "canonical_level"]),
    (concat_box_prediction_layers, ["box_cls", "box_regression"]),
    (box_ops.clip_boxes_to_image, ["boxes", "size"]),
    (paste_masks_in_image, ["masks", "boxes", "img_shape", "padding"]),
])
def test_the_private_functions_keep_their_signatures(fn: object, params: list[str]) -> None:
    assert list(inspect.signature(fn).parameters) == params, f"torchvision {torchvision.__version__}: {fn}"  # type: ignore[arg-type]
    assert ImageList is not None
