"""``edgeseg convert matterport`` and ``export("matterport", ...)``: a Keras ``.h5`` and its Config
to one ONNX graph, end to end.

Parity with matterport's own ``detect()`` uses ``../shared/matterport`` (case A: the ``.h5``, the
Config as JSON, the photo, what ``detect()`` returned); those tests skip where it is absent. The
rest runs anywhere: a small random-weight model (ResNet-50 at IMAGE_MAX_DIM 256) against the eager
rebuild, the settings and class names, and each mistake as one typed line."""

from __future__ import annotations

import json
import lzma
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

import edgeseg
import edgeseg.cli as cli
from edgeseg.converters.api import FAMILIES, export
from edgeseg.converters.matterport.export import PRECISION_RULES, classes
from edgeseg.errors import ArgumentError
from edgeseg.lint import lint_model
from tests.detection_match import match_by_class

SHARED = Path(__file__).resolve().parents[2] / "shared" / "matterport"
needs_shared = pytest.mark.skipif(not (SHARED / "weights_caseA.h5.xz").is_file(),
                                  reason=f"matterport reference data not found at {SHARED} (a plain clone has no "
                                         "../shared): the parity tests need it")

#: a small Config: ResNet-50 (matterport's smaller backbone) at a 256 x 256 molded image, thin FPN
#: and heads, every detection kept (random weights score low)
SMALL = {"NAME": "small", "BACKBONE": "resnet50", "NUM_CLASSES": 3, "IMAGE_MIN_DIM": 256, "IMAGE_MAX_DIM": 256,
         "IMAGES_PER_GPU": 1, "TOP_DOWN_PYRAMID_SIZE": 32, "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
         "DETECTION_MIN_CONFIDENCE": 0.0, "DETECTION_MAX_INSTANCES": 50}
SMALL_FRAME = (200, 300)


def _json(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(json.dumps(values))
    return path


def _errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stderr) of the command line (argparse's own usage errors exit)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = int(str(e.code))
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# case A: matterport's own detect()


@pytest.fixture(scope="module")
def h5_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Case A's ``.h5``, decompressed once for the module."""
    if not (SHARED / "weights_caseA.h5.xz").is_file():
        pytest.skip(f"matterport reference data not found at {SHARED} (a plain clone has no ../shared)")
    h5 = tmp_path_factory.mktemp("matterport_h5") / "weights_caseA.h5"
    with lzma.open(SHARED / "weights_caseA.h5.xz") as src, h5.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return h5


@pytest.fixture(scope="module")
def onnx_a(h5_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Case A converted once with the command line (the photo is 400x600)."""
    path = tmp_path_factory.mktemp("matterport_onnx") / "caseA.onnx"
    assert cli.main(["convert", "matterport", "--config", str(SHARED / "config_caseA.json"), "--weights", str(h5_a),
                     "--frame", "400x600", "-o", str(path), "-q"]) == 0
    return path


def _reference_a() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The photo as BGR (what edgeseg takes) and what matterport's detect() returned on its RGB."""
    import cv2

    frame = cv2.imread(str(SHARED / "input_caseA.png"), cv2.IMREAD_COLOR)
    assert frame is not None
    return np.asarray(frame), dict(np.load(SHARED / "outputs_caseA.npz", allow_pickle=False))


@needs_shared
def test_case_a_matches_matterports_detect(onnx_a: Path) -> None:
    """The ONNX file on ONNX Runtime (with edgeseg's CPU ops) on the photo: the 100 detections of
    matterport's detect(), each matched by class with box IoU >= 0.99, scores within 1e-3, mean
    mask IoU >= 0.98."""
    frame, ref = _reference_a()
    got = edgeseg.load(onnx_a).instances(frame)
    n = len(ref["class_ids"])
    assert len(got) == n == 100
    h, w = frame.shape[:2]
    masks = np.unpackbits(ref["masks_packbits"], axis=-1)[..., :w].astype(bool)
    assert masks.shape == (n, h, w)
    figures = match_by_class(got, ref["rois"][:, [1, 0, 3, 2]].astype(np.float32), ref["class_ids"], ref["scores"],
                             masks)
    assert figures["min_box_iou"] >= 0.99, figures
    assert figures["max_score_diff"] <= 1e-3, figures
    assert figures["mean_mask_iou"] >= 0.98, figures


@needs_shared
def test_case_a_file_metadata_lint_and_fp16(onnx_a: Path, h5_a: Path, tmp_path: Path) -> None:
    """What the file says about itself; it passes the parser rules at FP32 and FP16, with the
    network's layers reduced and the RPN logits, class logits, deltas and masks FP32; the API
    call with a class list writes the same graph."""
    from edgeseg.precision.fp16 import to_fp16

    meta = edgeseg.load(onnx_a).metadata
    assert (meta.arch, meta.frame_hw, meta.input_hw) == ("matterport_r50_fpn", (400, 600), (341, 512))
    assert meta.classes == ("__background__", "class_1", "class_2", "class_3", "class_4", "class_5")
    assert meta.preprocessing.channel_order == "rgb" and meta.preprocessing.scale == 1.0
    assert meta.preprocessing.mean == (123.7, 116.8, 103.9) and meta.preprocessing.std == (1.0, 1.0, 1.0)
    assert meta.instance is not None
    assert (meta.instance.max_detections, meta.instance.score_thresh, meta.instance.paste,
            meta.instance.mask_threshold, meta.instance.padded_hw, meta.instance.proposals) == (
        100, 0.2, "zoom", 0.5, (512, 512), 1000)
    model = onnx.load(str(onnx_a))
    assert not lint_model(model)
    reduced = PRECISION_RULES.reduced(model.graph)
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    fp32_layers = [n for n in convs if n not in reduced]
    assert sorted({re.sub(r"_\d+$", "", n.rsplit("/", 2)[-2]) for n in fp32_layers}) == [
        "bbox_fc", "class_logits", "mask_logits", "rpn_bbox", "rpn_class"], fp32_layers
    assert not lint_model(to_fp16(model, reduced))
    names = tmp_path / "names.txt"
    names.write_text("BG\nperson\ncup\nsaucer\nspoon\ntable\n")
    meta_api = export("matterport", tmp_path / "api.onnx", frame_hw=(400, 600), weights=h5_a,
                      config=str(SHARED / "config_caseA.json"), classes=str(names))
    assert meta_api.classes == ("BG", "person", "cup", "saucer", "spoon", "table")
    api = onnx.load(str(tmp_path / "api.onnx"))
    assert api.graph == model.graph


@needs_shared
def test_compare_against_the_eager_rebuild(onnx_a: Path, h5_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["compare", str(onnx_a), "--config", str(SHARED / "config_caseA.json"), "--weights", str(h5_a),
                     "--source", str(SHARED / "input_caseA.png"), "--frames", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS: edgeseg vs PyTorch on 1 frame(s)" in out


@needs_shared
def test_weights_that_do_not_fit_the_config_are_one_line(h5_a: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    values = json.loads((SHARED / "config_caseA.json").read_text())["config_subclass_overrides"]
    argv = ["--weights", str(h5_a), "--frame", "400x600", "-o", str(tmp_path / "x.onnx"), "-q"]
    deep = _json(tmp_path / "deep.json", {**values, "BACKBONE": "resnet101"})
    assert _errors(["convert", "matterport", "--config", str(deep), *argv], capsys) == (
        1, "edgeseg: error: weights_caseA.h5 holds a ResNet-50 backbone but deep.json has BACKBONE = 'resnet101'; "
           "set BACKBONE = \"resnet50\" (matterport's default is resnet101)\n")
    four = _json(tmp_path / "four.json", {**values, "NUM_CLASSES": 4})
    assert _errors(["convert", "matterport", "--config", str(four), *argv], capsys) == (
        1, "edgeseg: error: weights_caseA.h5: layer mrcnn_class_logits kernel has shape (256, 6) but the Config's "
           "network needs (256, 4); check NUM_CLASSES, TOP_DOWN_PYRAMID_SIZE, FPN_CLASSIF_FC_LAYERS_SIZE and "
           "BACKBONE against the training Config\n")
    assert not (tmp_path / "x.onnx").exists()


# ---------------------------------------------------------------------------------------------
# a small random-weight model, anywhere


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """The small Config converted through the API with settings and a class list: (config, ONNX
    file, metadata)."""
    tmp = tmp_path_factory.mktemp("matterport_small")
    config = _json(tmp / "small.json", SMALL)
    (tmp / "names.txt").write_text("cat\ndog\n")
    path = tmp / "small.onnx"
    meta = export("matterport", path, frame_hw=SMALL_FRAME, random_weights=True, config=str(config),
                  classes=str(tmp / "names.txt"), score_thresh=0.0, detections=20)
    return config, path, meta


def test_small_model_settings_and_names(small: tuple[Path, Path, Any]) -> None:
    _, path, meta = small
    assert meta == edgeseg.load(path).metadata
    assert (meta.arch, meta.classes, meta.input_hw) == ("matterport_r50_fpn", ("__background__", "cat", "dog"),
                                                        (171, 256))
    assert meta.instance is not None
    assert (meta.instance.max_detections, meta.instance.score_thresh, meta.instance.padded_hw) == (20, 0.0, (256, 256))
    assert meta.extra["config"] == "small.json"
    graph = onnx.load(str(path)).graph
    assert [o.type.tensor_type.shape.dim[0].dim_value for o in graph.output] == [1, 20, 20, 20, 20]


def test_small_model_matches_the_eager_rebuild(small: tuple[Path, Path, Any], photos: list[np.ndarray]) -> None:
    """``edgeseg compare``'s check on a photo: the file against load_eager-style detect() with the
    same seeded random weights and the file's settings."""
    from edgeseg.converters.parity import compare, reference_model
    from edgeseg.frames import fit_frame

    config, path, _ = small
    model = edgeseg.load(path)
    reference = reference_model(model.metadata, None, config=config)
    report = compare(model, reference, [fit_frame(photos[0], SMALL_FRAME)])
    assert report.passed, report.text()


# ---------------------------------------------------------------------------------------------
# settings, names and mistakes (no graph needed)


def test_class_names_with_or_without_the_background(tmp_path: Path) -> None:
    (tmp_path / "objects.txt").write_text("cat\ndog\n")
    (tmp_path / "all.txt").write_text("BG\ncat\ndog\n")
    assert classes(str(tmp_path / "objects.txt"), 3).names == ("__background__", "cat", "dog")
    assert classes(str(tmp_path / "all.txt"), 3).names == ("BG", "cat", "dog")
    assert classes(None, 3).names == ("__background__", "class_1", "class_2")


def test_random_weights_are_seeded_and_leave_the_callers_random_state_alone(tmp_path: Path) -> None:
    config = str(_json(tmp_path / "small.json", SMALL))
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    a = FAMILIES["matterport"].build("", None, None, False, {"config": config})
    assert torch.equal(torch.rand(4), expected)
    b = FAMILIES["matterport"].build("", 3, None, False, {"config": config})
    assert torch.equal(a.net.mask_logits.weight, b.net.mask_logits.weight)
    with pytest.raises(ArgumentError) as e:
        FAMILIES["matterport"].build("", 4, None, False, {"config": config})
    assert str(e.value) == "--num-classes 4: the Config has NUM_CLASSES = 3 (background included)"


def test_settings_override_the_config(tmp_path: Path) -> None:
    from edgeseg.converters.matterport.export import read

    model = read(_json(tmp_path / "small.json", SMALL), None, score_thresh=0.5, detections=7)
    assert (model.cfg["DETECTION_MIN_CONFIDENCE"], model.cfg["DETECTION_MAX_INSTANCES"]) == (0.5, 7)
    assert read(tmp_path / "small.json", None).cfg["DETECTION_MAX_INSTANCES"] == 50


def test_command_line_mistakes_are_one_typed_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--frame", "200x300", "-o", str(tmp_path / "x.onnx"), "-q"]
    small = _json(tmp_path / "small.json", SMALL)
    assert _errors(["convert", "matterport", "--random-weights", *out], capsys) == (
        2, "edgeseg: error: the following arguments are required: --config (see `edgeseg convert matterport "
           "--help`)\n")
    script = tmp_path / "train.py"
    script.write_text("from mrcnn.config import Config\n\nCLASSES = ['cat', 'dog']\n\n\nclass PetsConfig(Config):\n"
                      "    NAME = 'pets'\n    NUM_CLASSES = 1 + len(CLASSES)\n")
    assert _errors(["convert", "matterport", "--config", str(script), "--random-weights", *out], capsys) == (
        2, "edgeseg: error: train.py:8: PetsConfig.NUM_CLASSES is a call of len(), not a literal; "
           "edgeseg does not run the Config: write the value itself (e.g. NUM_CLASSES = 3), or pass a JSON/YAML of "
           "the attributes\n")
    crop = _json(tmp_path / "crop.json", {**SMALL, "IMAGE_RESIZE_MODE": "crop"})
    assert _errors(["convert", "matterport", "--config", str(crop), "--random-weights", *out], capsys) == (
        2, "edgeseg: error: crop.json: IMAGE_RESIZE_MODE = 'crop' is not supported: a random crop, for training "
           "only; use IMAGE_RESIZE_MODE = \"square\" for inference\n")
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\nfish\n")
    assert _errors(["convert", "matterport", "--config", str(small), "--random-weights", "--classes",
                    str(tmp_path / "names.txt"), *out], capsys) == (
        2, f"edgeseg: error: --classes {tmp_path / 'names.txt'} lists 4 names (background included) but the model "
           "has 3 classes; make them agree\n")
    assert _errors(["convert", "matterport", "--config", str(small), "--random-weights", "--score-thresh", "1",
                    *out], capsys) == (2, "edgeseg: error: --score-thresh 1.0: must be in [0, 1)\n")
    assert _errors(["convert", "matterport", "--config", str(small), "--random-weights", "--max-detections",
                    "5000", *out], capsys) == (
        2, "edgeseg: error: --max-detections 5000: must be 1..3840 (TensorRT's TopK limit)\n")
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(ArgumentError) as e:
        export("matterport", tmp_path / "x.onnx", frame_hw=(200, 300), random_weights=True)
    assert str(e.value) == ("matterport needs its Config: --config train.py[:ConfigClass] (the training script; "
                            "edgeseg reads it without running it) or a .json/.yaml of its attributes")


def test_a_mean_with_more_digits_than_float32_carries_is_named() -> None:
    from edgeseg.converters.matterport.export import mean_not_carried

    # matterport's default and any 6-digit mean are carried exactly by ZoomLinear's float32 attribute
    assert mean_not_carried([123.7, 116.8, 103.9]) == []
    assert mean_not_carried([123.675, 116.28, 103.53]) == []
    # a mean computed over a dataset is not: the conversion says so (a note, not an error)
    assert mean_not_carried([123.67512345, 116.8, 103.9]) == [123.67512345]


def test_a_frame_too_large_for_the_exact_unmold_is_one_line_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"NUM_CLASSES": 3, "IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 128}))
    assert cli.main(["convert", "matterport", "--config", str(config), "--random-weights", "--frame", "4200x300",
                     "-o", str(tmp_path / "m.onnx"), "-q"]) == 2
    assert capsys.readouterr().err == ("edgeseg: error: --frame 4200x300: matterport graphs take frame sides of 2 to "
                                       "4096 pixels (boxes are scaled back to the frame exactly only up to that "
                                       "size); resize the frames first\n")
    assert not (tmp_path / "m.onnx").exists()
