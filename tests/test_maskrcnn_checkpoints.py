"""Mask R-CNN weights load strictly in the forms users have; bad checkpoints and frames are refused
with messages that name the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

import edgeseg.cli as cli
from edgeseg.converters.maskrcnn.archs import build_arch
from edgeseg.converters.maskrcnn.export import build_maskrcnn, export_maskrcnn
from edgeseg.errors import ArgumentError, CheckpointMismatchError, UnknownArchError


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("maskrcnn_weights")
    files = {}
    for name, model in (("v1_91", build_arch("resnet50_fpn", 91)), ("v2_91", build_arch("resnet50_fpn_v2", 91)),
                        ("v1_5", build_arch("resnet50_fpn", 5))):
        files[name] = d / f"{name}.pth"
        torch.save(model.state_dict(), files[name])
    # Trained from scratch with torchvision's builder: BatchNorm (with counters) in the backbone.
    files["scratch"] = d / "scratch.pth"
    torch.save(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5).state_dict(), files["scratch"])
    return files


def test_published_layout_and_scratch_trained_weights_load(weights: dict[str, Path]) -> None:
    ref = torch.load(weights["v1_91"], weights_only=True)
    model = build_maskrcnn("resnet50_fpn", weights=weights["v1_91"])  # class count from the file
    assert model.roi_heads.box_predictor.cls_score.out_features == 91
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    scratch = build_maskrcnn("resnet50_fpn", weights=weights["scratch"])
    assert scratch.roi_heads.box_predictor.cls_score.out_features == 5


def test_v2_weights_with_the_v1_arch(weights: dict[str, Path]) -> None:
    with pytest.raises(CheckpointMismatchError) as info:
        build_maskrcnn("resnet50_fpn", weights=weights["v2_91"])
    msg = str(info.value)
    assert msg.startswith("checkpoint does not fit maskrcnn resnet50_fpn with 91 classes: ")
    assert "unexpected key(s), first: backbone.fpn.inner_blocks.0.1.weight" in msg
    assert msg.endswith("; it fits --arch resnet50_fpn_v2 --num-classes 91")


def test_class_count_mismatch(weights: dict[str, Path]) -> None:
    with pytest.raises(CheckpointMismatchError) as info:
        build_maskrcnn("resnet50_fpn", 91, weights=weights["v1_5"])
    msg = str(info.value)
    assert ("first: roi_heads.box_predictor.cls_score.weight: checkpoint (5, 1024) vs model (91, 1024)" in msg)
    assert msg.endswith("; it fits --arch resnet50_fpn --num-classes 5")


def test_unknown_arch() -> None:
    with pytest.raises(UnknownArchError) as info:
        build_maskrcnn("resnet101_fpn", 91)
    assert str(info.value) == ("unknown Mask R-CNN arch 'resnet101_fpn'; "
                               "choose one of: resnet50_fpn, resnet50_fpn_v2, resnet18_fpn_lite")


@pytest.mark.parametrize(
    ("frame_hw", "message"),
    [
        ((16, 600), "frame 16x600 is too small: Mask R-CNN needs at least 32 pixels a side"),
        ((40, 4000), "frame 40x4000 is too elongated: the model resizes it to 13x1333, under 32 pixels a side"),
    ],
)
def test_frame_too_small_for_the_model(tmp_path: Path, frame_hw: tuple[int, int], message: str) -> None:
    with pytest.raises(ArgumentError) as info:
        export_maskrcnn(build_arch("resnet50_fpn", 3), tmp_path / "x.onnx", frame_hw)
    assert str(info.value) == message
    assert list(tmp_path.iterdir()) == []


def test_cli_convert_reports_a_bad_checkpoint_in_one_line(weights: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["convert", "maskrcnn", "--arch", "resnet50_fpn", "--weights", str(weights["v2_91"]),
                     "--frame", "400x600", "-o", str(tmp_path / "m.onnx"), "-q"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeseg: error: checkpoint does not fit maskrcnn resnet50_fpn")
    assert err[0].endswith("it fits --arch resnet50_fpn_v2 --num-classes 91")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"score_thresh": 1.0}, "--score-thresh 1.0: must be in [0, 1)"),
        ({"detections": 0}, "--max-detections 0: must be 1..3840 (TensorRT's TopK limit)"),
        ({"detections": 4000}, "--max-detections 4000: must be 1..3840 (TensorRT's TopK limit)"),
        ({"max_candidates": 3841}, "--max-candidates 3841: must be 1..3840 (TensorRT's TopK limit)"),
        ({"paste": "nearest"}, "--paste 'nearest': must be one of torchvision, continuous, zoom"),
        ({"mask_threshold": 1.5}, "--mask-threshold 1.5: must be in [0, 1]"),
    ],
)
def test_graph_options_are_checked_in_the_library(options: dict[str, object], message: str) -> None:
    from edgeseg.converters.maskrcnn.graph import GraphOptions

    with pytest.raises(ArgumentError) as info:
        GraphOptions(**options)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_a_model_whose_rpn_nms_exceeds_tensorrts_limit_is_refused(tmp_path: Path) -> None:
    """TensorRT's NonMaxSuppression considers at most 5000 boxes per image and its TopK takes
    K <= 3840: a configuration past either is refused before anything is exported."""
    model = build_arch("resnet50_fpn", 3)
    model.rpn._pre_nms_top_n["testing"] = 1200  # 4 levels x 1200 + the 507 anchors of the last > 5000
    with pytest.raises(ArgumentError) as info:
        export_maskrcnn(model, tmp_path / "x.onnx", (800, 800))
    assert str(info.value) == (
        "the RPN's NonMaxSuppression (rpn.pre_nms_top_n_test per level) would consider 5307 boxes: TensorRT's "
        "NonMaxSuppression considers at most 5000 per image; lower it")
    model.rpn._pre_nms_top_n["testing"] = 4000
    with pytest.raises(ArgumentError) as info:
        export_maskrcnn(model, tmp_path / "x.onnx", (800, 800))
    assert str(info.value) == (
        "the RPN's per-level top-k of level 0 (rpn.pre_nms_top_n_test) is 4000: TensorRT's TopK takes at most 3840; "
        "lower it")
    assert list(tmp_path.iterdir()) == []
