"""detectron2 Mask R-CNN checkpoints without detectron2 (``edgeseg convert detectron2``).

Parity with detectron2 itself uses ``../shared/detectron2`` (a checkpoint, its config, a frame and
what detectron2's ``DefaultPredictor`` returned); those tests skip where it is absent. The rest
runs anywhere: the resize against Pillow, configs, checkpoints, the graph rules."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import edgeseg
import edgeseg.cli as cli
from edgeseg.converters.detectron2.config import _merge, read_config
from edgeseg.converters.detectron2.resize import (
    PillowBilinear,
    pillow_pass_order,
    pillow_resize_numpy,
    resized_hw,
)
from edgeseg.errors import ArgumentError, CheckpointError, CheckpointMismatchError
from edgeseg.lint import lint_model
from tests.detection_match import match_by_class, unpack_reference_masks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "detectron2"
needs_shared = pytest.mark.skipif(not (SHARED / "d2_caseA.pth").is_file(),
                                  reason=f"detectron2 reference data not found at {SHARED} (a plain clone has no "
                                         "../shared): the parity tests need it")

#: a small Base-RCNN-FPN-style config (what a model-zoo config sets, at a fraction of the width)
SMALL = {
    "MODEL": {
        "META_ARCHITECTURE": "GeneralizedRCNN", "MASK_ON": True,
        "BACKBONE": {"NAME": "build_resnet_fpn_backbone", "FREEZE_AT": 2},
        "RESNETS": {"DEPTH": 50, "OUT_FEATURES": ["res2", "res3", "res4", "res5"], "STEM_OUT_CHANNELS": 8,
                    "RES2_OUT_CHANNELS": 32, "WIDTH_PER_GROUP": 8},
        "FPN": {"IN_FEATURES": ["res2", "res3", "res4", "res5"], "OUT_CHANNELS": 32},
        "ANCHOR_GENERATOR": {"SIZES": [[32], [64], [128], [256], [512]], "ASPECT_RATIOS": [[0.5, 1.0, 2.0]]},
        "RPN": {"IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"], "PRE_NMS_TOPK_TEST": 300, "POST_NMS_TOPK_TEST": 300},
        "ROI_HEADS": {"NAME": "StandardROIHeads", "IN_FEATURES": ["p2", "p3", "p4", "p5"], "NUM_CLASSES": 3},
        "ROI_BOX_HEAD": {"NAME": "FastRCNNConvFCHead", "NUM_FC": 2, "FC_DIM": 64, "POOLER_RESOLUTION": 7},
        "ROI_MASK_HEAD": {"NAME": "MaskRCNNConvUpsampleHead", "NUM_CONV": 2, "CONV_DIM": 16},
    },
    "INPUT": {"MIN_SIZE_TEST": 160, "MAX_SIZE_TEST": 300},
    "SOLVER": {"BASE_LR": 0.02},  # training-only sections are ignored
}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------------------------------------
# parity with detectron2 itself


@pytest.fixture(scope="module")
def case_a(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, dict[str, np.ndarray]]:
    import cv2

    out = tmp_path_factory.mktemp("d2") / "caseA.onnx"
    assert cli.main(["convert", "detectron2", "--config", str(SHARED / "config_caseA.yaml"), "--weights",
                     str(SHARED / "d2_caseA.pth"), "--frame", "400x600", "-o", str(out), "-q"]) == 0
    frame = cv2.imread(str(SHARED / "input_caseA.png"), cv2.IMREAD_COLOR)
    assert frame is not None
    ref = dict(np.load(SHARED / "outputs_caseA.npz", allow_pickle=False))
    return out, np.asarray(frame), ref


@needs_shared
def test_detections_match_detectron2s_own(case_a: tuple[Path, np.ndarray, dict[str, np.ndarray]]) -> None:
    """Every detection of detectron2's DefaultPredictor matched by class and box IoU (scores are
    7.8e-6 apart at closest, so order may differ): IoU >= 0.99, scores within 1e-3, mask IoU."""
    path, frame, ref = case_a
    got = edgeseg.load(path).instances(frame)
    assert len(got) == len(ref["boxes"]) == 100
    figures = match_by_class(got, ref["boxes"], ref["classes"] + 1, ref["scores"], unpack_reference_masks(ref))
    assert figures["min_box_iou"] >= 0.99, figures
    assert figures["max_score_diff"] <= 1e-3, figures
    assert figures["mean_mask_iou"] >= 0.98, figures


@needs_shared
def test_the_graph_passes_the_parser_rules_and_converts_to_fp16(case_a: tuple[Path, np.ndarray, dict]) -> None:
    import onnx

    from edgeseg.converters.api import FAMILIES
    from edgeseg.precision.fp16 import to_fp16

    model = onnx.load(str(case_a[0]))
    assert not lint_model(model)
    reduced = FAMILIES["detectron2"].precision_rules.reduced(model.graph)
    assert not lint_model(to_fp16(model, reduced))
    meta = edgeseg.load(case_a[0]).metadata
    assert meta.arch == "detectron2_r50_fpn" and meta.classes[1] == "class_0"
    assert meta.preprocessing.channel_order == "bgr" and meta.preprocessing.scale == 1.0
    assert meta.instance is not None and meta.instance.paste == "continuous"


@needs_shared
def test_compare_against_the_eager_reimplementation(case_a: tuple[Path, np.ndarray, dict],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["compare", str(case_a[0]), "--config", str(SHARED / "config_caseA.yaml"), "--weights",
                     str(SHARED / "d2_caseA.pth"), "--source", str(SHARED / "input_caseA.png"), "--frames", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS: edgeseg vs PyTorch on 1 frame(s)" in out


# ---------------------------------------------------------------------------------------------
# the resize


@pytest.mark.parametrize(("in_hw", "out_hw"), [
    ((400, 600), (800, 1200)), ((480, 640), (800, 1067)), ((720, 1280), (400, 711)), ((1080, 1920), (800, 1422)),
    ((97, 33), (31, 70)), ((33, 97), (70, 31)), ((101, 77), (53, 149)), ((50, 50), (50, 50)), ((17, 300), (17, 41)),
])
def test_resize_is_pillows_bilinear_to_the_pixel(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
    from PIL import Image

    image = np.random.default_rng(sum(in_hw) + sum(out_hw)).integers(0, 256, (*in_hw, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(image).resize((out_hw[1], out_hw[0]), Image.Resampling.BILINEAR))
    order = pillow_pass_order(in_hw, out_hw)
    np.testing.assert_array_equal(pillow_resize_numpy(image, out_hw, order), want)
    graph = PillowBilinear(in_hw, out_hw, order)
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    got = graph(x)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(got, want.astype(np.float32))  # float values that are exactly the uint8 result


def _tf32(x: np.ndarray) -> np.ndarray:
    """float32 rounded as a TF32 tensor core reads it: 10 of the 23 mantissa bits, to nearest even."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    dropped = 13
    half, lsb = 1 << (dropped - 1), (bits >> dropped) & 1
    rounded = ((bits + half - 1 + lsb) >> dropped) << dropped
    return rounded.astype(np.uint32).view(np.float32)


@pytest.mark.parametrize(("in_hw", "out_hw"), [((1080, 1920), (800, 1422)), ((400, 600), (800, 1200)),
                                               ((97, 33), (31, 70)), ((1000, 1000), (63, 63))])
def test_resize_stays_exact_when_tensorrt_uses_tf32(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
    """TensorRT runs float32 matrix products on TF32 tensor cores by default (operands rounded to
    11 significant bits, products accumulated in float32). Both operands of the resize's products
    are integers of at most 11 bits (uint8 pixels; the coefficients' 11-bit halves), which TF32
    holds exactly, so the sums are the same exact integers with TF32 on or off."""
    assert np.array_equal(_tf32(np.array([1.0 + 2**-10, 1.0 + 2**-11], np.float32)), [1.0 + 2**-10, 1.0])
    graph = PillowBilinear(in_hw, out_hw, "hv")
    for name in ("h_hi", "h_lo", "w_hi", "w_lo"):
        k = getattr(graph, name).numpy()
        assert k.max() <= 2**11 and np.array_equal(_tf32(k), k), name
    pixels = np.arange(256, dtype=np.float32)  # what each pass reads: the frame, then the first pass's uint8
    assert np.array_equal(_tf32(pixels), pixels)


def test_resized_size_is_detectron2s_rule() -> None:
    assert resized_hw((480, 640), 800, 1333) == (800, 1067)
    assert resized_hw((400, 600), 400, 667) == (400, 600)
    assert resized_hw((720, 1280), 800, 1333) == (750, 1333)  # long side capped, int(x + 0.5)
    assert resized_hw((1000, 333), 800, 1333) == (1333, 444)


def test_a_frame_that_needs_resizing_runs_and_matches_its_eager_graph(tmp_path: Path) -> None:
    """A random-weight model at a frame the config resizes (160 short side): the ONNX file
    against the same graph in eager PyTorch."""
    from edgeseg.converters.detectron2.export import build_detectron2, graph_options
    from edgeseg.converters.detectron2.model import conventions
    from edgeseg.converters.maskrcnn.graph import FrameToDetections

    config = _write(tmp_path / "small.yaml", SMALL)
    out = tmp_path / "small.onnx"
    assert cli.main(["convert", "detectron2", "--config", str(config), "--random-weights", "--frame", "240x320",
                     "--score-thresh", "0", "-o", str(out), "-q"]) == 0
    cfg, model = build_detectron2(config, None)
    assert isinstance(model, torch.nn.Module)
    wrapper = FrameToDetections(model, (240, 320), graph_options(cfg, score_thresh=0.0), conventions(cfg)).eval()
    assert wrapper.resized_hw == (160, 213)
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    with torch.no_grad():
        num, boxes, scores, labels, _ = wrapper(torch.from_numpy(frame))
    got = edgeseg.load(out).backend.run({"frame": frame}, ["num_detections", "boxes", "scores", "labels"])
    n = int(num[0])
    assert int(got["num_detections"][0]) == n > 0
    np.testing.assert_allclose(got["boxes"][:n], boxes[:n].numpy(), atol=1e-3)
    np.testing.assert_allclose(got["scores"][:n], scores[:n].numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["labels"][:n], labels[:n].numpy())


# ---------------------------------------------------------------------------------------------
# configs and checkpoints


def test_base_files_are_followed_and_the_file_wins(tmp_path: Path) -> None:
    _write(tmp_path / "Base.yaml", SMALL)
    child = _write(tmp_path / "child.yaml", {"_BASE_": "Base.yaml", "MODEL": {"ROI_HEADS": {"NUM_CLASSES": 7}}})
    cfg = read_config(child)
    assert cfg.num_classes == 7 and cfg["MODEL.FPN.OUT_CHANNELS"] == 32


@pytest.mark.parametrize(("override", "message"), [
    ({"MODEL": {"RESNETS": {"NORM": "GN"}}},
     r"MODEL.RESNETS.NORM = 'GN' is not supported: FrozenBN or BN \(folded at inference\)"),
    ({"MODEL": {"META_ARCHITECTURE": "RetinaNet"}}, "MODEL.META_ARCHITECTURE = 'RetinaNet' is not supported"),
    ({"MODEL": {"ROI_HEADS": {"NAME": "CascadeROIHeads"}}}, "MODEL.ROI_HEADS.NAME = 'CascadeROIHeads'"),
    ({"MODEL": {"RPN": {"SHINY_NEW_OPTION": 1}}}, "unknown setting MODEL.RPN.SHINY_NEW_OPTION: edgeseg does not know"),
    ({"MODEL": {"RESNETS": {"DEFORM_ON_PER_STAGE": [False, True, True, True]}}}, "deformable convolutions"),
    ({"INPUT": {"FORMAT": "YUV"}}, "INPUT.FORMAT = 'YUV' is not supported"),
])
def test_settings_edgeseg_cannot_reproduce_are_refused_by_name(tmp_path: Path, override: dict, message: str) -> None:
    path = _write(tmp_path / "cfg.yaml", _merge(SMALL, override))
    with pytest.raises(ArgumentError, match=message):
        read_config(path)


def test_a_missing_base_or_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    child = _write(tmp_path / "child.yaml", {"_BASE_": "../Base-RCNN-FPN.yaml"})
    with pytest.raises(ArgumentError, match=r"its _BASE_ ../Base-RCNN-FPN.yaml is not here"):
        read_config(child)
    assert cli.main(["convert", "detectron2", "--config", str(tmp_path / "nope.yaml"), "--random-weights",
                     "--frame", "64x64", "-o", str(tmp_path / "x.onnx")]) == 2
    assert capsys.readouterr().err == f"edgeseg: error: {tmp_path / 'nope.yaml'}: no such config file\n"


def _small_state(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A detectron2-named state dict of the SMALL config, made from the model edgeseg builds."""
    from edgeseg.converters.detectron2 import model as d2model

    config = _write(tmp_path / "small.yaml", SMALL)
    cfg = read_config(config)
    tv = d2model.build(cfg).state_dict()
    # invert the renaming on the keys that carry over one to one (enough for loading tests)
    sd = {}
    for key in tv:
        if key.startswith("backbone.body."):
            sd["backbone.bottom_up." + key[len("backbone.body."):]] = tv[key]
    return config, sd


def test_model_zoo_pkl_files_load_through_the_restricted_unpickler(tmp_path: Path) -> None:
    from edgeseg.converters.detectron2.checkpoint import read_detectron2_weights

    arrays = {"model": {"a.weight": np.ones((2, 3), np.float32), "b.bias": np.zeros(4, np.float64)},
              "__author__": "zoo"}
    zoo = tmp_path / "model_final.pkl"
    zoo.write_bytes(pickle.dumps(arrays))
    sd = read_detectron2_weights(zoo)
    assert set(sd) == {"a.weight", "b.bias"} and sd["b.bias"].dtype == torch.float32

    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"w": Payload()}}))
    with pytest.raises(CheckpointError, match=r"evil.pkl: refused: it holds more than numpy arrays \(builtins.print"
                                              r".*pass --trust-checkpoint"):
        read_detectron2_weights(evil)


def test_keys_and_shapes_that_do_not_fit_the_config_are_named(tmp_path: Path) -> None:
    from edgeseg.converters.detectron2 import model as d2model

    config, sd = _small_state(tmp_path)
    cfg = read_config(config)
    with pytest.raises(CheckpointMismatchError, match=r"does not fit the detectron2 model of small.yaml: .*missing "
                                                      r"key\(s\), first: backbone.fpn"):
        d2model.load(cfg, sd)
    sd["backbone.bottom_up.stem.conv1.weight"] = torch.zeros(9, 3, 7, 7)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch\(es\), first: backbone.body.stem.conv1.weight: "
                                                      r"checkpoint \(9, 3, 7, 7\) vs model \(8, 3, 7, 7\)"):
        d2model.load(cfg, sd)
