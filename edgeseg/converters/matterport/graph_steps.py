"""matterport's ``detect()`` steps between the network's parts, as torch functions that trace to a
static ONNX graph.

Each function reproduces the float32 arithmetic of its counterpart in :mod:`.conventions` /
:mod:`.detect` (and so matterport's) bit for bit, with fixed shapes: no data-dependent Python
control flow, no ``nonzero`` or boolean indexing. What matterport removes is marked instead (a
``real``/``valid`` flag, zero rows), and compactions are a TopK over distinct keys. The only
data-dependent shape is NonMaxSuppression's selection (:func:`.maskrcnn.ops.multiclass_nms`),
scattered back at once into a fixed-length mask. TensorRT's limits hold: every TopK has
K <= :data:`edgeseg.lint.TOPK_MAX_K`, every NonMaxSuppression at most
:data:`edgeseg.lint.NMS_MAX_CANDIDATES` candidates.

Coordinates: every box here is **x-first**, normalised as matterport normalises (``norm_boxes``:
0 and 1 are the centres of the first and last pixel): (x1n, y1n, x2n, y2n); deltas likewise
(dx, dy, log dw, log dh). matterport's boxes are y-first; each of its formulas treats x and y
alike, so permuting the columns changes no arithmetic (the tests check this on case A).

The graph calls them in this order (D = IMAGE_MAX_DIM, frame H x W, window from the resize)::

    anchors = anchors_xy(cfg)                                           # constant [A, 4]
    boxes = clip_xy(apply_box_deltas_xy(anchors, rpn_deltas[:, XY] * rpn_std[XY]), [0, 0, 1, 1])
    rois, real = select_proposals(rpn_probs[:, 1], boxes, PRE_NMS_LIMIT, POST_NMS_ROIS_INFERENCE,
                                  RPN_NMS_THRESHOLD)
    (box head on rois: probs [R, K], deltas [R, K, 4] y-first)
    boxes, scores, labels, valid = refine_top_class(rois, all True, probs, deltas[..., XY], std[XY],
                                                    window_xy(window, (D, D)), ...)
    (mask head on boxes)
    frame_boxes = unmold_boxes_xy(boxes, window, (D, D), (H, W))
    order, kept, count = keep_nonempty(frame_boxes, valid)              # gather every output by order
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edgeseg.converters.maskrcnn.ops import multiclass_nms
from edgeseg.converters.matterport import conventions as cv
from edgeseg.converters.matterport.config import MatterportConfig
from edgeseg.errors import ArgumentError
from edgeseg.lint import NMS_MAX_CANDIDATES, TOPK_MAX_K

#: Column order that swaps y-first and x-first boxes (it is its own inverse).
XY = (1, 0, 3, 2)

# NonMaxSuppression gets surrogate scores >= 1 for candidates and 0 for the rest; a threshold
# between them takes the rest out whether the runtime filters with > or >=.
_SCORE_MIN = 0.5

# Veltkamp's splitter for float32 is 2^12 + 1 (the high part keeps 12 of the 24 significand
# bits); b * 2^12 + b is that product with the only rounding in the addition, so a runtime that
# fuses a multiply and an add (TensorRT's kernels may) computes the same value.
_SPLIT_SHIFT = 4096.0
#: Largest frame side minus one that :func:`unmold_boxes_xy` scales by exactly in float32 (a
#: 12-bit integer times a 12-bit half of a float32 is exact).
UNMOLD_MAX_SCALE = 4095


def _float32(value: float) -> float:
    """*value* rounded to float32, as a Python float: the threshold the graph's float32 constant
    holds, so eager code comparing in double decides as the graph does."""
    return float(np.float32(value))


class _StableTopK(torch.autograd.Function):
    """ONNX TopK (largest, sorted): equal values in index order, as the ONNX specification
    requires; the eager side is a stable sort, since torch.topk does not promise that order."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
        values, indices = torch.sort(x, descending=True, stable=True)
        return values[:k].contiguous(), indices[:k].contiguous()

    @staticmethod
    def symbolic(g: Any, x: Any, k: int) -> Any:
        kk = g.op("Constant", value_t=torch.tensor([k], dtype=torch.int64))
        return g.op("TopK", x, kk, axis_i=-1, largest_i=1, sorted_i=1, outputs=2)


def stable_topk(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The *k* largest of the 1-D *x* (values, int64 indices), equal values lower index first."""
    if not 0 < k <= TOPK_MAX_K:
        raise ArgumentError(f"a top-k of {k}: TensorRT's TopK takes 1..{TOPK_MAX_K}")
    if k > int(x.shape[0]):
        raise ArgumentError(f"a top-k of {k} over {int(x.shape[0])} values")
    values, indices = _StableTopK.apply(x, k)
    return values, indices


def _rank_descending(values: Tensor, index: Tensor) -> Tensor:
    """Each element's place (int64) in the order of descending *values*, equal values by
    ascending *index*, counted over every pair ([n, n] comparisons), so it does not depend on how
    a runtime's TopK orders equal values (ONNX's promises index order; TensorRT's does not)."""
    above = values[None, :] > values[:, None]
    level = (values[None, :] == values[:, None]) & (index[None, :] < index[:, None])
    ahead = above | level
    return ahead.to(torch.float32).sum(dim=1).to(torch.int64)  # counts < 2^24: exact in float32


def _by_rank(rank: Tensor) -> Tensor:
    """The permutation that lists positions by *rank* (a permutation of 0..n-1 itself)."""
    n = int(rank.shape[0])
    return torch.zeros(n, dtype=torch.int64).scatter(0, rank, torch.arange(n, dtype=torch.int64))


def _in_tie_order(values: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """A TopK's output (*values* descending, their *index*) with each run of equal values put in
    index order, whatever order the runtime gave it."""
    order = _by_rank(_rank_descending(values, index))
    return values[order], index[order]


def _boundary_in_index_order(x: Tensor, values: Tensor, index: Tensor) -> Tensor:
    """A TopK of the 1-D *x* (*values* descending, their *index*) with the values equal to the
    last one chosen as ``np.argsort(-x, kind='stable')`` chooses them: the lowest indices. A
    TopK that breaks the tie otherwise took others; a second TopK over distinct keys (the tied
    elements by index) gives the right ones."""
    n, k = int(x.shape[0]), int(values.shape[0])  # static: the graph has fixed shapes
    last = values[k - 1]
    above = (values > last).to(torch.float32).sum().to(torch.int64)  # these are right whatever the tie order
    key = torch.where(x == last, float(n) - torch.arange(n, dtype=torch.float32), torch.full_like(x, -1.0))
    _, tied = stable_topk(key, k)
    j = torch.arange(k, dtype=torch.int64)
    return torch.where(j < above, index, tied[torch.clamp(j - above, min=0)])


def _first_argmax(x: Tensor) -> Tensor:
    """The first index of each row's maximum of [R, K] (``tf.argmax``/``np.argmax``), int64,
    by comparisons (TensorRT's ArgMax does not say which of equal maxima it returns)."""
    k = int(x.shape[1])
    at_max = x == x.amax(dim=1, keepdim=True)
    cols = torch.arange(k, dtype=torch.float32)[None, :]
    return torch.where(at_max, cols, torch.full_like(cols, float(k))).amin(dim=1).to(torch.int64)


def _compact(keep: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The positions of the first *k* True of the 1-D bool *keep* in order, then the False ones in
    order (a stable compaction by TopK over distinct float32 keys); and whether each is True."""
    n = int(keep.shape[0])
    if k > n:  # fewer rows than asked for: pad with rows that are never kept
        keep = torch.cat([keep, torch.zeros(k - n, dtype=torch.bool)])
        n = k
    if n >= 2**24:
        raise ArgumentError(f"{n} rows: the compaction's float32 keys are exact up to 2^24")
    pos = torch.arange(n, dtype=torch.float32)
    key = torch.where(keep, n - pos, -1.0 - pos)
    top, order = stable_topk(key, k)
    return order, top > 0


def _gather_rows(x: Tensor, order: Tensor, real: Tensor) -> Tensor:
    """Rows *order* of *x* ([N, ...]; an index >= N gives a zero row), zero where not *real*."""
    n, m = int(x.shape[0]), int(order.shape[0])
    if n < m:
        x = torch.cat([x, x.new_zeros((m - n, *x.shape[1:]))])
    rows = x[order]
    mask = real.reshape(-1, *([1] * (x.dim() - 1)))
    return torch.where(mask, rows, torch.zeros_like(rows))


def _selected(boxes: Tensor, scores: Tensor, max_per_class: int, iou: float) -> Tensor:
    """NonMaxSuppression of *boxes* [N, 4] with per-class *scores* [C, N] (0 = not a candidate),
    as a bool [N]: which boxes some class selected."""
    n = int(boxes.shape[0])
    if n > NMS_MAX_CANDIDATES:
        raise ArgumentError(f"NonMaxSuppression over {n} boxes: TensorRT takes at most "
                            f"{NMS_MAX_CANDIDATES}")
    chosen = multiclass_nms(boxes, scores, max_per_class, _float32(iou), _SCORE_MIN)[:, 2]
    hit = torch.zeros(n, dtype=torch.float32).scatter(0, chosen, torch.ones_like(chosen, dtype=torch.float32))
    return hit > 0


# ---------------------------------------------------------------------------------------------
# anchors and boxes


def anchors_xy(cfg: MatterportConfig) -> Tensor:
    """``MaskRCNN.get_anchors`` (:func:`.conventions.pyramid_anchors`) as float32 [N, 4]
    x-first normalised boxes (x1n, y1n, x2n, y2n) of the molded image, rows P2 first, then y, x,
    ratio (the RPN's row order)."""
    h, w = cfg.image_shape[:2]
    a = cv.pyramid_anchors(cfg["RPN_ANCHOR_SCALES"], cfg["RPN_ANCHOR_RATIOS"], cfg.backbone_shapes,
                           cfg["BACKBONE_STRIDES"], cfg["RPN_ANCHOR_STRIDE"], (h, w))
    return torch.from_numpy(np.ascontiguousarray(a[:, XY]))


def window_xy(window: Sequence[int], molded_hw: tuple[int, int]) -> list[float]:
    """The resize's window (y1, x1, y2, x2 molded pixels, y2/x2 exclusive) normalised as
    matterport's DetectionLayer normalises it (``norm_boxes``, float32), x-first, for
    :func:`clip_xy` / :func:`refine_top_class`."""
    return [float(v) for v in cv.norm_boxes(np.asarray(window), molded_hw)[list(XY)]]


def apply_box_deltas_xy(boxes: Tensor, deltas: Tensor) -> Tensor:
    """``apply_box_deltas_graph`` on x-first boxes [..., 4] with x-first deltas (dx, dy, log dw,
    log dh) [..., 4], float32 in TF's order: ``w = x2 - x1; cx = x1 + 0.5*w; cx += dx*w;
    w *= exp(dw); x1 = cx - 0.5*w; x2 = x1 + w`` (and the same for y)."""
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    cx = boxes[..., 0] + 0.5 * width
    cy = boxes[..., 1] + 0.5 * height
    cx = cx + deltas[..., 0] * width
    cy = cy + deltas[..., 1] * height
    width = width * torch.exp(deltas[..., 2])
    height = height * torch.exp(deltas[..., 3])
    x1 = cx - 0.5 * width
    y1 = cy - 0.5 * height
    return torch.stack([x1, y1, x1 + width, y1 + height], dim=-1)


def clip_xy(boxes: Tensor, window_xy: Tensor | Sequence[float]) -> Tensor:
    """``clip_boxes_graph`` on x-first boxes [..., 4]: each coordinate into *window_xy*
    (x1, y1, x2, y2, same units), min with the far edge first, then max with the near one."""
    win = torch.as_tensor(window_xy, dtype=boxes.dtype)
    lo = torch.stack([win[0], win[1], win[0], win[1]])
    hi = torch.stack([win[2], win[3], win[2], win[3]])
    return torch.maximum(torch.minimum(boxes, hi), lo)


def tf_iou_matrix(a: Tensor, b: Tensor) -> Tensor:
    """TensorFlow's NMS IoU (``non_max_suppression_op.cc``, :func:`.conventions.tf_iou`) of
    every box of *a* [M, 4] with every box of *b* [N, 4] -> [M, N], float32 in its order: corners
    sorted per box, IoU 0 where either area is <= 0. Works on either box layout (symmetric)."""
    a, b = a[:, None, :], b[None, :, :]
    a0, a1 = torch.minimum(a[..., 0], a[..., 2]), torch.minimum(a[..., 1], a[..., 3])
    a2, a3 = torch.maximum(a[..., 0], a[..., 2]), torch.maximum(a[..., 1], a[..., 3])
    b0, b1 = torch.minimum(b[..., 0], b[..., 2]), torch.minimum(b[..., 1], b[..., 3])
    b2, b3 = torch.maximum(b[..., 0], b[..., 2]), torch.maximum(b[..., 1], b[..., 3])
    area_a = (a2 - a0) * (a3 - a1)
    area_b = (b2 - b0) * (b3 - b1)
    i0 = torch.clamp(torch.minimum(a2, b2) - torch.maximum(a0, b0), min=0.0)
    i1 = torch.clamp(torch.minimum(a3, b3) - torch.maximum(a1, b1), min=0.0)
    inter = i0 * i1
    iou = inter / (area_a + area_b - inter)
    return torch.where((area_a <= 0) | (area_b <= 0), torch.zeros_like(iou), iou)


# ---------------------------------------------------------------------------------------------
# ProposalLayer


def select_proposals(fg: Tensor, boxes: Tensor, pre_nms_limit: int, proposals: int,
                     iou: float, exact_ties: bool = True) -> tuple[Tensor, Tensor]:
    """``ProposalLayer``'s selection: the top *pre_nms_limit* of the fg scores *fg* [N] over all
    anchors (equal scores: lower anchor index first), then greedy NMS over them in that order
    (a box is suppressed when its TF IoU with a kept one is > *iou*) up to *proposals* boxes.

    *boxes* [N, 4]: every anchor's decoded and clipped box (x-first normalised). Returns the kept
    boxes [proposals, 4] in selection order, zero-padded, and which rows are real (bool).

    Within TensorRT's limits (TopK K <= 3840, NMS <= 5000 candidates) by rounds of at most 3840
    ranks: round 1 is NMS over the top 3840. Greedy NMS never looks past the rank where it fills
    *proposals*, so if round 1 keeps that many it is the answer; otherwise the next ranks (a TopK
    with the ranks taken so far at -inf) first lose every box whose IoU with a box already kept is
    > *iou*, and NMS over the survivors continues the greedy pass exactly. Every round is computed
    (the graph is static) and the first *proposals* kept in rank order are the result.
    NonMaxSuppression gets the strictly decreasing score ``min(pre_nms_limit, N) - rank``, so ties
    keep the lower rank whatever the runtime does with equal scores.

    *exact_ties* (default): nothing depends on the order in which the runtime's TopK lists equal
    scores (ONNX's TopK promises index order, TensorRT's does not): a run of equal scores cut by
    a round's last rank is completed by index (:func:`_boundary_in_index_order`, one more TopK
    over the anchors), and each round's candidates are put in index order among equal scores by
    [k, k] comparisons (:func:`_rank_descending`, 15 M for k = 3840). Without it the graph is
    smaller and exact wherever TopK keeps ONNX's promise."""
    n = int(fg.shape[0])
    if not 0 < proposals <= TOPK_MAX_K:
        raise ArgumentError(f"POST_NMS_ROIS_INFERENCE = {proposals}: must be 1..{TOPK_MAX_K} (TensorRT's TopK "
                            "limit)")
    if pre_nms_limit < 1:
        raise ArgumentError(f"PRE_NMS_LIMIT = {pre_nms_limit}: must be at least 1")
    total = min(pre_nms_limit, n)
    masked = fg
    idx = torch.zeros(0, dtype=torch.int64)
    ranked: list[Tensor] = []  # boxes in rank order, per round
    kept: list[Tensor] = []  # whether NMS kept each rank, per round
    kept_boxes = kept_real = None
    start = 0
    while start < total:
        k = min(TOPK_MAX_K, total - start)
        if start:  # the ranks of the rounds before out of this round's TopK
            masked = masked.scatter(0, idx, torch.full(idx.shape, float("-inf"), dtype=fg.dtype))
        values, idx = stable_topk(masked, k)
        if exact_ties:
            idx = _boundary_in_index_order(masked, values, idx)
            _, idx = _in_tie_order(values, idx)
        cand = boxes[idx]
        surrogate = (float(total - start) - torch.arange(k, dtype=torch.float32))
        if kept_boxes is not None and kept_real is not None:
            hit = (tf_iou_matrix(cand, kept_boxes) > _float32(iou)) & kept_real[None, :]
            free = hit.to(torch.float32).amax(dim=1) == 0
            surrogate = torch.where(free, surrogate, torch.zeros_like(surrogate))
        ranked.append(cand)
        kept.append(_selected(cand, surrogate[None, :], proposals, iou))
        start += k
        if start < total:  # what is kept so far, compacted, for the next round's IoU test
            order, kept_real = _compact(torch.cat(kept), proposals)
            kept_boxes = _gather_rows(torch.cat(ranked), order, kept_real)
    order, real = _compact(torch.cat(kept), proposals)
    return _gather_rows(torch.cat(ranked), order, real), real


# ---------------------------------------------------------------------------------------------
# DetectionLayer


def refine_top_class(rois: Tensor, real: Tensor, probs: Tensor, deltas: Tensor, bbox_std: Sequence[float] | Tensor,
                     window_xy: Sequence[float] | Tensor, min_confidence: float, nms_iou: float,
                     max_instances: int, exact_ties: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``refine_detections_graph`` (:func:`.detect.refine_detections`) with fixed shapes.

    *rois* [R, 4] x-first normalised, *real* [R] bool (padded RoIs are not), *probs* [R, K],
    *deltas* [R, K, 4] raw x-first (dx, dy, log dw, log dh), *bbox_std* x-first [4], *window_xy*
    the molded image's window, normalised (x1, y1, x2, y2). Each RoI keeps its argmax class
    (background included, first index on ties) with that class's deltas times *bbox_std*, applied
    and clipped to the window; background, padding and (when *min_confidence* is not 0) scores
    below it (``>=`` keeps) are out; NMS per class (IoU > *nms_iou* suppresses, at most
    *max_instances* a class) in one NonMaxSuppression node; the union by score descending (ties:
    lower RoI index first) cut to *max_instances*.

    matterport does not leave out the zero-padded RoIs: they go through the box head, and one whose
    top class is not background is a candidate (its refined box is empty, so it suppresses nothing,
    and :func:`keep_nonempty` drops it after unmolding, but it can take one of the *max_instances*
    places). To reproduce ``detect()``, pass *real* all True; *real* is there for a graph that
    chooses to drop them.

    *exact_ties* (default): the argmax and the score order by comparisons ([R, R] for the order),
    not by ArgMax/TopK, whose order on equal values TensorRT does not promise.

    Returns boxes [max_instances, 4] (x-first normalised), scores [max_instances] float32, labels
    int32 (matterport class ids) and valid bool; the rows after the detections are zero/False."""
    r, k = int(probs.shape[0]), int(probs.shape[1])
    if r > TOPK_MAX_K:
        raise ArgumentError(f"{r} RoIs: the detection layer's ordering is a TopK, at most {TOPK_MAX_K}")
    if not 0 < max_instances <= TOPK_MAX_K:
        raise ArgumentError(f"DETECTION_MAX_INSTANCES = {max_instances}: must be 1..{TOPK_MAX_K} (TensorRT's TopK "
                            "limit)")
    class_ids = _first_argmax(probs) if exact_ties else torch.argmax(probs, dim=1)
    score = probs.gather(1, class_ids[:, None])[:, 0]
    d = deltas.gather(1, class_ids[:, None, None].expand(r, 1, 4))[:, 0]
    refined = clip_xy(apply_box_deltas_xy(rois, d * torch.as_tensor(bbox_std, dtype=torch.float32)), window_xy)
    keep = (class_ids > 0) & real
    if min_confidence:
        keep = keep & (score >= torch.tensor(min_confidence, dtype=torch.float32))
    # everything in score order (ties: lower RoI index first); NMS then sees strictly decreasing
    # surrogate scores, and that order is also the final one
    if exact_ties:
        order = _by_rank(_rank_descending(score, torch.arange(r, dtype=torch.int64)))
        score_s = score[order]
    else:
        score_s, order = stable_topk(score, r)
    boxes_s, class_s, keep_s = refined[order], class_ids[order], keep[order]
    surrogate = float(r) - torch.arange(r, dtype=torch.float32)
    classes = torch.arange(k, dtype=torch.int64)[:, None]
    per_class = torch.where((class_s[None, :] == classes) & keep_s[None, :], surrogate[None, :],
                            torch.zeros((1, 1), dtype=torch.float32))
    chosen = _selected(boxes_s, per_class, max_instances, nms_iou)
    final, valid = _compact(chosen, max_instances)
    boxes = _gather_rows(boxes_s, final, valid)
    scores = _gather_rows(score_s, final, valid)
    labels = _gather_rows(class_s.to(torch.int32), final, valid)
    return boxes, scores, labels, valid


# ---------------------------------------------------------------------------------------------
# back to the frame


def _round_times(b: Tensor, n: int, offset: int = 0) -> Tensor:
    """round-half-even(b * n + offset) for float32 *b* and integers 0 <= *n* <= UNMOLD_MAX_SCALE,
    *offset*, exactly (what numpy gives in float64), in float32 operations only. Veltkamp's split
    b = hi + lo (12 significand bits each) makes ``hi * n`` and ``lo * n`` exact; Knuth's TwoSum
    gives their sum s and its rounding error e exactly. Away from a half-integer s, round(s) +
    offset is the answer (e cannot cross one); at a half-integer s the sign of e decides, and
    e == 0 is a tie, to the even of the two neighbours of s + offset (the offset is added before
    the rounding in matterport, so it changes which one is even). Valid for |b * n| < 2^22.

    Every product here is exact (or, for the splitter, followed by the only rounding), so fusing
    a multiply with the next addition into one FMA gives the same bits; only additions round."""
    c = b * _SPLIT_SHIFT + b
    hi = c - (c - b)
    lo = b - hi
    p = hi * float(n)
    q = lo * float(n)
    s = p + q
    bv = s - p
    e = (p - (s - bv)) + (q - bv)
    below = torch.floor(s) + float(offset)
    half = below * 0.5
    tie_up = (e > 0) | ((e == 0) & (torch.floor(half) != half))  # an exact tie: from an odd floor up
    at_half = torch.where(tie_up, below + 1.0, below)
    return torch.where(s - torch.floor(s) == 0.5, at_half, torch.round(s) + float(offset))


def check_frame(frame_hw: tuple[int, int]) -> None:
    """ArgumentError unless every side of *frame_hw* (pixels) is 2..4096: the exact float32 form
    of matterport's float64 box rounding (:func:`_round_times`) holds for those sides only."""
    h, w = frame_hw
    if not 1 < max(h, w) <= UNMOLD_MAX_SCALE + 1 or min(h, w) < 2:
        raise ArgumentError(f"--frame {h}x{w}: matterport graphs take frame sides of 2 to {UNMOLD_MAX_SCALE + 1} "
                            "pixels (boxes are scaled back to the frame exactly only up to that size); resize the "
                            "frames first")


def unmold_boxes_xy(boxes: Tensor, window: Sequence[int], molded_hw: tuple[int, int],
                    frame_hw: tuple[int, int]) -> Tensor:
    """``unmold_detections``' box step (:func:`.conventions.unmold_boxes`) on x-first normalised
    boxes [K, 4]: float32 ``(b - shift) / scale`` with the window (y1, x1, y2, x2 molded pixels)
    normalised by ``norm_boxes``, then matterport's float64 ``around(b * [W-1, H-1] + [0, 0, 1,
    1])`` (halves to even), exactly, in float32 (:func:`_round_times`).

    Returns float32 [K, 4] integer-valued frame pixels (x1, y1, x2, y2), x2/y2 exclusive."""
    check_frame(frame_hw)
    h, w = frame_hw
    wy1, wx1, wy2, wx2 = (float(v) for v in cv.norm_boxes(np.asarray(window), molded_hw))
    wh, ww = float(np.float32(wy2) - np.float32(wy1)), float(np.float32(wx2) - np.float32(wx1))
    shift = torch.tensor([wx1, wy1, wx1, wy1], dtype=torch.float32)
    scale = torch.tensor([ww, wh, ww, wh], dtype=torch.float32)
    b = (boxes - shift) / scale
    scales_offsets = ((w - 1, 0), (h - 1, 0), (w - 1, 1), (h - 1, 1))  # + [0, 0, 1, 1] before the rounding
    cols = [_round_times(b[:, i], n, off) for i, (n, off) in enumerate(scales_offsets)]
    return torch.stack(cols, dim=1)


def keep_nonempty(boxes: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """matterport drops the boxes with ``(y2 - y1) * (x2 - x1) <= 0`` after rounding (a refined
    box outside the window clips to zero height) before it pastes masks. Over *boxes* [K, 4]
    (the integer-valued frame boxes of :func:`unmold_boxes_xy`) and *valid* [K] bool: the stable
    order that puts the valid non-empty rows first (int64 [K], to gather boxes, scores, labels
    and masks by), whether each row of that order is kept (bool [K]) and how many are (int32 [1])."""
    area = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0])
    keep = valid & (area > 0)
    order, kept = _compact(keep, int(boxes.shape[0]))
    count = kept.to(torch.int32).sum().to(torch.int32).reshape(1)
    return order, kept, count
