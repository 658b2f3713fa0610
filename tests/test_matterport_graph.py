"""matterport's graph (``edgeseg.converters.matterport.model.build_graph``): the Mask R-CNN skeleton
with matterport's stages reproduces what matterport's own ``detect()`` returned on the shared case
A (``../shared/matterport``), run eagerly in PyTorch (the custom ops' torch stand-ins) and exported
to ONNX and run through ``edgeseg.load`` (ONNX Runtime with the CPU build of the custom ops)."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from edgeseg.custom_ops import unpack_mask_bytes
from tests.detection_match import match_by_class

SHARED = Path(__file__).resolve().parents[2] / "shared" / "matterport"
pytestmark = pytest.mark.skipif(not (SHARED / "weights_caseA.h5.xz").is_file(),
                                reason=f"matterport reference data not found at {SHARED} (a plain clone has no "
                                       "../shared): the parity tests need it")

# the bounds (docs/matterport.md): every detection matched by class and box IoU
MIN_BOX_IOU, MAX_SCORE_DIFF, MIN_MEAN_MASK_IOU = 0.99, 1e-3, 0.98


@pytest.fixture(scope="module")
def case_a(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The eager model of case A (the .h5 decompressed once), its frame (BGR, as cv2 reads it,
    which the graph takes) and what matterport's detect() returned."""
    import cv2

    from edgeseg.converters.matterport.detect import load_eager

    tmp = tmp_path_factory.mktemp("matterport_graph")
    h5 = tmp / "weights_caseA.h5"
    with lzma.open(SHARED / "weights_caseA.h5.xz") as src, h5.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    model = load_eager(h5, SHARED / "config_caseA.json")
    frame = cv2.imread(str(SHARED / "input_caseA.png"), cv2.IMREAD_COLOR)
    assert frame is not None
    ref = dict(np.load(SHARED / "outputs_caseA.npz"))
    return SimpleNamespace(model=model, frame=np.ascontiguousarray(frame), ref=ref, tmp=tmp)


@pytest.fixture(scope="module")
def graph(case_a: SimpleNamespace) -> torch.nn.Module:
    from edgeseg.converters.matterport.model import build_graph

    return build_graph(case_a.model.net, case_a.model.cfg, case_a.frame.shape[:2])


def _reference(ref: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """detect()'s detections as edgeseg's: boxes x0, y0, x1, y1 (from y1, x1, y2, x2), labels,
    scores, masks [N, H, W] bool."""
    n, _, w = (int(v) for v in ref["masks_shape"])
    masks = np.unpackbits(ref["masks_packbits"], axis=-1)[..., :w].astype(bool)
    return ref["rois"][:, [1, 0, 3, 2]].astype(np.float32), ref["class_ids"], ref["scores"], masks[:n]


def _as_result(outputs: Any, width: int) -> Any:
    """The graph's five outputs (numpy) as the detections they hold (masks unpacked, bool)."""
    num, boxes, scores, labels, masks = outputs
    n = int(num.reshape(-1)[0])
    return SimpleNamespace(boxes=boxes[:n], scores=scores[:n], labels=labels[:n],
                           masks=unpack_mask_bytes(masks[:n], width).astype(bool))


@pytest.fixture(scope="module")
def eager(case_a: SimpleNamespace, graph: torch.nn.Module) -> Any:
    """The graph module run once in PyTorch on case A's frame."""
    with torch.no_grad():
        out = graph(torch.from_numpy(case_a.frame))
    return _as_result([t.numpy() for t in out], case_a.frame.shape[1])


def _assert_parity(got: Any, ref: dict[str, np.ndarray]) -> dict[str, float]:
    boxes, labels, scores, masks = _reference(ref)
    assert len(got.boxes) == len(boxes) == 100
    figures = match_by_class(got, boxes, labels, scores, masks)
    assert figures["min_box_iou"] >= MIN_BOX_IOU, figures
    assert figures["max_score_diff"] <= MAX_SCORE_DIFF, figures
    assert figures["mean_mask_iou"] >= MIN_MEAN_MASK_IOU, figures
    return figures


def test_the_molded_input_is_matterports_to_the_bit(case_a: SimpleNamespace, graph: Any) -> None:
    with torch.no_grad():
        molded = graph.preprocess(torch.from_numpy(case_a.frame))
    assert molded.shape == (1, 3, 512, 512) and molded.dtype == torch.float32
    assert np.array_equal(molded[0].permute(1, 2, 0).numpy(), case_a.ref["molded_image"])
    assert graph.window == tuple(int(v) for v in case_a.ref["window"]) == (85, 0, 426, 512)


def test_the_eager_graph_reproduces_detect(case_a: SimpleNamespace, eager: Any) -> None:
    figures = _assert_parity(eager, case_a.ref)
    print(f"eager graph vs detect(): {figures}")
    assert eager.labels.dtype == np.int32 and eager.boxes.dtype == np.float32
    # boxes are the integers detect() rounds to
    assert np.array_equal(eager.boxes, np.round(eager.boxes))


@pytest.fixture(scope="module")
def exported(case_a: SimpleNamespace, graph: Any) -> Path:
    """The graph traced to ONNX once, with the metadata edgeseg.load reads (written here as the
    other Mask R-CNN exporters write theirs: this tests the graph, the converter's own file is
    tests/test_matterport_export.py's)."""
    from edgeseg.classes import ClassSet, generated_palette
    from edgeseg.converters.maskrcnn.graph import OUTPUT_NAMES
    from edgeseg.converters.onnx_cleanup import tidy
    from edgeseg.converters.onnx_export import trace_to_onnx, write_onnx
    from edgeseg.custom_ops import MASK_BYTES_PER_WORD, packed_mask_width
    from edgeseg.metadata import ModelMetadata, Preprocessing

    hw, k = case_a.frame.shape[:2], graph.detections
    model = trace_to_onnx(graph, (torch.zeros((*hw, 3), dtype=torch.uint8),), ["frame"], list(OUTPUT_NAMES))
    tidy(model, {"frame": (*hw, 3), "num_detections": (1,), "boxes": (k, 4), "scores": (k,), "labels": (k,),
                 "masks": (k, hw[0], packed_mask_width(hw[1]) // MASK_BYTES_PER_WORD)})
    n = graph.num_classes
    classes = ClassSet(("BG", *(f"class_{i}" for i in range(1, n))), generated_palette(n))
    mean = tuple(float(m) for m in case_a.model.cfg["MEAN_PIXEL"])
    meta = ModelMetadata(
        kind="instance", arch="matterport_r50_fpn", classes=classes.names, palette=classes.palette, frame_hw=hw,
        input_hw=graph.resized_hw,
        preprocessing=Preprocessing(channel_order="rgb", scale=1.0, mean=(mean[0], mean[1], mean[2]),
                                    std=(1.0, 1.0, 1.0), resize="zoom-linear"),
        input_name="frame", outputs={name: name for name in OUTPUT_NAMES},
        extra={"padded_hw": list(graph.padded_hw), "max_detections": k, "score_thresh": graph.score_thresh,
               "paste": "zoom", "mask_threshold": 0.5, "max_candidates": graph.candidates,
               "proposals": graph.proposals, "row_trim": False})
    path = case_a.tmp / "caseA.onnx"
    write_onnx(model, meta, path)
    return path


def test_the_exported_graph_reproduces_detect(case_a: SimpleNamespace, exported: Path) -> None:
    """ONNX Runtime with the CPU build of ZoomLinear, MultiLevelRoIAlign (crop_and_resize,
    matterport's level rule) and PasteMasks (zoom)."""
    import onnx

    import edgeseg

    ops = {n.op_type for n in onnx.load(str(exported)).graph.node}
    assert {"ZoomLinear", "MultiLevelRoIAlign", "PasteMasks"} <= ops
    assert not ops & {"Loop", "If", "NonZero", "Scan"}
    got = edgeseg.load(exported, threads=2)(case_a.frame)
    figures = _assert_parity(got, case_a.ref)
    print(f"ONNX graph (edgeseg.load) vs detect(): {figures}")


# ---------------------------------------------------------------------------------------------
# anywhere: a small Config with random weights, against the eager rebuild of detect()


@pytest.fixture(scope="module")
def small_net() -> Any:
    from edgeseg.converters.matterport.config import resolve
    from edgeseg.converters.matterport.network import build_network

    cfg = resolve({"BACKBONE": "resnet50", "NUM_CLASSES": 4, "IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 128,
                   "TOP_DOWN_PYRAMID_SIZE": 32, "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
                   "RPN_ANCHOR_SCALES": [8, 16, 32, 64, 128], "POST_NMS_ROIS_INFERENCE": 300,
                   "DETECTION_MIN_CONFIDENCE": 0.0, "DETECTION_MAX_INSTANCES": 50, "IMAGES_PER_GPU": 1}, "small")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_network(cfg, 50)
        with torch.no_grad():  # BatchNorm statistics away from the identity
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    assert m.running_var is not None and m.running_mean is not None
                    m.running_var.uniform_(0.5, 2.0)
                    m.running_mean.uniform_(-0.1, 0.1)
    return SimpleNamespace(net=net, cfg=cfg)


@pytest.mark.parametrize(("frame_hw", "score_thresh"), [((90, 140), None), ((50, 40), 0.4)])
def test_the_graph_is_the_eager_detect_to_the_bit(small_net: Any, frame_hw: tuple[int, int],
                                                  score_thresh: float | None) -> None:
    """Random weights at a downscaled and an upscaled frame (the graph without ../shared): the same
    detections as ``EagerMatterport.detect`` (the step-by-step rebuild), boxes, classes, scores
    and masks identical; GraphOptions' ``score_thresh`` stands for DETECTION_MIN_CONFIDENCE."""
    import dataclasses

    import cv2
    from skimage import data

    from edgeseg.converters.maskrcnn.graph import GraphOptions
    from edgeseg.converters.matterport.detect import EagerMatterport
    from edgeseg.converters.matterport.model import build_graph

    rgb = cv2.resize(data.astronaut(), (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_AREA)
    cfg = small_net.cfg
    if score_thresh is not None:
        cfg = dataclasses.replace(cfg, values={**cfg.values, "DETECTION_MIN_CONFIDENCE": score_thresh})
    want = EagerMatterport(small_net.net, cfg).detect(rgb)
    options = GraphOptions(paste="zoom", score_thresh=score_thresh)
    graph: Any = build_graph(small_net.net, small_net.cfg, frame_hw, options)
    with torch.no_grad():
        out = graph(torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1])))
    got = _as_result([t.numpy() for t in out], frame_hw[1])
    assert 0 < len(want.rois) == len(got.boxes) <= 50
    assert (score_thresh is None) == (len(got.boxes) == 50)
    np.testing.assert_array_equal(got.boxes, want.rois[:, [1, 0, 3, 2]].astype(np.float32))
    np.testing.assert_array_equal(got.labels, want.class_ids)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.masks, want.masks)
    assert not out[1][len(got.boxes):].any() and not out[3][len(got.boxes):].any()  # rows after: zero
