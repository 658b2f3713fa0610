"""maskrcnn-benchmark and Detectron Mask R-CNN checkpoints without their code
(``edgeseg convert maskrcnn-benchmark`` / ``edgeseg convert detectron``).

Parity with maskrcnn-benchmark itself uses ``../shared/maskrcnn_benchmark`` (its checkpoint and
YAML, the same weights as a Detectron pickle with a Detectron YAML, a frame, and what
maskrcnn-benchmark's predictor returned); those tests skip where it is absent. The rest runs
anywhere: configs, checkpoints, a small random model through ONNX Runtime."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import edgeseg
import edgeseg.cli as cli
from edgeseg.converters.maskrcnn_benchmark.checkpoint import detectron_blobs_to_state_dict, read_weights
from edgeseg.converters.maskrcnn_benchmark.config import read_config
from edgeseg.converters.maskrcnn_benchmark.detectron_config import read_detectron_config, to_benchmark
from edgeseg.errors import ArgumentError, CheckpointError, CheckpointMismatchError
from edgeseg.lint import lint_model
from tests.detection_match import match_by_class, unpack_reference_masks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "maskrcnn_benchmark"
needs_shared = pytest.mark.skipif(not (SHARED / "mrb_caseA.pth").is_file(),
                                  reason=f"maskrcnn-benchmark reference data not found at {SHARED} (a plain clone has "
                                         "no ../shared): the parity tests need it")
FILES = {"maskrcnn-benchmark": ("config_caseA.yaml", "mrb_caseA.pth"),
         "detectron": ("config_caseA_detectron.yaml", "detectron_caseA.pkl")}

#: a small R-50-FPN config as maskrcnn-benchmark's configs write it (yacs strings for tuples)
SMALL: dict[str, Any] = {
    "MODEL": {
        "META_ARCHITECTURE": "GeneralizedRCNN", "MASK_ON": True, "WEIGHT": "catalog://ImageNetPretrained/MSRA/R-50",
        "BACKBONE": {"CONV_BODY": "R-50-FPN"},
        "RESNETS": {"STEM_OUT_CHANNELS": 8, "WIDTH_PER_GROUP": 8, "RES2_OUT_CHANNELS": 32,
                    "BACKBONE_OUT_CHANNELS": 32},
        "RPN": {"USE_FPN": True, "ANCHOR_STRIDE": "(4, 8, 16, 32, 64)", "PRE_NMS_TOP_N_TEST": 300,
                "POST_NMS_TOP_N_TEST": 200, "FPN_POST_NMS_TOP_N_TEST": 300, "PRE_NMS_TOP_N_TRAIN": 2000},
        "ROI_HEADS": {"USE_FPN": True, "SCORE_THRESH": 0.0},
        "ROI_BOX_HEAD": {"NUM_CLASSES": 3, "MLP_HEAD_DIM": 64, "POOLER_RESOLUTION": 7, "POOLER_SAMPLING_RATIO": 2,
                         "POOLER_SCALES": "(0.25, 0.125, 0.0625, 0.03125)",
                         "FEATURE_EXTRACTOR": "FPN2MLPFeatureExtractor", "PREDICTOR": "FPNPredictor"},
        "ROI_MASK_HEAD": {"POOLER_SCALES": "(0.25, 0.125, 0.0625, 0.03125)",
                          "FEATURE_EXTRACTOR": "MaskRCNNFPNFeatureExtractor", "PREDICTOR": "MaskRCNNC4Predictor",
                          "POOLER_RESOLUTION": 14, "POOLER_SAMPLING_RATIO": 2, "RESOLUTION": 28,
                          "CONV_LAYERS": "(16, 16)", "SHARE_BOX_FEATURE_EXTRACTOR": False},
    },
    "INPUT": {"MIN_SIZE_TEST": 160, "MAX_SIZE_TEST": 300},
    "DATASETS": {"TEST": "('coco_2014_minival',)"},
    "DATALOADER": {"SIZE_DIVISIBILITY": 32},
    "SOLVER": {"BASE_LR": 0.02},
}

#: a Detectron FPN Mask R-CNN config as its 12_2017_baselines write one (the keys that differ)
DETECTRON_SMALL: dict[str, Any] = {
    "MODEL": {"TYPE": "generalized_rcnn", "CONV_BODY": "FPN.add_fpn_ResNet50_conv5_body", "NUM_CLASSES": 3,
              "FASTER_RCNN": True, "MASK_ON": True},
    "RESNETS": {"WIDTH_PER_GROUP": 8},
    "FPN": {"FPN_ON": True, "MULTILEVEL_ROIS": True, "MULTILEVEL_RPN": True, "DIM": 32},
    "FAST_RCNN": {"ROI_BOX_HEAD": "fast_rcnn_heads.add_roi_2mlp_head", "ROI_XFORM_METHOD": "RoIAlign",
                  "MLP_HEAD_DIM": 64},
    "MRCNN": {"ROI_MASK_HEAD": "mask_rcnn_heads.mask_rcnn_fcn_head_v1up4convs", "DILATION": 1, "DIM_REDUCED": 16},
    "TRAIN": {"WEIGHTS": "R-50.pkl"},
}


def _module(wrapper: torch.nn.Module, name: str) -> torch.nn.Module:
    """A submodule the graph registers by name (the network adapter's scopes)."""
    return wrapper.get_submodule(name)


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _with(data: dict, override: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key, value in override.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node[p] = dict(node.get(p, {}))
            node = node[p]
        node[leaf] = value
    return out


# ---------------------------------------------------------------------------------------------
# parity with maskrcnn-benchmark itself, for both files


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    import cv2

    frame = cv2.imread(str(SHARED / "input_caseA.png"), cv2.IMREAD_COLOR)
    assert frame is not None
    return np.asarray(frame), dict(np.load(SHARED / "outputs_caseA.npz", allow_pickle=False))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both files of case A converted once for the module: family -> ONNX file."""
    out = {}
    for family, (config, weights) in FILES.items():
        path = tmp_path_factory.mktemp(family) / "caseA.onnx"
        assert cli.main(["convert", family, "--config", str(SHARED / config), "--weights", str(SHARED / weights),
                         "--frame", "400x600", "-o", str(path), "-q"]) == 0
        out[family] = path
    return out


def match(got: Any, ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Each reference detection matched to an unused one of its class with the highest box IoU
    (maskrcnn-benchmark's class k is edgeseg's label k)."""
    return match_by_class(got, ref["boxes"], ref["labels"], ref["scores"], unpack_reference_masks(ref))


@needs_shared
def test_every_levels_boxes_come_from_its_anchors_at_fixed_strides(
        reference: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    """maskrcnn-benchmark's per-level post-NMS boxes are among the decoded anchors of that level,
    to the bit: P6 too, whose grid (7x10, max-pooled from an odd 13x19 P5) is laid at its
    configured stride 64, where dividing the padded 416x608 by the grid would give 59 and 60."""
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    from edgeseg.converters.maskrcnn.graph import FrameToDetections
    from edgeseg.converters.maskrcnn_benchmark.export import graph_options, read
    from edgeseg.converters.maskrcnn_benchmark.model import conventions

    frame, ref = reference
    cfg, model = read("maskrcnn-benchmark", SHARED / "config_caseA.yaml", SHARED / "mrb_caseA.pth")
    wrapper = FrameToDetections(model, (400, 600), graph_options(cfg), conventions(cfg)).eval()
    with torch.no_grad():
        features = _module(wrapper, "backbone")(wrapper.preprocess(torch.from_numpy(frame)))
        objectness, deltas = _module(wrapper, "rpn")(list(features.values()))
        deltas = concat_box_prediction_layers(objectness, deltas)[1]
        coder = wrapper.conventions.box_coder
        boxes = coder.clip(coder.decode(wrapper.rpn_coder.weights, wrapper.rpn_coder.bbox_xform_clip, deltas,
                                        wrapper.anchors), wrapper.resized_hw).numpy()
    start = 0
    for level, size in enumerate(wrapper.level_sizes):
        decoded = boxes[start:start + size]
        start += size
        recorded = ref["rpn_level_post_nms_boxes"][ref["rpn_level_post_nms_level"] == level]
        assert len(recorded) > 0
        nearest = np.abs(recorded[:, None, :] - decoded[None, :, :]).max(-1).min(1)
        assert float(nearest.max()) == 0.0, (level, float(nearest.max()))


@needs_shared
@pytest.mark.parametrize("family", list(FILES))
def test_detections_match_maskrcnn_benchmarks_own(family: str, exported: dict[str, Path],
                                                  reference: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    """The ONNX file on ONNX Runtime: every one of the 100 detections matched by class with box IoU
    >= 0.99, scores within 1e-3, mean mask IoU >= 0.98 (measured: identical to float precision)."""
    frame, ref = reference
    got = edgeseg.load(exported[family]).instances(frame)
    assert len(got) == len(ref["boxes"]) == 100
    figures = match(got, ref)
    assert figures["min_box_iou"] >= 0.99, figures
    assert figures["max_score_diff"] <= 1e-3, figures
    assert figures["mean_mask_iou"] >= 0.98, figures


@needs_shared
def test_the_eager_graph_is_maskrcnn_benchmark_bit_for_bit(
        reference: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    """The eager graph (what ``edgeseg compare`` runs) reproduces maskrcnn-benchmark bit for bit:
    the padded network input, the 1000 RPN proposals (as a set: neighbours with objectness 5e-7
    apart could swap), and the 100 detections' boxes, scores, labels and pasted masks."""
    from edgeseg.converters.maskrcnn.graph import FrameToDetections
    from edgeseg.converters.maskrcnn_benchmark.export import graph_options, read
    from edgeseg.converters.maskrcnn_benchmark.model import conventions
    from edgeseg.custom_ops import unpack_mask_bytes

    frame, ref = reference
    cfg, model = read("maskrcnn-benchmark", SHARED / "config_caseA.yaml", SHARED / "mrb_caseA.pth")
    wrapper = FrameToDetections(model, (400, 600), graph_options(cfg), conventions(cfg)).eval()
    with torch.no_grad():
        x = wrapper.preprocess(torch.from_numpy(frame))
        proposals, real = wrapper.propose(list(_module(wrapper, "backbone")(x).values()))
    assert np.array_equal(x[0].numpy(), ref["image_tensor_normalised_padded"])
    got = proposals[real].numpy()
    want = ref["rpn_proposals_boxes_resized_xyxy"]
    assert got.shape == want.shape == (1000, 4)
    as_set = {tuple(b) for b in got.tolist()}
    assert as_set == {tuple(b) for b in want.tolist()}
    with torch.no_grad():
        num, boxes, scores, labels, masks = wrapper(torch.from_numpy(frame))
    assert int(num[0]) == 100
    # rows in descending score here, class-major there: pair them by box
    rows = [int(np.flatnonzero((boxes.numpy() == ref["boxes"][i]).all(1) & (labels.numpy() == ref["labels"][i]))[0])
            for i in range(100)]
    assert len(set(rows)) == 100
    assert np.array_equal(scores.numpy()[rows], ref["scores"])
    pasted = unpack_mask_bytes(masks.numpy()[rows], 600).astype(bool)
    assert np.array_equal(pasted, np.unpackbits(ref["masks_packed"], axis=-1, count=600).astype(bool))


@needs_shared
@pytest.mark.parametrize("family", list(FILES))
def test_the_graphs_pass_lint_and_convert_to_fp16(family: str, exported: dict[str, Path]) -> None:
    import onnx

    from edgeseg.converters.api import FAMILIES
    from edgeseg.precision.fp16 import to_fp16

    path = exported[family]
    model = onnx.load(str(path))
    assert not lint_model(model)
    reduced = FAMILIES[family].precision_rules.reduced(model.graph)
    assert not lint_model(to_fp16(model, reduced))
    meta = edgeseg.load(path).metadata
    assert meta.arch == {"maskrcnn-benchmark": "mrb_r50_fpn", "detectron": "detectron_r50_fpn"}[family]
    assert meta.classes[1] == "class_1" and len(meta.classes) == 6
    assert meta.preprocessing.channel_order == "bgr" and meta.preprocessing.scale == 1.0
    assert meta.preprocessing.mean == (102.9801, 115.9465, 122.7717)
    assert meta.instance is not None and meta.instance.paste == "torchvision"
    roi = [n for n in model.graph.node if n.op_type == "MultiLevelRoIAlign"]
    assert len(roi) == 2
    for node in roi:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["level_rule"] == 1 and attrs["aligned"] == 0 and attrs["sampling_ratio"] == 2


@needs_shared
def test_compare_against_the_eager_rebuild(exported: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """One file is enough (an eager Mask R-CNN costs 15-30 s here): the Detectron one holds the
    same weights (test_the_detectron_pickle_holds_the_same_model) and passes the parity test."""
    config, weights = FILES["maskrcnn-benchmark"]
    code = cli.main(["compare", str(exported["maskrcnn-benchmark"]), "--config", str(SHARED / config),
                     "--weights", str(SHARED / weights), "--source", str(SHARED / "input_caseA.png"), "--frames", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS: edgeseg vs PyTorch on 1 frame(s)" in out


@needs_shared
def test_compare_rebuilds_a_detectron_file_from_its_own_config(exported: dict[str, Path]) -> None:
    """What ``edgeseg compare`` runs against a Detectron file: the eager graph of the Detectron YAML
    and .pkl, with the same conventions and settings as the maskrcnn-benchmark one."""
    from edgeseg.converters.maskrcnn.graph import FrameToDetections
    from edgeseg.converters.parity import reference_model

    config, weights = FILES["detectron"]
    meta = edgeseg.load(exported["detectron"]).metadata
    got = reference_model(meta, SHARED / weights, config=SHARED / config)
    config, weights = FILES["maskrcnn-benchmark"]
    want = reference_model(edgeseg.load(exported["maskrcnn-benchmark"]).metadata, SHARED / weights,
                           config=SHARED / config)
    assert isinstance(got, FrameToDetections) and isinstance(want, FrameToDetections)
    # the same inference; only the keys its errors name are Detectron's
    detectron_keys = ("TEST.RPN_PRE_NMS_TOP_N", "TEST.RPN_POST_NMS_TOP_N")
    assert got.conventions == replace(want.conventions, rpn_setting_names=detectron_keys)
    assert got.box_roi == want.box_roi and got.mask_roi == want.mask_roi
    assert (got.score_thresh, got.detections, got.proposals, got.level_keep) == (
        want.score_thresh, want.detections, want.proposals, want.level_keep)
    with pytest.raises(ArgumentError, match=r"^a detectron model is compared with its config: --config C\.yaml$"):
        reference_model(meta, SHARED / weights)


@needs_shared
def test_the_detectron_pickle_holds_the_same_model() -> None:
    """Blob for blob, the pickle's tensors are the .pth's (AffineChannel = FrozenBN without eps:
    the same scale and shift), and the Detectron YAML with the blob shapes is the same model."""
    pth = read_weights(SHARED / "mrb_caseA.pth")
    pkl = read_weights(SHARED / "detectron_caseA.pkl")
    assert set(pkl) == {k for k in pth if "anchor" not in k}
    norms = {k.removesuffix(".running_var") for k in pth if k.endswith(".running_var")}
    assert len(norms) == 53
    for key, value in pkl.items():
        prefix = key.rsplit(".", 1)[0]
        if prefix not in norms:
            assert torch.equal(value, pth[key]), key
    for prefix in norms:
        scale = pth[f"{prefix}.weight"] * pth[f"{prefix}.running_var"].rsqrt()
        shift = pth[f"{prefix}.bias"] - pth[f"{prefix}.running_mean"] * scale
        assert torch.equal(pkl[f"{prefix}.weight"], scale) and torch.equal(pkl[f"{prefix}.bias"], shift), prefix
    cfg = to_benchmark(read_detectron_config(SHARED / "config_caseA_detectron.yaml"), pkl)
    mrb = read_config(SHARED / "config_caseA.yaml")
    assert {k for k in mrb.values if not _equal(mrb[k], cfg[k])} == set()
    # maskrcnn-benchmark's own route for the pickle: its configs/caffe2 YAML with the .pkl
    caffe2 = read_config(SHARED / "config_caseA_mrb_caffe2.yaml")
    assert {k for k in mrb.values if not _equal(mrb[k], caffe2[k])} == set()


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ---------------------------------------------------------------------------------------------
# a small random model, anywhere


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, ONNX file) of the small model with random weights at a frame it resizes."""
    tmp = tmp_path_factory.mktemp("small")
    config = _write(tmp / "small.yaml", SMALL)
    out = tmp / "small.onnx"
    assert cli.main(["convert", "maskrcnn-benchmark", "--config", str(config), "--random-weights", "--frame",
                     "240x320", "-o", str(out), "-q"]) == 0
    return config, out


def test_a_resized_frame_runs_and_matches_its_eager_graph(small: tuple[Path, Path]) -> None:
    """Random weights at a frame the config resizes (Pillow's bilinear on uint8, the short side to
    160): the ONNX file against the same graph in eager PyTorch."""
    from edgeseg.converters.maskrcnn.graph import FrameToDetections
    from edgeseg.converters.maskrcnn_benchmark.export import graph_options, read
    from edgeseg.converters.maskrcnn_benchmark.model import conventions

    config, out = small
    cfg, model = read("maskrcnn-benchmark", config, None)
    wrapper = FrameToDetections(model, (240, 320), graph_options(cfg), conventions(cfg)).eval()
    assert wrapper.resized_hw == (160, 213) and wrapper.padded_hw == (160, 224)
    assert wrapper.level_keep == [200, 200, 200, 105, 36]  # POST_NMS_TOP_N_TEST, or all of a small level
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    # the network input: Pillow's bilinear of the uint8 BGR frame, minus the mean, zero padding
    from PIL import Image

    resized = np.asarray(Image.fromarray(frame).resize((213, 160), Image.Resampling.BILINEAR), np.float32)
    want = np.zeros((3, 160, 224), np.float32)
    want[:, :, :213] = (resized - np.array([102.9801, 115.9465, 122.7717], np.float32)).transpose(2, 0, 1)
    with torch.no_grad():
        assert np.array_equal(wrapper.preprocess(torch.from_numpy(frame))[0].numpy(), want)
        num, boxes, scores, labels, _ = wrapper(torch.from_numpy(frame))
    got = edgeseg.load(out).backend.run({"frame": frame}, ["num_detections", "boxes", "scores", "labels"])
    n = int(num[0])
    assert int(got["num_detections"][0]) == n > 0
    np.testing.assert_allclose(got["boxes"][:n], boxes[:n].numpy(), atol=1e-3)
    np.testing.assert_allclose(got["scores"][:n], scores[:n].numpy(), atol=1e-5)
    assert np.array_equal(got["labels"][:n], labels[:n].numpy())


def test_the_small_graph_passes_lint_at_fp32_fp16_and_int8(small: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2
    import onnx

    from edgeseg.converters.api import FAMILIES
    from edgeseg.precision.convert import Calibration, apply_precision
    from edgeseg.precision.fp16 import to_fp16

    rules = FAMILIES["maskrcnn-benchmark"].precision_rules
    model = onnx.load(str(small[1]))
    assert not lint_model(model)
    assert not lint_model(to_fp16(model, rules.reduced(model.graph)))
    monkeypatch.setenv("EDGESEG_CACHE_DIR", str(tmp_path / "cache"))
    images = tmp_path / "calib"
    images.mkdir()
    cv2.imwrite(str(images / "0.png"), np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    out = tmp_path / "int8.onnx"
    with pytest.warns(UserWarning, match="calibration image"):
        apply_precision(small[1], out, "int8", rules, Calibration(images=images))
    assert not lint_model(onnx.load(str(out)))
    assert edgeseg.load(out).metadata.precision == "int8"


def test_resnext_bodies_take_groups_and_widths_from_the_config(tmp_path: Path) -> None:
    """X-101-32x8d as maskrcnn-benchmark writes it (R-101-FPN with 32 groups), at toy widths."""
    from edgeseg.converters.maskrcnn_benchmark.export import arch_name, read

    x101 = _with(SMALL, {"MODEL.BACKBONE.CONV_BODY": "R-101-FPN", "MODEL.RESNETS.NUM_GROUPS": 32,
                         "MODEL.RESNETS.WIDTH_PER_GROUP": 1, "MODEL.RESNETS.STRIDE_IN_1X1": False})
    cfg, model = read("maskrcnn-benchmark", _write(tmp_path / "x.yaml", x101), None)
    body = model.backbone.body
    assert arch_name("maskrcnn-benchmark", cfg) == "mrb_r101_x32x1d_fpn"
    assert [len(getattr(body, f"res{i}")) for i in range(2, 6)] == [3, 4, 23, 3]
    first = body.res3[0]
    assert first.conv2.groups == 32 and first.conv2.out_channels == 64 and first.conv3.out_channels == 64
    assert (first.conv1.stride, first.conv2.stride) == ((1, 1), (2, 2))  # STRIDE_IN_1X1 False
    assert body.stem.conv1.norm.eps == 0.0  # maskrcnn-benchmark's FrozenBatchNorm2d has no epsilon


def test_config_keys_are_read_as_yacs_reads_them(tmp_path: Path) -> None:
    cfg = read_config(_write(tmp_path / "c.yaml", SMALL))
    assert cfg["MODEL.RPN.ANCHOR_STRIDE"] == (4, 8, 16, 32, 64)
    assert cfg["MODEL.ROI_MASK_HEAD.CONV_LAYERS"] == (16, 16)
    assert cfg["MODEL.RPN.NMS_THRESH"] == 0.7 and cfg["INPUT.PIXEL_MEAN"] == (102.9801, 115.9465, 122.7717)
    assert cfg.num_classes == 3 and cfg.blocks == (3, 4, 6, 3)


@pytest.mark.parametrize(("override", "message"), [
    ({"MODEL.BACKBONE.CONV_BODY": "R-50-C4"},
     "MODEL.BACKBONE.CONV_BODY = 'R-50-C4' is not supported: ResNet/ResNeXt FPN bodies only (C4, RetinaNet and FBNet "
     "bodies are not)"),
    ({"MODEL.RESNETS.TRANS_FUNC": "BottleneckWithGN"},
     "MODEL.RESNETS.TRANS_FUNC = 'BottleneckWithGN' is not supported: FrozenBatchNorm (BottleneckWithFixedBatchNorm "
     "/ StemWithFixedBatchNorm) only; GroupNorm is not supported"),
    ({"MODEL.RESNETS.STAGE_WITH_DCN": "(False, True, True, True)"},
     "MODEL.RESNETS.STAGE_WITH_DCN: deformable convolutions are not supported"),
    ({"MODEL.KEYPOINT_ON": True}, "MODEL.KEYPOINT_ON = True is not supported: keypoint heads are not supported"),
    ({"MODEL.RETINANET_ON": True}, "MODEL.RETINANET_ON = True is not supported: RetinaNet is not supported"),
    ({"MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR": "FPNXconv1fcFeatureExtractor"},
     "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR = 'FPNXconv1fcFeatureExtractor' is not supported: the MLP box head only"),
    ({"MODEL.CASCADE_ON": True},
     "unknown setting MODEL.CASCADE_ON: edgeseg does not know what it does, so it cannot promise "
     "maskrcnn-benchmark's results; remove it if it does not apply to inference"),
    ({"MODEL.RPN.NMS_THRESH": "high"},
     "MODEL.RPN.NMS_THRESH = 'high': expected a float like the default 0.7"),
])
def test_settings_edgeseg_cannot_reproduce_are_refused_by_name(tmp_path: Path, override: dict, message: str) -> None:
    path = _write(tmp_path / "c.yaml", _with(SMALL, override))
    with pytest.raises(ArgumentError) as info:
        read_config(path)
    assert str(info.value) == f"c.yaml: {message}"


@pytest.mark.parametrize(("override", "message"), [
    ({"MODEL.CONV_BODY": "ResNet.add_ResNet50_conv4_body"},
     "MODEL.CONV_BODY = 'ResNet.add_ResNet50_conv4_body' is not supported: ResNet/ResNeXt FPN bodies only (C4 "
     "bodies and VGG are not)"),
    ({"MODEL.KEYPOINTS_ON": True}, "MODEL.KEYPOINTS_ON = True is not supported: keypoint heads are not supported"),
    ({"RESNETS.TRANS_FUNC": "bottleneck_gn_transformation"},
     "RESNETS.TRANS_FUNC = 'bottleneck_gn_transformation' is not supported: AffineChannel bottlenecks only "
     "(GroupNorm is not)"),
    ({"TEST.SOFT_NMS.ENABLED": True}, "TEST.SOFT_NMS.ENABLED = True is not supported: soft NMS is not supported"),
    ({"MODEL.CASCADE_ON": True},
     "unknown setting MODEL.CASCADE_ON: edgeseg does not know what it does, so it cannot promise Detectron's "
     "results; remove it if it does not apply to inference"),
    ({"TEST.SCALE": [400]}, "TEST.SCALE = [400]: expected a int like the default 600"),
    ({"MODEL.NUM_CLASSES": [6]}, "MODEL.NUM_CLASSES = [6]: expected a int like the default -1"),
])
def test_detectron_settings_are_refused_by_name(tmp_path: Path, override: dict, message: str) -> None:
    base = DETECTRON_SMALL
    assert to_benchmark(read_detectron_config(_write(tmp_path / "ok.yaml", base)), None)["MODEL.RPN.ANCHOR_SIZES"] == (
        32, 64, 128, 256, 512)
    with pytest.raises(ArgumentError) as info:
        read_detectron_config(_write(tmp_path / "c.yaml", _with(base, override)))
    assert str(info.value) == f"c.yaml: {message}"


def test_command_line_mistakes_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path / "small.yaml", SMALL)
    detectron = _write(tmp_path / "detectron.yaml", DETECTRON_SMALL)
    # Detectron's default 12000 proposals per level; the 64x64 frame resized to 160x160: 40 x 40 x 3 anchors on P2
    limits = _write(tmp_path / "limits.yaml", _with(DETECTRON_SMALL, {"TEST.SCALE": 160, "TEST.MAX_SIZE": 160}))
    (tmp_path / "model_final.pth").write_bytes(b"")
    cases = [
        (["convert", "maskrcnn-benchmark", "--config", str(tmp_path / "nope.yaml"), "--random-weights"],
         f"{tmp_path / 'nope.yaml'}: no such config file"),
        (["convert", "detectron", "--config", str(detectron), "--weights", str(tmp_path / "model_final.pth")],
         "--weights model_final.pth: a Detectron checkpoint is a .pkl of Caffe2 blobs"),
        (["convert", "detectron", "--config", str(limits), "--random-weights"],
         "the RPN's per-level top-k of level 0 (TEST.RPN_PRE_NMS_TOP_N) is 4800: TensorRT's TopK takes at most 3840; "
         "lower it"),
        (["convert", "detectron", "--config", str(config), "--random-weights"],  # a maskrcnn-benchmark YAML
         "small.yaml: unknown setting MODEL.BACKBONE.CONV_BODY (and 29 more): edgeseg does not know what it does, so "
         "it cannot promise Detectron's results; remove it if it does not apply to inference"),
    ]
    for argv, message in cases:
        assert cli.main([*argv, "--frame", "64x64", "-o", str(tmp_path / "x.onnx"), "-q"]) == 2
        assert capsys.readouterr().err == f"edgeseg: error: {message}\n"


# ---------------------------------------------------------------------------------------------
# checkpoints


#: torchvision module names -> maskrcnn-benchmark's (the renames of model.py, stated again)
_BENCHMARK_NAMES = (
    (r"backbone\.body\.stem\.conv1\.norm\.(.+)", r"backbone.body.stem.bn1.\1"),
    (r"backbone\.body\.stem\.conv1\.weight", r"backbone.body.stem.conv1.weight"),
    (r"backbone\.body\.res(\d)\.(\d+)\.shortcut\.norm\.(.+)", r"backbone.body.layer<\1>.\2.downsample.1.\3"),
    (r"backbone\.body\.res(\d)\.(\d+)\.shortcut\.weight", r"backbone.body.layer<\1>.\2.downsample.0.weight"),
    (r"backbone\.body\.res(\d)\.(\d+)\.conv(\d)\.norm\.(.+)", r"backbone.body.layer<\1>.\2.bn\3.\4"),
    (r"backbone\.body\.res(\d)\.(\d+)\.conv(\d)\.weight", r"backbone.body.layer<\1>.\2.conv\3.weight"),
    (r"backbone\.fpn\.inner_blocks\.(\d)\.0\.(.+)", r"backbone.fpn.fpn_inner[\1].\2"),
    (r"backbone\.fpn\.layer_blocks\.(\d)\.0\.(.+)", r"backbone.fpn.fpn_layer[\1].\2"),
    (r"rpn\.head\.conv\.0\.0\.(.+)", r"rpn.head.conv.\1"),
    (r"rpn\.head\.(cls_logits|bbox_pred)\.(.+)", r"rpn.head.\1.\2"),
    (r"roi_heads\.box_head\.(fc[67])\.(.+)", r"roi_heads.box.feature_extractor.\1.\2"),
    (r"roi_heads\.box_predictor\.(.+)", r"roi_heads.box.predictor.\1"),
    (r"roi_heads\.mask_head\.(\d)\.0\.(.+)", r"roi_heads.mask.feature_extractor.mask_fcn[\1].\2"),
    (r"roi_heads\.mask_predictor\.(.+)", r"roi_heads.mask.predictor.\1"),
)


def _benchmark_name(key: str) -> str:
    import re

    for pattern, repl in _BENCHMARK_NAMES:
        if re.fullmatch(pattern, key):
            name = re.sub(pattern, repl, key)
            # <k>: res stage k is layer k - 1; [i]: a 0-based index is maskrcnn-benchmark's i + 1
            name = re.sub(r"<(\d)>", lambda m: str(int(m[1]) - 1), name)
            return re.sub(r"\[(\d)\]", lambda m: str(int(m[1]) + 1), name)
    raise AssertionError(key)


def _small_state_dict(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The small model's weights under maskrcnn-benchmark's own names, with its anchor buffers."""
    from edgeseg.converters.maskrcnn.strategies import DETECTRON_ANCHORS
    from edgeseg.converters.maskrcnn_benchmark import model as mrbmodel

    config = _write(tmp_path / "small.yaml", SMALL)
    sd = {_benchmark_name(k): v.clone() for k, v in mrbmodel.build(read_config(config)).state_dict().items()}
    for i, stride in enumerate((4, 8, 16, 32, 64)):
        sd[f"rpn.anchor_generator.cell_anchors.{i}"] = DETECTRON_ANCHORS.cell_anchors((32.0 * 2 ** i,),
                                                                                       (0.5, 1.0, 2.0), stride)
    return config, sd


def test_pth_checkpoints_load_with_a_module_prefix_and_in_float16(tmp_path: Path) -> None:
    from edgeseg.converters.maskrcnn_benchmark.export import read

    config, sd = _small_state_dict(tmp_path)
    weights = tmp_path / "model_final.pth"
    torch.save({"model": {f"module.{k}": v.half() if v.is_floating_point() else v for k, v in sd.items()},
                "optimizer": {}, "iteration": 90000}, weights)
    _, model = read("maskrcnn-benchmark", config, weights)
    got = model.state_dict()["roi_heads.box_predictor.cls_score.weight"]
    assert got.dtype == torch.float32
    assert torch.equal(got, sd["roi_heads.box.predictor.cls_score.weight"].half().float())


def test_anchors_and_shapes_that_do_not_fit_the_config_are_named(tmp_path: Path) -> None:
    from edgeseg.converters.maskrcnn_benchmark.export import read

    config, sd = _small_state_dict(tmp_path)
    bad = dict(sd)
    bad["rpn.anchor_generator.cell_anchors.0"] = bad["rpn.anchor_generator.cell_anchors.0"] + 1
    torch.save({"model": bad}, tmp_path / "anchors.pth")
    with pytest.raises(CheckpointMismatchError, match=r"^rpn\.anchor_generator\.cell_anchors\.0: the checkpoint's "
                                                      r"anchors .* are not Detectron's anchors of"):
        read("maskrcnn-benchmark", config, tmp_path / "anchors.pth")
    bad = dict(sd)
    bad["roi_heads.box.predictor.cls_score.weight"] = torch.zeros(5, 64)
    torch.save({"model": bad}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointMismatchError, match=r"roi_heads\.box_predictor\.cls_score\.weight"):
        read("maskrcnn-benchmark", config, tmp_path / "shape.pth")


def test_detectron_pickles_load_through_the_restricted_unpickler(tmp_path: Path) -> None:
    blobs = {"conv1_w": np.ones((8, 3, 7, 7), np.float32), "res_conv1_bn_s": np.full(8, 2.0, np.float32),
             "res_conv1_bn_b": np.zeros(8, np.float32), "conv1_w_momentum": np.zeros((8, 3, 7, 7), np.float32),
             "res2_0_branch1_bn_s": np.ones(4, np.float32), "fpn_inner_res4_5_sum_lateral_b": np.ones(2, np.float32),
             "_[mask]_fcn3_w": np.ones((2, 2, 3, 3), np.float32)}
    sd = detectron_blobs_to_state_dict(blobs, "x.pkl")
    assert sorted(sd) == sorted([
        "backbone.body.stem.conv1.weight", "backbone.body.stem.bn1.weight", "backbone.body.stem.bn1.running_mean",
        "backbone.body.stem.bn1.running_var", "backbone.body.stem.bn1.bias",
        "backbone.body.layer1.0.downsample.1.weight", "backbone.body.layer1.0.downsample.1.running_mean",
        "backbone.body.layer1.0.downsample.1.running_var", "backbone.fpn.fpn_inner3.bias",
        "roi_heads.mask.feature_extractor.mask_fcn3.weight"])
    assert sd["backbone.body.stem.bn1.running_var"].tolist() == [1.0] * 8
    with pytest.raises(CheckpointError, match=r"^x\.pkl: blob 'res4_0_branch2a_gn_s' \(4,\) is not part of a "
                                              r"ResNet-FPN Mask R-CNN that edgeseg knows"):
        detectron_blobs_to_state_dict({"res4_0_branch2a_gn_s": np.ones(4, np.float32)}, "x.pkl")
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs, "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"}, protocol=2))
    assert sorted(read_weights(path)) == sorted(sd)

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": Evil()}}, protocol=2))
    with pytest.raises(CheckpointError, match=r"model_final\.pkl: refused: it holds more than numpy arrays "
                                              r"\(__builtin__\.print is not a numpy array or a plain container\)"):
        read_weights(path)
    path.write_bytes(pickle.dumps({"weights": blobs}, protocol=2))
    with pytest.raises(CheckpointError, match=r"^model_final\.pkl: not a Detectron checkpoint: expected a dict with "
                                              r"'blobs'"):
        read_weights(path)
