"""edgeseg.converters.api.export: one entry point for both families (the CLI is a layer over it),
with the CLI's checks and messages for Python callers too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
import torch

from edgeseg.converters.api import FAMILIES, export
from edgeseg.errors import ArgumentError, BackendUnavailableError, UnknownArchError
from edgeseg.metadata import METADATA_KEY, ModelMetadata


def test_both_families_export_through_one_call(tmp_path: Path) -> None:
    h = export("hrnet", tmp_path / "h.onnx", arch="w18_small_v1", frame_hw=(64, 96), random_weights=True,
               classes="cityscapes", input_hw=(64, 64))
    assert (h.kind, h.arch, h.num_classes, h.frame_hw, h.input_hw) == ("semantic", "hrnetv2_w18_small_v1", 19,
                                                                       (64, 96), (64, 64))
    m = export("maskrcnn", tmp_path / "m.onnx", arch="resnet18_fpn_lite", frame_hw=(64, 96), random_weights=True,
               num_classes=3, detections=7, paste="continuous")
    assert (m.kind, m.arch, m.num_classes, m.extra["max_detections"], m.extra["paste"]) == (
        "instance", "maskrcnn_resnet18_fpn_lite", 3, 7, "continuous")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx"), load_external_data=False).metadata_props}
    assert ModelMetadata.from_json(props[METADATA_KEY]) == m


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"family": "yolo"}, ArgumentError, "unknown model family 'yolo'; choose one of: hrnet, maskrcnn, detectron2, "
                                        "maskrcnn-benchmark, detectron, matterport"),
    ({"format": "tflite"}, ArgumentError, "format 'tflite': choose one of onnx, engine"),
    ({"random_weights": False}, ArgumentError,
     "give --weights PATH, or --random-weights to export an untrained model (for testing)"),
    ({"weights": "w.pth"}, ArgumentError, "--weights and --random-weights exclude each other"),
    ({"arch": "resnet101_fpn"}, UnknownArchError,
     "unknown Mask R-CNN arch 'resnet101_fpn'; choose one of: resnet50_fpn, resnet50_fpn_v2, resnet18_fpn_lite"),
    ({"score_thresh": 1.5}, ArgumentError, "--score-thresh 1.5: must be in [0, 1)"),
    ({"max_candidates": 5000}, ArgumentError, "--max-candidates 5000: must be 1..3840 (TensorRT's TopK limit)"),
    ({"input_hw": (64, 64)}, ArgumentError,
     "maskrcnn takes no option(s) ['input_hw']; its options: score_thresh, detections, max_candidates, paste, "
     "mask_threshold"),
    ({"frame_hw": (16, 600)}, ArgumentError, "frame 16x600 is too small: Mask R-CNN needs at least 32 pixels a side"),
])
def test_bad_arguments_are_the_clis_errors(tmp_path: Path, kwargs: dict[str, Any], error: type[Exception],
                                           message: str) -> None:
    call: dict[str, Any] = {"family": "maskrcnn", "arch": "resnet18_fpn_lite", "frame_hw": (64, 96),
                            "random_weights": True, "num_classes": 3, **kwargs}
    with pytest.raises(error) as err:
        export(call.pop("family"), tmp_path / "x.onnx", **call)
    assert str(err.value) == message
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_engine_format_needs_tensorrt(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"^TensorRT's Python package is not installed"):
        export("hrnet", tmp_path / "h.engine", arch="w18_small_v1", frame_hw=(64, 64), random_weights=True,
               num_classes=3, format="engine")
    assert (tmp_path / "h.onnx").is_file() and not (tmp_path / "h.engine").exists()


def test_random_weights_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    for family, arch in (("hrnet", "w18_small_v1"), ("maskrcnn", "resnet18_fpn_lite")):
        FAMILIES[family].build(arch, 3, None, False, {})
    assert torch.equal(torch.rand(4), expected)


def test_the_model_contract_is_typed_and_parsed_once(tmp_path: Path) -> None:
    import json

    import edgeseg
    from edgeseg.errors import ModelFileError
    from edgeseg.metadata import InstanceSpec, SemanticSpec

    export("maskrcnn", tmp_path / "m.onnx", arch="resnet18_fpn_lite", frame_hw=(64, 96), random_weights=True,
           num_classes=3, detections=7, score_thresh=0.2)
    model = edgeseg.load(tmp_path / "m.onnx", threads=1)
    assert model.metadata is model.backend.model_metadata  # the backend's parse is the model's
    assert model.metadata.instance == InstanceSpec(max_detections=7, row_trim=True, paste="torchvision",
                                                   mask_threshold=0.5, score_thresh=0.2, padded_hw=(256, 384),
                                                   max_candidates=600, proposals=300)
    assert model.metadata.semantic is None
    h = export("hrnet", tmp_path / "h.onnx", arch="w18_small_v1", frame_hw=(64, 64), random_weights=True,
               num_classes=3, align_corners=True)
    assert (h.semantic, h.instance) == (SemanticSpec(align_corners=True), None)

    raw = json.loads(model.metadata.to_json())
    del raw["extra"]["max_detections"]
    with pytest.raises(ModelFileError) as err:
        ModelMetadata.from_json(json.dumps(raw), source="m.onnx")
    assert str(err.value) == (
        "m.onnx: the instance section of the metadata is malformed (KeyError('max_detections')); re-convert it")
    raw["format_version"] = 99
    with pytest.raises(ModelFileError, match=r"^m\.onnx: metadata format 99 is newer than this edgeseg \(.*\) reads; "
                                             r"upgrade edgeseg$"):
        ModelMetadata.from_json(json.dumps(raw), source="m.onnx")
