"""Each Mask R-CNN inference strategy (``edgeseg/converters/maskrcnn/strategies.py``) on its own,
against a literal re-statement of the code it reproduces."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors

from edgeseg import ops
from edgeseg.converters.maskrcnn.ops import _level_of
from edgeseg.converters.maskrcnn.strategies import (
    ALIGNED_ROI_ALIGN,
    CENTRED_ANCHORS,
    CONTINUOUS_BOXES,
    CROP_AND_RESIZE,
    DETECTRON2_RESIZE,
    DETECTRON_ANCHORS,
    DETECTRON_LEVELS,
    DETECTRON_NMS,
    INCLUSIVE_BOXES,
    LEGACY_ROI_ALIGN,
    MASKRCNN_BENCHMARK_RESIZE,
    MATTERPORT_LEVELS,
    TORCHVISION_ANCHORS,
    TORCHVISION_LEVELS,
    TORCHVISION_NMS,
    TORCHVISION_RESIZE,
    AnchorGenerator,
    BoxCoder,
    LevelMapper,
    PixelInput,
    Resize,
    RoIAlignSampling,
)
from edgeseg.converters.maskrcnn_benchmark.model import PIXELS as MRB_PIXELS
from edgeseg.custom_ops import LEVEL_RULES, ROI_SAMPLINGS

# --------------------------------------------------------------------------------------------- resize


@pytest.mark.parametrize(("frame", "expected"), [
    ((400, 600), (400, 600)),  # short side already MIN_SIZE_TEST: no resize
    ((480, 640), (400, 533)),  # long side truncated: int(400 * 640 / 480) = int(533.33)
    ((300, 1000), (200, 666)),  # capped: round(667 * 300 / 1000) = round(200.1) = 200, int(666.67)
    ((1000, 600), (666, 400)),  # portrait: int(400 * 1000 / 600) = int(666.67)
    ((2, 5), (400, 1000)),  # 5 / 2 * 400 = 1000 <= 1000: uncapped
])
def test_maskrcnn_benchmark_resize_rule(frame: tuple[int, int], expected: tuple[int, int]) -> None:
    """``Resize.get_size`` of maskrcnn-benchmark (short side to MIN, truncated long side)."""
    max_size = 1000 if frame == (2, 5) else 667
    assert MASKRCNN_BENCHMARK_RESIZE.output_hw(frame, 400, max_size) == expected


def test_maskrcnn_benchmark_resize_rounds_half_to_even() -> None:
    # 667 * 300 / 1000 * ... : choose sizes whose capped short side is exactly x.5
    # max 5, short 1, long 2: 2 / 1 * 4 > 5 -> size = round(5 * 1 / 2) = round(2.5) = 2 (Python 3)
    assert MASKRCNN_BENCHMARK_RESIZE.output_hw((1, 2), 4, 5) == (2, 4)


def test_resize_rules_of_the_other_families() -> None:
    assert TORCHVISION_RESIZE.output_hw((480, 640), 400, 667) == (400, 533)
    assert DETECTRON2_RESIZE.output_hw((480, 641), 400, 667) == (400, 534)  # int(534.17 + 0.5)
    assert TORCHVISION_RESIZE.output_hw((480, 641), 400, 667) == (400, 534)
    with pytest.raises(ValueError, match="resize rule 'nearest'"):
        Resize("x", "nearest", pillow=False)


def test_strategies_name_what_they_are_and_refuse_what_the_graph_cannot_do() -> None:
    with pytest.raises(ValueError, match="level rule 'fcos': MultiLevelRoIAlign has torchvision, detectron, matter"):
        LevelMapper("fcos")
    with pytest.raises(ValueError, match="RoI sampling 'nearest': MultiLevelRoIAlign has roi_align, crop_and_resize"):
        RoIAlignSampling("x", aligned=False, sampling="nearest")
    with pytest.raises(ValueError, match="anchor generator 'ssd'"):
        AnchorGenerator("ssd")
    with pytest.raises(ValueError, match="box coder offset 2"):
        BoxCoder("x", 2)
    assert DETECTRON_LEVELS.op_attributes() == {"level_rule": 1}
    assert ALIGNED_ROI_ALIGN.op_attributes() == {"aligned": 1, "sampling": 0}
    assert LEGACY_ROI_ALIGN.op_attributes() == {"aligned": 0, "sampling": 0}
    # matterport: tf.image.crop_and_resize on normalised boxes, PyramidROIAlign's level rule
    assert CROP_AND_RESIZE.op_attributes() == {"aligned": 0, "sampling": ROI_SAMPLINGS.index("crop_and_resize")} \
        == {"aligned": 0, "sampling": 1}
    assert MATTERPORT_LEVELS.op_attributes() == {"level_rule": 2}


# --------------------------------------------------------------------------------------------- pixels


def test_maskrcnn_benchmark_pixels_round_trip_through_to_tensor() -> None:
    """ToTensor (x / 255) then x * 255 in float32, maskrcnn-benchmark's demo transform, gives every
    uint8 value back exactly, so its pixel strategy feeds the values unchanged."""
    x = np.arange(256, dtype=np.float32)
    round_trip = (x / np.float32(255)) * np.float32(255)
    np.testing.assert_array_equal(round_trip, x)
    np.testing.assert_array_equal(MRB_PIXELS.scale(torch.from_numpy(x)).numpy(), round_trip)
    assert MRB_PIXELS.bgr and MRB_PIXELS.effective_scale == 1.0
    assert PixelInput("torchvision", bgr=False, divisor=255.0).scale(torch.tensor([51.0])).item() == np.float32(0.2)


# --------------------------------------------------------------------------------------------- anchors


def test_detectron_anchors_are_the_classic_faster_rcnn_ones() -> None:
    """py-faster-rcnn's generate_anchors(16, [0.5, 1, 2], [8, 16, 32]), the values everyone quotes."""
    got = DETECTRON_ANCHORS.cell_anchors((128.0, 256.0, 512.0), (0.5, 1.0, 2.0), 16)
    expected = [[-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
                [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
                [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359]]
    assert got.tolist() == expected


def test_fpn_detectron_anchors_per_level() -> None:
    # stride 4, size 32: window 4x4, ratio 0.5 -> w = round(sqrt(32)) = 6, h = 3, scaled by 8
    assert DETECTRON_ANCHORS.cell_anchors((32.0,), (0.5, 1.0, 2.0), 4).tolist() == [
        [-22.0, -10.0, 25.0, 13.0], [-14.0, -14.0, 17.0, 17.0], [-10.0, -22.0, 13.0, 25.0]]


def test_torchvision_and_centred_anchors() -> None:
    sizes, ratios = (32.0, 64.0), (0.5, 1.0, 2.0)
    tv = TorchvisionAnchors(((32, 64),), ((0.5, 1.0, 2.0),)).generate_anchors((32, 64), (0.5, 1.0, 2.0))
    assert torch.equal(TORCHVISION_ANCHORS.cell_anchors(sizes, ratios, 4), tv)
    centred = CENTRED_ANCHORS.cell_anchors(sizes, ratios, 4)
    assert torch.equal(centred.round(), tv) and not torch.equal(centred, tv)


# --------------------------------------------------------------------------------------------- box coder


def test_continuous_coder_is_torchvisions_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(200, 2, generator=g) * 300
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(200, 2, generator=g) * 200], 1)
    deltas = torch.randn(200, 12, generator=g)
    tv = TorchvisionBoxCoder((10.0, 10.0, 5.0, 5.0))
    got = CONTINUOUS_BOXES.decode(tv.weights, tv.bbox_xform_clip, deltas, boxes)
    assert torch.equal(got, tv.decode_single(deltas, boxes))


def test_inclusive_coder_plus_one_widths() -> None:
    box = torch.tensor([[10.0, 20.0, 29.0, 59.0]])  # 20 x 40 pixels in the +1 convention
    zero = torch.zeros(1, 4)
    assert INCLUSIVE_BOXES.decode((1.0, 1.0, 1.0, 1.0), 4.0, zero, box).tolist() == box.tolist()
    # dw = log 2 doubles the +1 width about the centre 19.5: 40 pixels, x from 0 to 39
    dw = torch.tensor([[0.0, 0.0, float(np.log(2.0)), 0.0]])
    assert INCLUSIVE_BOXES.decode((1.0, 1.0, 1.0, 1.0), 4.0, dw, box).tolist() == [[0.0, 20.0, 39.0, 59.0]]
    w, h = INCLUSIVE_BOXES.sides(box)
    assert (w.item(), h.item()) == (20.0, 40.0)
    clipped = INCLUSIVE_BOXES.clip(torch.tensor([[-5.0, -1.0, 700.0, 500.0]]), (400, 600))
    assert clipped.tolist() == [[0.0, 0.0, 599.0, 399.0]]
    assert CONTINUOUS_BOXES.clip(torch.tensor([[-5.0, -1.0, 700.0, 500.0]]), (400, 600)).tolist() == [
        [0.0, 0.0, 600.0, 400.0]]


# --------------------------------------------------------------------------------------------- NMS


def _nms_cpu(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """maskrcnn-benchmark's csrc/cpu/nms_cpu.cpp, line by line in float32: +1 areas, IoU >= thr
    suppresses, kept indices in ascending index order."""
    f = np.float32
    x1, y1, x2, y2 = (boxes[:, i].astype(f) for i in range(4))
    areas = (x2 - x1 + f(1)) * (y2 - y1 + f(1))
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), dtype=bool)
    t = f(thresh)
    for _i in range(len(order)):
        i = order[_i]
        if suppressed[i]:
            continue
        for _j in range(_i + 1, len(order)):
            j = order[_j]
            if suppressed[j]:
                continue
            w = max(f(0), min(x2[i], x2[j]) - max(x1[i], x1[j]) + f(1))
            h = max(f(0), min(y2[i], y2[j]) - max(y1[i], y1[j]) + f(1))
            inter = f(w * h)
            ovr = inter / (areas[i] + areas[j] - inter)
            if ovr >= t:
                suppressed[j] = True
    return [int(i) for i in np.nonzero(~suppressed)[0]]


def _onnx_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    """ONNX Runtime's NonMaxSuppression (IoU > threshold suppresses, plain areas)."""
    node = helper.make_node("NonMaxSuppression", ["b", "s", "m", "t"], ["sel"])
    graph = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, None, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 1, None]),
         helper.make_tensor_value_info("m", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("sel", TensorProto.INT64, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (sel,) = session.run(None, {"b": boxes[None].astype(np.float32), "s": scores[None, None].astype(np.float32),
                                "m": np.array([len(boxes)], dtype=np.int64),
                                "t": np.array([thresh], dtype=np.float32)})
    onnx.checker.check_model(model)
    return sorted(int(i) for i in sel[:, 2])


def test_detectron_nms_form_is_exact_on_ties() -> None:
    """Random integer boxes (many IoUs exactly at 1/3, 0.5 or 0.7, and tied areas): Detectron's NMS
    keeps the same boxes as NonMaxSuppression on the shifted boxes with the lowered threshold; the
    plain form (no shift, IoU > t) keeps different ones."""
    rng = np.random.default_rng(0)
    checked = ties = 0
    for _ in range(200):
        n = 12
        x1 = rng.integers(0, 20, n)
        y1 = rng.integers(0, 20, n)
        boxes = np.stack([x1, y1, x1 + rng.integers(0, 12, n), y1 + rng.integers(0, 12, n)], 1).astype(np.float32)
        scores = rng.permutation(n).astype(np.float32) / n + 0.01
        for thresh in (0.5, 0.7, 1 / 3):
            expected = _nms_cpu(boxes, scores, thresh)
            got = _onnx_nms(DETECTRON_NMS.boxes(torch.from_numpy(boxes)).numpy(), scores,
                            DETECTRON_NMS.threshold(thresh))
            assert got == expected
            checked += 1
            plain = _onnx_nms(TORCHVISION_NMS.boxes(torch.from_numpy(boxes)).numpy(), scores,
                              TORCHVISION_NMS.threshold(thresh))
            ties += plain != expected
    assert checked == 600 and ties > 50  # the +1 and >= matter on integer boxes


def test_exact_threshold_tie() -> None:
    # 0..9 x 0..9 inside 0..9 x 0..19: +1 areas 100 and 200, intersection 100, IoU exactly 0.5
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 19]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    assert _nms_cpu(boxes, scores, 0.5) == [0]  # >= suppresses the tie
    assert _onnx_nms(DETECTRON_NMS.boxes(torch.from_numpy(boxes)).numpy(), scores, DETECTRON_NMS.threshold(0.5)) == [0]
    assert _onnx_nms(boxes, scores, 0.5) == [0, 1]  # plain IoU 90 / 190 < 0.5: kept


# --------------------------------------------------------------------------------------------- levels


def _maskrcnn_benchmark_levels(rois: torch.Tensor) -> torch.Tensor:
    """modeling/poolers.py LevelMapper: the +1 area, eps inside the log, levels 2..5 -> 0..3."""
    area = (rois[:, 3] - rois[:, 1] + 1) * (rois[:, 4] - rois[:, 2] + 1)
    s = torch.sqrt(area)
    lvl = torch.floor(4 + torch.log2(s / 224 + 1e-6))
    return torch.clamp(lvl, min=2, max=5).to(torch.int64) - 2


def test_detectron_level_rule_in_the_op_and_the_reference() -> None:
    g = torch.Generator().manual_seed(1)
    x1 = torch.rand(4000, generator=g) * 500
    y1 = torch.rand(4000, generator=g) * 500
    side = torch.cat([torch.tensor([111.0, 112.0, 223.0, 224.0, 447.0, 448.0, 110.5, 222.5]),
                      torch.rand(3992, generator=g) * 600])
    rois = torch.stack([torch.zeros(4000), x1, y1, x1 + side - 1, y1 + side - 1], 1)
    scales = [0.25, 0.125, 0.0625, 0.03125]
    expected = _maskrcnn_benchmark_levels(rois)
    assert LEVEL_RULES[DETECTRON_LEVELS.rule] == "detectron" and LEVEL_RULES[TORCHVISION_LEVELS.rule] == "torchvision"
    assert torch.equal(_level_of(rois, scales, 224.0, 4, DETECTRON_LEVELS.rule), expected)
    np.testing.assert_array_equal(ops.roi_levels(rois.numpy(), scales, level_rule=DETECTRON_LEVELS.rule),
                                  expected.numpy())
    plain = ops.roi_levels(rois.numpy(), scales, level_rule=TORCHVISION_LEVELS.rule)
    np.testing.assert_array_equal(plain, _level_of(rois, scales, 224.0, 4, 0).numpy())
    assert (plain != expected.numpy()).sum() > 0  # boxes of side 111, 223, 447 (+1: 112, 224, 448) move up
    # the pooled features follow the rule
    feats = [torch.randn(1, 2, 128 // 2 ** i, 128 // 2 ** i, generator=g).numpy() for i in range(4)]
    a = ops.multilevel_roi_align(feats, rois[:64].numpy(), 7, scales, 2, level_rule=1)
    b = ops.multilevel_roi_align(feats, rois[:64].numpy(), 7, scales, 2, level_rule=0)
    moved = (ops.roi_levels(rois[:64].numpy(), scales, level_rule=1) != ops.roi_levels(rois[:64].numpy(), scales))
    assert moved.any() and not np.array_equal(a[moved], b[moved]) and np.array_equal(a[~moved], b[~moved])
    with pytest.raises(ValueError, match=r"image_area must be > 0 with level_rule 2 \(matterport\)"):
        ops.roi_levels(rois.numpy(), scales, level_rule=MATTERPORT_LEVELS.rule)


# --------------------------------------------------------------------------------------------- stages


def _graph_state(frame_hw: tuple[int, int]) -> Any:
    """What a stage's ``setup`` reads and writes on the graph module, without a network."""
    from edgeseg.converters.maskrcnn.graph import GraphOptions

    return SimpleNamespace(frame_hw=frame_hw, options=GraphOptions(), window=(0, 0, *frame_hw))


@pytest.mark.parametrize(("frame", "resized", "window"), [
    ((400, 600), (341, 512), (85, 0, 426, 512)),  # matterport's case A: scale 512 / 600
    ((512, 512), (512, 512), (0, 0, 512, 512)),  # no zoom (scale 1)
    ((100, 50), (512, 256), (0, 128, 512, 384)),  # enlarged to IMAGE_MIN_DIM, then capped at IMAGE_MAX_DIM
    ((301, 199), (512, 338), (0, 87, 512, 425)),  # 199 * 512 / 301 = 338.49: Python's round
])
def test_matterport_square_resize_stage(frame: tuple[int, int], resized: tuple[int, int],
                                        window: tuple[int, int, int, int]) -> None:
    """``utils.resize_image`` "square" sizes: scaled size, the D x D input and the window."""
    from edgeseg.converters.maskrcnn.stages import ZoomMold

    g = _graph_state(frame)
    ZoomMold(min_dim=400, max_dim=512, min_scale=0.0, mean=(123.7, 116.8, 103.9)).setup(g)
    assert (g.resized_hw, g.padded_hw, g.window) == (resized, (512, 512), window)


def test_matterport_molded_input_is_mold_image_to_the_bit() -> None:
    """The stage's ZoomLinear (torch stand-in) on a BGR frame equals ``conventions.mold_image`` of
    its RGB, for a downscale, an upscale and no zoom."""
    from edgeseg.converters.maskrcnn.stages import ZoomMold
    from edgeseg.converters.matterport import conventions as mcv

    rng = np.random.default_rng(3)
    mold = ZoomMold(min_dim=64, max_dim=96, min_scale=0.0, mean=(123.7, 116.8, 103.9))
    for hw in ((70, 130), (40, 50), (96, 96)):
        rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        rgb[0, 0] = 7  # a minimum above 0: the clip range is the frame's own
        g = _graph_state(hw)
        mold.setup(g)
        got = mold.run(g, torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1])))
        want, window, _ = mcv.mold_image(rgb, 64, 96, 0.0, mold.mean)
        assert g.window == window
        np.testing.assert_array_equal(got[0].permute(1, 2, 0).numpy(), want)


def test_mask_channel_stages_pick_each_detections_class() -> None:
    from edgeseg.converters.maskrcnn.stages import LOGIT_MASKS, PROBABILITY_MASKS

    masks = torch.randn(3, 4, 2, 2)
    labels = torch.tensor([2, 0, 3], dtype=torch.int32)
    valid = torch.tensor([True, True, False])
    picked = torch.stack([masks[0, 2], masks[1, 0], torch.zeros(2, 2)])
    g = _graph_state((2, 2))
    assert torch.equal(PROBABILITY_MASKS.run(g, masks, labels, valid), picked)
    assert torch.equal(LOGIT_MASKS.run(g, masks, labels, valid), torch.sigmoid(picked) * valid[:, None, None])
