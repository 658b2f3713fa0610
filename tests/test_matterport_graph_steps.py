"""matterport's detect() steps between the network's parts as traceable torch functions
(``edgeseg/converters/matterport/graph_steps.py``): each against the eager reference
(``conventions.py`` / ``detect.py``) with x and y swapped, on matterport's own case A
intermediates (``../shared/matterport``; those tests skip where it is absent), and exported to
ONNX and run with onnxruntime (the graph runs these nodes): the same outputs as eager."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

from edgeseg.converters.matterport import conventions as cv
from edgeseg.converters.matterport import graph_steps as gs
from edgeseg.converters.matterport.config import MatterportConfig, read_config
from edgeseg.converters.matterport.detect import refine_detections
from edgeseg.converters.onnx_export import trace_to_onnx
from edgeseg.errors import ArgumentError
from edgeseg.lint import TOPK_MAX_K, lint_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "matterport"
XY = list(gs.XY)


@pytest.fixture(scope="module")
def case_a() -> dict[str, np.ndarray]:
    if not (SHARED / "outputs_caseA.npz").is_file():
        pytest.skip(f"matterport reference data not found at {SHARED} (a plain clone has no ../shared): "
                    "the case A tests need outputs_caseA.npz")
    return dict(np.load(SHARED / "outputs_caseA.npz"))


@pytest.fixture(scope="module")
def cfg_a(case_a: dict[str, np.ndarray]) -> MatterportConfig:
    return read_config(SHARED / "config_caseA.json")


def _xy(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[..., XY])


def _run_onnx(fn: Callable[..., Any], inputs: list[Tensor], names: list[str], outputs: list[str]) -> list[np.ndarray]:
    """*fn* traced to ONNX (as the graph exports it), checked by edgeseg lint, run by onnxruntime."""
    class Step(nn.Module):
        def forward(self, *args: Tensor) -> Any:
            return fn(*args)

    model = trace_to_onnx(Step(), tuple(inputs), names, outputs)
    assert lint_model(model) == []
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)}))


def _assert_onnx_equals_eager(fn: Callable[..., Any], inputs: list[Tensor], names: list[str],
                              outputs: list[str], atol: dict[str, float] | None = None) -> None:
    eager = fn(*inputs)
    got = _run_onnx(fn, inputs, names, outputs)
    for name, e, o in zip(outputs, eager, got, strict=True):
        assert o.dtype == e.numpy().dtype, name
        if atol and name in atol:
            assert np.abs(o - e.numpy()).max() <= atol[name], name
        else:
            assert np.array_equal(o, e.numpy()), name


# ---------------------------------------------------------------------------------------------
# anchors, deltas, clipping, IoU: the conventions with x and y swapped, bit for bit


def test_anchors_xy_are_pyramid_anchors_permuted(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"NAME": "t", "NUM_CLASSES": 4, "IMAGE_MIN_DIM": 128,
                                                 "IMAGE_MAX_DIM": 256, "RPN_ANCHOR_RATIOS": [0.5, 1, 2, 3]}))
    cfg = read_config(tmp_path / "c.json")
    ref = cv.pyramid_anchors(cfg["RPN_ANCHOR_SCALES"], cfg["RPN_ANCHOR_RATIOS"], cfg.backbone_shapes,
                             cfg["BACKBONE_STRIDES"], cfg["RPN_ANCHOR_STRIDE"], (256, 256))
    a = gs.anchors_xy(cfg)
    assert a.dtype == torch.float32 and a.shape == (ref.shape[0], 4) and ref.shape[0] == 4 * sum(
        h * w for h, w in cfg.backbone_shapes)
    assert np.array_equal(a.numpy(), ref[:, XY])


def test_anchors_xy_of_case_a(case_a: dict[str, np.ndarray], cfg_a: MatterportConfig) -> None:
    assert np.array_equal(gs.anchors_xy(cfg_a).numpy(), _xy(case_a["anchors_norm"]))


def test_box_deltas_and_clip_are_the_conventions_with_x_and_y_swapped() -> None:
    g = torch.Generator().manual_seed(0)
    yx = torch.rand((20000, 2), generator=g) * 1.4 - 0.2
    hw = torch.rand((20000, 2), generator=g) * 0.5
    boxes = torch.cat([yx, yx + hw], dim=1)  # y-first
    deltas = torch.randn((20000, 4), generator=g) * torch.tensor([0.3, 0.3, 0.6, 0.6])
    ref = cv.apply_box_deltas(boxes, deltas)
    got = gs.apply_box_deltas_xy(boxes[:, XY], deltas[:, XY])
    assert torch.equal(got, ref[:, XY])
    window = [0.166015625, 0.0, 0.8317025, 1.0]  # y-first, case A's
    assert torch.equal(gs.clip_xy(got, [window[i] for i in XY]), cv.clip_boxes(ref, window)[:, XY])
    # batched boxes ([R, K, 4]) as the detection head gives them
    batched = gs.apply_box_deltas_xy(boxes[:, None, XY].expand(-1, 3, -1), deltas[:, None, XY].expand(-1, 3, -1))
    assert torch.equal(batched, ref[:, None, XY].expand(-1, 3, -1))


def test_tf_iou_matrix_is_tensorflows_iou() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.rand((60, 4), generator=g)  # unsorted corners on purpose
    b = torch.rand((70, 4), generator=g)
    b[:5, 2] = b[:5, 0]  # empty boxes: IoU 0
    b[5:10] = a[5:10]  # equal boxes: IoU 1
    got = gs.tf_iou_matrix(a[:, XY], b[:, XY])
    ref = torch.stack([cv.tf_iou(a[i], b) for i in range(60)])
    assert torch.equal(got, ref)
    assert (got[:, :5] == 0).all() and (got[torch.arange(5, 10), torch.arange(5, 10)] == 1).all()


def test_equal_values_in_index_order_whatever_topk_did() -> None:
    """A TopK that sorts correctly but lists equal values in any order (TensorRT promises no
    order) is put right: runs of equal values in index order, in eager and in onnxruntime."""
    g = torch.Generator().manual_seed(10)
    x = torch.round(torch.rand(3000, generator=g) * 200) / 200  # runs of ~15 equal values
    x[:40] = 1.0
    ref_values, ref_index = torch.sort(x, descending=True, stable=True)
    shuffled = torch.argsort(ref_values * 1e4 + torch.rand(3000, generator=g), descending=True)  # ties shuffled
    values, index = ref_values[shuffled], ref_index[shuffled]
    assert torch.equal(values, ref_values) and not torch.equal(index, ref_index)
    got = gs._in_tie_order(values, index)
    assert torch.equal(got[0], ref_values) and torch.equal(got[1], ref_index)
    onnx_got = _run_onnx(gs._in_tie_order, [values, index], ["values", "index"], ["v", "i"])
    assert np.array_equal(onnx_got[1], ref_index.numpy())


def test_a_topk_cut_through_equal_values_takes_the_lowest_indices() -> None:
    x = torch.tensor([0.5, 0.9, 0.5, 0.7, 0.5, 0.9, 0.5, 0.1])
    values = torch.tensor([0.9, 0.9, 0.7, 0.5, 0.5])
    wrong = torch.tensor([5, 1, 3, 6, 4])  # a TopK that took two of the four 0.5s, not the first two
    got = gs._boundary_in_index_order(x, values, wrong)
    assert got.tolist() == [5, 1, 3, 0, 2]
    assert gs._in_tie_order(values, got)[1].tolist() == [1, 5, 3, 0, 2]
    onnx_got = _run_onnx(lambda a, v, i: (gs._boundary_in_index_order(a, v, i),), [x, values, wrong],
                         ["x", "values", "index"], ["fixed"])
    assert onnx_got[0].tolist() == [5, 1, 3, 0, 2]


def test_first_argmax_is_numpys_on_ties() -> None:
    g = torch.Generator().manual_seed(11)
    probs = torch.round(torch.rand((5000, 6), generator=g) * 4) / 4
    probs[:10] = 0.5
    ref = np.argmax(probs.numpy(), axis=1)
    assert np.array_equal(gs._first_argmax(probs).numpy(), ref)
    assert np.array_equal(_run_onnx(lambda p: (gs._first_argmax(p),), [probs], ["p"], ["c"])[0], ref)


# ---------------------------------------------------------------------------------------------
# proposals


def _greedy_proposals(fg: Tensor, boxes: Tensor, pre_nms_limit: int, proposals: int, iou: float) -> Tensor:
    """ProposalLayer as detect.py computes it (one greedy NMS over the whole top-k), zero-padded."""
    top = torch.sort(fg, descending=True, stable=True).indices[:pre_nms_limit]
    keep = cv.nms(boxes[top], fg[top], proposals, iou)
    out = boxes.new_zeros((proposals, 4))
    out[:len(keep)] = boxes[top][keep]
    return out


def _clustered(n: int, first_round_clusters: int, clusters: int, seed: int) -> tuple[Tensor, Tensor]:
    """fg scores with many exact ties and boxes in clusters of near-copies (IoU > 0.7 within a
    cluster), the top 3840 ranks from only *first_round_clusters* clusters: round 1 keeps fewer
    than the proposals and the next ranks decide the rest."""
    g = torch.Generator().manual_seed(seed)
    fg = torch.round(torch.rand(n, generator=g) * 1500) / 1500  # ~6 equal scores each
    rank = torch.empty(n, dtype=torch.int64)
    rank[torch.sort(fg, descending=True, stable=True).indices] = torch.arange(n)
    cluster = torch.where(rank < TOPK_MAX_K, torch.randint(0, first_round_clusters, (n,), generator=g),
                          torch.randint(0, clusters, (n,), generator=g))
    corner = torch.rand((clusters, 2), generator=g) * 0.85
    side = 0.02 + torch.rand((clusters, 2), generator=g) * 0.13
    jitter = (torch.rand((n, 4), generator=g) - 0.5) * 0.04 * side[cluster].repeat(1, 2)
    boxes = torch.cat([corner[cluster], corner[cluster] + side[cluster]], dim=1) + jitter
    return fg, boxes.clamp(0.0, 1.0)


def test_select_proposals_is_one_greedy_pass_when_round_one_is_short() -> None:
    fg, boxes = _clustered(9000, 500, 2500, seed=2)
    got, real = gs.select_proposals(fg, boxes, 6000, 1000, 0.7)
    ref = _greedy_proposals(fg, boxes, 6000, 1000, 0.7)
    assert torch.equal(got, ref)
    first = _greedy_proposals(fg, boxes, TOPK_MAX_K, 1000, 0.7)
    n_first = int(first.any(dim=1).sum())
    assert 0 < n_first < 1000 and int(real.sum()) == 1000  # round 2 filled the rest
    assert torch.equal(real, ref.any(dim=1))
    assert torch.equal(gs.select_proposals(fg, boxes, 6000, 1000, 0.7, exact_ties=False)[0], ref)


def test_select_proposals_in_three_rounds_and_short_of_proposals() -> None:
    fg, boxes = _clustered(12000, 300, 1200, seed=3)
    got, real = gs.select_proposals(fg, boxes, 9000, 2000, 0.7)  # rounds of 3840, 3840, 1320 ranks
    ref = _greedy_proposals(fg, boxes, 9000, 2000, 0.7)
    assert torch.equal(got, ref) and torch.equal(real, ref.any(dim=1))
    assert 1000 < int(real.sum()) < 2000  # zero-padded rows are not real


def test_select_proposals_in_one_round_and_with_fewer_anchors_than_proposals() -> None:
    fg, boxes = _clustered(5000, 900, 900, seed=4)
    got, real = gs.select_proposals(fg, boxes, 3000, 1000, 0.5)
    assert torch.equal(got, _greedy_proposals(fg, boxes, 3000, 1000, 0.5))
    got, real = gs.select_proposals(fg[:300], boxes[:300], 6000, 1000, 0.7)
    ref = _greedy_proposals(fg[:300], boxes[:300], 6000, 1000, 0.7)
    assert torch.equal(got, ref) and int(real.sum()) == int(ref.any(dim=1).sum()) < 300


@pytest.mark.parametrize("iou", [0.3, 0.7])  # float32(0.3) is above 0.3, float32(0.7) below 0.7
def test_nms_suppresses_only_above_the_float32_threshold(iou: float) -> None:
    """Pairs whose TF IoU is exactly the float32 threshold (kept, as TensorFlow keeps them) or
    one step either side, in eager and in onnxruntime's NonMaxSuppression."""
    t = np.float32(iou)
    base = np.float32(t * np.float32(0.8))  # a box of height 0.8 and one of about t * 0.8 inside it
    heights = base + np.arange(-40, 41, dtype=np.float32) * np.spacing(base)
    pairs = len(heights)
    x0 = 2.0 * torch.arange(pairs, dtype=torch.float32)
    big = torch.stack([x0, torch.zeros(pairs), x0 + 1, torch.full((pairs,), 0.8)], dim=1)
    small = torch.stack([x0, torch.zeros(pairs), x0 + 1, torch.from_numpy(heights)], dim=1)
    boxes = torch.cat([big, small])
    fg = torch.cat([torch.full((pairs,), 0.9), torch.full((pairs,), 0.8)])
    ious = torch.stack([cv.tf_iou(big[i, XY], small[i:i + 1, XY])[0] for i in range(pairs)])
    assert int((ious == torch.tensor(t)).sum()) > 0 and int((ious > torch.tensor(t)).sum()) > 0
    expect = torch.cat([big, small[ious <= torch.tensor(t)]])
    got, real = gs.select_proposals(fg, boxes, 1000, 2 * pairs, iou)
    assert torch.equal(got[real], expect)
    onnx_got, onnx_real = _run_onnx(lambda f, b: gs.select_proposals(f, b, 1000, 2 * pairs, iou), [fg, boxes],
                                    ["fg", "boxes"], ["proposals", "real"])
    assert np.array_equal(onnx_got[onnx_real], expect.numpy())


def test_select_proposals_refuses_what_tensorrt_cannot_run() -> None:
    fg, boxes = _clustered(5000, 900, 900, seed=4)
    with pytest.raises(ArgumentError, match="^POST_NMS_ROIS_INFERENCE = 4000: must be 1..3840 "
                                            r"\(TensorRT's TopK limit\)$"):
        gs.select_proposals(fg, boxes, 6000, 4000, 0.7)


def _case_a_decoded(case_a: dict[str, np.ndarray], cfg: MatterportConfig) -> tuple[Tensor, Tensor]:
    fg = torch.from_numpy(case_a["rpn_class_probs"][:, 1].copy())
    deltas = torch.from_numpy(case_a["rpn_bbox_deltas"]) * torch.tensor(cfg["RPN_BBOX_STD_DEV"], dtype=torch.float32)
    boxes = gs.clip_xy(gs.apply_box_deltas_xy(gs.anchors_xy(cfg), deltas[:, XY]), [0.0, 0.0, 1.0, 1.0])
    return fg, boxes


def test_proposals_of_case_a(case_a: dict[str, np.ndarray], cfg_a: MatterportConfig) -> None:
    """matterport's own probabilities and deltas: its 1000 proposals in its order (the 7 exact
    ties near 1.0 included); the coordinates as the eager reference computes them, and matterport's
    within 6e-8 (TensorFlow's exp differs in the last bits: 160 of 4000 values)."""
    fg, boxes = _case_a_decoded(case_a, cfg_a)
    got, real = gs.select_proposals(fg, boxes, cfg_a["PRE_NMS_LIMIT"], cfg_a["POST_NMS_ROIS_INFERENCE"],
                                    cfg_a["RPN_NMS_THRESHOLD"])
    assert bool(real.all())
    y_first = torch.from_numpy(case_a["rpn_bbox_deltas"]) * torch.tensor(cfg_a["RPN_BBOX_STD_DEV"])
    top = torch.sort(fg, descending=True, stable=True).indices[:6000]
    eager = cv.clip_boxes(cv.apply_box_deltas(torch.from_numpy(case_a["anchors_norm"])[top], y_first[top]),
                          [0.0, 0.0, 1.0, 1.0])
    keep = cv.nms(eager, fg[top], 1000, 0.7)
    assert torch.equal(got, eager[keep][:, XY])
    assert np.abs(got.numpy() - _xy(case_a["rpn_rois_norm"])).max() <= 6e-8


# ---------------------------------------------------------------------------------------------
# detection layer


def _refine(rois: Tensor, real: Tensor, probs: Tensor, deltas: Tensor, cfg: dict[str, Any],
            window: np.ndarray, exact_ties: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return gs.refine_top_class(rois[:, XY], real, probs, deltas[..., XY], [cfg["BBOX_STD_DEV"][i] for i in XY],
                               window[XY].tolist(), cfg["DETECTION_MIN_CONFIDENCE"], cfg["DETECTION_NMS_THRESHOLD"],
                               cfg["DETECTION_MAX_INSTANCES"], exact_ties=exact_ties)


def _check_refine(got: tuple[Tensor, Tensor, Tensor, Tensor], ref: Tensor, rows: int) -> None:
    boxes, scores, labels, valid = got
    n = ref.shape[0]
    assert boxes.shape == (rows, 4) and labels.dtype == torch.int32 and valid.dtype == torch.bool
    assert int(valid.sum()) == n and bool(valid[:n].all())
    assert torch.equal(boxes[:n], ref[:, :4][:, XY]) and torch.equal(scores[:n], ref[:, 5])
    assert torch.equal(labels[:n], ref[:, 4].to(torch.int32))
    assert not boxes[n:].any() and not scores[n:].any() and not labels[n:].any()


def _synthetic_head(r: int, k: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """RoIs in clusters, class probabilities with exact ties (between RoIs and between classes)."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand((r // 6 + 1, 2), generator=g) * 0.8 + 0.1
    c = torch.randint(0, centre.shape[0], (r,), generator=g)
    side = 0.05 + torch.rand((r, 2), generator=g) * 0.1
    yx = centre[c] + (torch.rand((r, 2), generator=g) - 0.5) * 0.03
    rois = torch.cat([yx - side / 2, yx + side / 2], dim=1).clamp(0, 1)
    logits = torch.round(torch.randn((r, k), generator=g) * 4) / 2
    probs = torch.softmax(logits, dim=1)
    deltas = torch.randn((r, k, 4), generator=g)
    return rois, probs, deltas


@pytest.mark.parametrize("min_confidence", [0.0, 0.3])
def test_refine_top_class_is_refine_detections(min_confidence: float) -> None:
    rois, probs, deltas = _synthetic_head(600, 5, seed=5)
    rois[590:] = 0  # zero-padded RoIs go on through the head, as in matterport
    cfg = {"BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2], "DETECTION_MIN_CONFIDENCE": min_confidence,
           "DETECTION_NMS_THRESHOLD": 0.3, "DETECTION_MAX_INSTANCES": 100}
    window = cv.norm_boxes(np.array([40, 0, 220, 256]), (256, 256))
    ref = refine_detections(rois, probs, deltas, window, cast(Any, cfg))
    assert 0 < ref.shape[0] <= 100
    _check_refine(_refine(rois, torch.ones(600, dtype=torch.bool), probs, deltas, cfg, window), ref, 100)
    _check_refine(_refine(rois, torch.ones(600, dtype=torch.bool), probs, deltas, cfg, window, exact_ties=False),
                  ref, 100)
    # fewer than max_instances survive
    cfg["DETECTION_MAX_INSTANCES"] = 3000
    ref = refine_detections(rois, probs, deltas, window, cast(Any, cfg))
    assert ref.shape[0] < 600
    _check_refine(_refine(rois, torch.ones(600, dtype=torch.bool), probs, deltas, cfg, window), ref, 3000)


def test_refine_top_class_leaves_out_rois_that_are_not_real() -> None:
    rois, probs, deltas = _synthetic_head(200, 4, seed=6)
    real = torch.arange(200) < 150
    cfg = {"BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2], "DETECTION_MIN_CONFIDENCE": 0.0, "DETECTION_NMS_THRESHOLD": 0.5,
           "DETECTION_MAX_INSTANCES": 50}
    window = np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)
    ref = refine_detections(rois[:150], probs[:150], deltas[:150], window, cast(Any, cfg))
    _check_refine(_refine(rois, real, probs, deltas, cfg, window), ref, 50)


def test_refine_of_case_a(case_a: dict[str, np.ndarray], cfg_a: MatterportConfig) -> None:
    """matterport's RoIs and box head outputs: its 100 detections, same order, same classes and
    scores bit for bit, boxes within 6e-8 (TensorFlow's exp: 18 of 400 values differ by one or two
    units in the last place) and equal to the eager reference's."""
    n = int(case_a["num_raw_detections"])
    rois = torch.from_numpy(case_a["rpn_rois_norm"])
    probs, deltas = torch.from_numpy(case_a["mrcnn_class_probs"]), torch.from_numpy(case_a["mrcnn_bbox_deltas"])
    window = cv.norm_boxes(case_a["window"], (512, 512))
    assert gs.window_xy(tuple(case_a["window"]), (512, 512)) == window[XY].tolist()
    cfg = {k: cfg_a[k] for k in ("BBOX_STD_DEV", "DETECTION_MIN_CONFIDENCE", "DETECTION_NMS_THRESHOLD",
                                 "DETECTION_MAX_INSTANCES")}
    got = _refine(rois, rois.any(dim=1), probs, deltas, cfg, window)
    _check_refine(got, refine_detections(rois, probs, deltas, window, cfg_a), 100)
    ref = case_a["detections_raw_norm"]
    assert n == 100 and bool(got[3].all())
    assert np.array_equal(got[1].numpy(), ref[:, 5]) and np.array_equal(got[2].numpy(), ref[:, 4].astype(np.int32))
    assert np.abs(got[0].numpy() - _xy(ref[:, :4])).max() <= 6e-8


# ---------------------------------------------------------------------------------------------
# back to the frame


def _window(frame_hw: tuple[int, int], d: int) -> tuple[int, int, int, int]:
    h, w = frame_hw
    nh, nw = cv.scaled_size(h, w, cv.square_scale(h, w, 0, d, 0))
    top, left = (d - nh) // 2, (d - nw) // 2
    return top, left, top + nh, left + nw


def test_round_times_is_float64_round_half_even_exactly() -> None:
    rng = np.random.default_rng(7)
    n = rng.integers(1, gs.UNMOLD_MAX_SCALE + 1, 200000)
    b = rng.uniform(-0.3, 1.3, 200000).astype(np.float32)
    # exact ties: with n = 2^t * o (o odd) and j odd, b = j / 2^(t + 1) gives b * n = j * o / 2
    t = np.array([(int(v) & -int(v)).bit_length() - 1 for v in n[:50000]])
    j = 2 * rng.integers(0, np.maximum(1, 2.0 ** t * 1.3)) + 1
    b[:50000] = (j / 2.0 ** (t + 1) * rng.choice([-1, 1], 50000)).astype(np.float32)
    # nearest floats around k + 1/2 (the decisions float32 arithmetic gets wrong)
    k = rng.integers(0, 4000, 50000) + 0.5
    near = (k / n[50000:100000]).astype(np.float32)
    b[50000:100000] = near + rng.integers(-3, 4, 50000).astype(np.float32) * np.spacing(near)
    exact = np.around(b.astype(np.float64) * n)
    exact1 = np.around(b.astype(np.float64) * n + 1)
    ties = np.sum(np.abs(b.astype(np.float64) * n % 1.0 - 0.5) == 0)
    assert ties >= 50000
    # a plain float32 evaluation would be wrong here
    assert np.sum(np.round(b * n.astype(np.float32)) != exact) > 1000
    for scale in np.unique(n)[:: 97]:
        sel = n == scale
        got = gs._round_times(torch.from_numpy(b[sel]), int(scale)).numpy()
        assert np.array_equal(got, exact[sel].astype(np.float32)), scale
        got = gs._round_times(torch.from_numpy(b[sel]), int(scale), 1).numpy()
        assert np.array_equal(got, exact1[sel].astype(np.float32)), scale
    assert np.sum(exact1 != exact + 1) > 10000  # the + 1 comes before the rounding


@pytest.mark.parametrize(("frame_hw", "d"), [((400, 600), 512), ((1080, 1920), 1024), ((333, 250), 512),
                                             ((4096, 3000), 1024)])
def test_unmold_boxes_xy_is_matterports_float64_rounding(frame_hw: tuple[int, int], d: int) -> None:
    """>= 100k boxes per frame size: random ones, and ones whose scaled coordinate lies within a
    few float32 steps of a .5 boundary (where float32 arithmetic would round the other way)."""
    window = _window(frame_hw, d)
    rng = np.random.default_rng(sum(frame_hw))
    boxes = rng.uniform(-0.1, 1.1, (60000, 4)).astype(np.float32)
    wn = cv.norm_boxes(np.asarray(window), (d, d)).astype(np.float64)
    shift, scale = wn[[0, 1, 0, 1]], (wn[[2, 3, 2, 3]] - wn[[0, 1, 0, 1]])
    n = np.array([frame_hw[0] - 1, frame_hw[1] - 1] * 2, dtype=np.float64)
    half = rng.integers(0, max(frame_hw), (50000, 4)) + 0.5
    near = (shift + half / n * scale).astype(np.float32)
    near = near + rng.integers(-8, 9, near.shape).astype(np.float32) * np.spacing(near)
    boxes = np.concatenate([boxes, near])
    ref = cv.unmold_boxes(boxes, window, (d, d), frame_hw)
    got = gs.unmold_boxes_xy(torch.from_numpy(_xy(boxes)), window, (d, d), frame_hw)
    assert got.dtype == torch.float32
    assert np.array_equal(got.numpy(), _xy(ref).astype(np.float32))


def test_unmold_of_case_a(case_a: dict[str, np.ndarray]) -> None:
    got = gs.unmold_boxes_xy(torch.from_numpy(_xy(case_a["detections_raw_norm"][:, :4])), tuple(case_a["window"]),
                             (512, 512), (400, 600))
    assert np.array_equal(got.numpy(), _xy(case_a["rois"]).astype(np.float32))


def test_unmold_refuses_frames_it_cannot_scale_exactly() -> None:
    message = (r"^--frame 5000x3000: matterport graphs take frame sides of 2 to 4096 pixels \(boxes are scaled back "
               r"to the frame exactly only up to that size\); resize the frames first$")
    with pytest.raises(ArgumentError, match=message):
        gs.unmold_boxes_xy(torch.zeros((3, 4)), (0, 0, 1024, 614), (1024, 1024), (5000, 3000))


def test_keep_nonempty_is_a_stable_compaction() -> None:
    rng = np.random.default_rng(8)
    boxes = rng.integers(0, 20, (100, 4)).astype(np.float32)
    boxes[:, 2:] = boxes[:, :2] + rng.integers(-2, 4, (100, 2))  # some empty, some negative
    valid = np.arange(100) < 80
    order, kept, count = gs.keep_nonempty(torch.from_numpy(boxes), torch.from_numpy(valid))
    keep = valid & ((boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0]) > 0)
    expect = np.concatenate([np.flatnonzero(keep), np.flatnonzero(~keep)])
    assert 0 < keep.sum() < 80
    assert order.dtype == torch.int64 and np.array_equal(order.numpy(), expect)
    assert np.array_equal(kept.numpy(), np.arange(100) < keep.sum())
    assert count.dtype == torch.int32 and count.tolist() == [int(keep.sum())]


# ---------------------------------------------------------------------------------------------
# the same in ONNX, run by onnxruntime


def test_select_proposals_in_onnx() -> None:
    fg, boxes = _clustered(9000, 500, 2500, seed=2)
    _assert_onnx_equals_eager(lambda f, b: gs.select_proposals(f, b, 6000, 1000, 0.7), [fg, boxes],
                              ["fg", "boxes"], ["proposals", "real"])


def test_select_proposals_of_case_a_in_onnx(case_a: dict[str, np.ndarray], cfg_a: MatterportConfig) -> None:
    fg, boxes = _case_a_decoded(case_a, cfg_a)
    _assert_onnx_equals_eager(lambda f, b: gs.select_proposals(f, b, 6000, 1000, 0.7), [fg, boxes],
                              ["fg", "boxes"], ["proposals", "real"])


@pytest.mark.parametrize("background", [False, True])
def test_refine_top_class_in_onnx(background: bool) -> None:
    """The same detections, scores and labels; the boxes within 3e-8: onnxruntime's Exp differs
    from torch's in the last bit for about 5% of inputs (and both from TensorFlow's). With every
    RoI background, NonMaxSuppression selects nothing and every row is empty."""
    rois, probs, deltas = _synthetic_head(600, 5, seed=5)
    if background:
        probs[:, 0] = 2.0
    real = torch.arange(600) < 590
    window = [0.0, 0.15, 1.0, 0.85]
    _assert_onnx_equals_eager(
        lambda r, ok, p, dl: gs.refine_top_class(r, ok, p, dl, [0.1, 0.1, 0.2, 0.2], window, 0.3, 0.3, 100),
        [rois[:, XY], real, probs, deltas[..., XY]], ["rois", "real", "probs", "deltas"],
        ["boxes", "scores", "labels", "valid"], atol={"boxes": 3e-8})


def test_unmold_and_keep_nonempty_in_onnx() -> None:
    window = _window((1080, 1920), 1024)
    rng = np.random.default_rng(9)
    wn = cv.norm_boxes(np.asarray(window), (1024, 1024)).astype(np.float64)
    half = rng.integers(0, 1080, (4000, 4)) + 0.5
    near = (wn[[0, 1, 0, 1]] + half / np.array([1079, 1919] * 2) * (wn[[2, 3, 2, 3]] - wn[[0, 1, 0, 1]]))
    near = near.astype(np.float32)
    boxes = np.concatenate([rng.uniform(-0.1, 1.1, (4000, 4)).astype(np.float32),
                            near + rng.integers(-4, 5, near.shape).astype(np.float32) * np.spacing(near)])
    x = torch.from_numpy(_xy(boxes))
    _assert_onnx_equals_eager(lambda b: (gs.unmold_boxes_xy(b, window, (1024, 1024), (1080, 1920)),), [x],
                              ["boxes"], ["frame_boxes"])
    frame = gs.unmold_boxes_xy(x[:300], window, (1024, 1024), (1080, 1920))
    frame[::7, 3] = frame[::7, 1]  # empty rows
    _assert_onnx_equals_eager(gs.keep_nonempty, [frame, torch.arange(300) < 250], ["boxes", "valid"],
                              ["order", "kept", "count"])


def test_steps_5_to_12_of_case_a_in_one_onnx_graph(case_a: dict[str, np.ndarray], cfg_a: MatterportConfig) -> None:
    """Anchors to the frame boxes in one graph, fed matterport's RPN and box head outputs (the
    head's from matterport's own RoIs, which equal ours within 6e-8): detect()'s rois, class_ids
    and scores exactly."""
    d, frame_hw, window = 512, (400, 600), tuple(int(v) for v in case_a["window"])
    anchors = gs.anchors_xy(cfg_a)
    rpn_std = torch.tensor(cfg_a["RPN_BBOX_STD_DEV"], dtype=torch.float32)[XY]

    def steps(rpn_probs: Tensor, rpn_deltas: Tensor, probs: Tensor, deltas: Tensor) -> tuple[Tensor, ...]:
        boxes = gs.clip_xy(gs.apply_box_deltas_xy(anchors, rpn_deltas[:, XY] * rpn_std), [0.0, 0.0, 1.0, 1.0])
        rois, real = gs.select_proposals(rpn_probs[:, 1], boxes, cfg_a["PRE_NMS_LIMIT"],
                                         cfg_a["POST_NMS_ROIS_INFERENCE"], cfg_a["RPN_NMS_THRESHOLD"])
        det, scores, labels, valid = gs.refine_top_class(
            rois, torch.ones_like(real), probs, deltas[..., XY], [cfg_a["BBOX_STD_DEV"][i] for i in XY],
            gs.window_xy(window, (d, d)), cfg_a["DETECTION_MIN_CONFIDENCE"], cfg_a["DETECTION_NMS_THRESHOLD"],
            cfg_a["DETECTION_MAX_INSTANCES"])
        frame = gs.unmold_boxes_xy(det, window, (d, d), frame_hw)
        order, _, count = gs.keep_nonempty(frame, valid)
        return frame[order], scores[order], labels[order], count

    inputs = [torch.from_numpy(case_a[k]) for k in ("rpn_class_probs", "rpn_bbox_deltas", "mrcnn_class_probs",
                                                     "mrcnn_bbox_deltas")]
    frame, scores, labels, count = _run_onnx(steps, inputs, ["rpn_probs", "rpn_deltas", "probs", "deltas"],
                                             ["boxes", "scores", "labels", "count"])
    assert count.tolist() == [100]
    assert np.array_equal(frame, _xy(case_a["rois"]).astype(np.float32))
    assert np.array_equal(labels, case_a["class_ids"]) and np.array_equal(scores, case_a["scores"])
