"""RoI and box cases shared by the CPU tests of the custom ops (against torchvision) and the CUDA
kernel tests (against the CPU build): random mixes of ordinary and degenerate cases, edge cases,
FPN level boundaries. numpy only: the CUDA tests need no torchvision (edgeseg itself needs OpenCV)."""

from __future__ import annotations

import math

import numpy as np

SCALES = [1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 32]
OUTPUT_SIZES = [(7, 7), (14, 14), (3, 5), (1, 1)]
FRAMES = [(1, 1), (37, 53), (64, 64), (97, 131), (120, 81), (200, 333)]

#: RoIs (batch index, x0, y0, x1, y1) at the edges of a 2 x C x 9 x 13 map read at scale 1/4.
EDGE_ROIS = np.array(
    [
        [0, 0, 0, 0, 0],  # empty box at the origin
        [1, 10, 10, 10, 10],  # empty box inside
        [0, 3.2, 4.1, 3.4, 4.3],  # sub-pixel
        [1, -5, -7, -1, -2],  # wholly above-left, negative
        [0, 60, 40, 80, 50],  # wholly below-right (scale 1/4: beyond 13 x 9)
        [1, -10, -10, 30, 20],  # straddles the top-left corner
        [0, 40, 30, 70, 50],  # straddles the bottom-right corner
        [1, 0, 0, 52, 36],  # the whole map
        [0.9, 8, 8, 16, 16],  # batch index 0.9 truncates to 0
        [1, 20, 20, 10, 10],  # reversed corners
    ],
    dtype=np.float32,
)


def random_rois(rng: np.random.Generator, count: int, batch: int, image_w: float, image_h: float) -> np.ndarray:
    """[count, 5] RoIs mixing ordinary, zero-size, sub-pixel, partly and wholly outside boxes
    and negative coordinates (image pixels)."""
    def size(low: float, frac: float, extent: float) -> float:
        return float(rng.uniform(low, max(low + 1.0, frac * extent)))

    rows = []
    for _ in range(count):
        kind = rng.integers(0, 6)
        x0 = rng.uniform(-0.2 * image_w, 1.1 * image_w)
        y0 = rng.uniform(-0.2 * image_h, 1.1 * image_h)
        if kind == 0:  # ordinary
            w, h = size(1, 0.8, image_w), size(1, 0.8, image_h)
        elif kind == 1:  # zero width and/or height
            w, h = float(rng.choice([0.0, 5.0])), float(rng.choice([0.0, 3.0]))
        elif kind == 2:  # sub-pixel
            w, h = rng.uniform(0, 1), rng.uniform(0, 1)
        elif kind == 3:  # wholly outside (right/bottom, or left/top)
            side = rng.integers(0, 2)
            x0 = image_w + rng.uniform(5, 50) if side else -rng.uniform(60, 120)
            y0 = image_h + rng.uniform(5, 50) if side else -rng.uniform(60, 120)
            w, h = rng.uniform(1, 40), rng.uniform(1, 40)
        elif kind == 4:  # straddling the top-left corner, negative coordinates
            x0, y0 = rng.uniform(-40, 0), rng.uniform(-40, 0)
            w, h = size(10, 0.6, image_w), size(10, 0.6, image_h)
        else:  # straddling the bottom-right corner
            x0, y0 = rng.uniform(0.6, 1.0) * image_w, rng.uniform(0.6, 1.0) * image_h
            w, h = size(10, 0.8, image_w), size(10, 0.8, image_h)
        rows.append([rng.integers(0, batch), x0, y0, x0 + w, y0 + h])
    return np.asarray(rows, dtype=np.float32).reshape(count, 5)



def random_boxes(rng: np.random.Generator, k: int, frame_hw: tuple[int, int]) -> np.ndarray:
    """[k, 4] boxes (x0, y0, x1, y1): ordinary, zero-size, sub-pixel, reversed, partly and
    wholly outside the frame."""
    fh, fw = frame_hw
    rows = []
    for _ in range(k):
        kind = rng.integers(0, 7)
        x0, y0 = rng.uniform(-0.1 * fw, fw), rng.uniform(-0.1 * fh, fh)
        w, h = rng.uniform(1, max(2, 0.7 * fw)), rng.uniform(1, max(2, 0.7 * fh))
        if kind == 1:  # zero width and/or height
            w, h = float(rng.choice([0.0, w])), float(rng.choice([0.0, h]))
        elif kind == 2:  # sub-pixel
            w, h = rng.uniform(0, 1), rng.uniform(0, 1)
        elif kind == 3:  # wholly outside: right/bottom or left/top
            if rng.integers(0, 2):
                x0, y0 = fw + rng.uniform(0, 30), fh + rng.uniform(0, 30)
            else:
                x0, y0 = -w - rng.uniform(2, 30), -h - rng.uniform(2, 30)
        elif kind == 4:  # straddling the top-left corner
            x0, y0 = -rng.uniform(0, 0.5) * w, -rng.uniform(0, 0.5) * h
        elif kind == 5:  # straddling the bottom-right corner
            x0, y0 = fw - rng.uniform(0, 1) * w, fh - rng.uniform(0, 1) * h
        elif kind == 6:  # reversed corners
            x0, w = x0 + w, -w
        rows.append([x0, y0, x0 + w, y0 + h])
    return np.asarray(rows, dtype=np.float32).reshape(k, 4)



def zoom_boxes(rng: np.random.Generator, k: int, frame_hw: tuple[int, int]) -> np.ndarray:
    """[k, 4] integer-valued boxes (x0, y0, x1, y1, exclusive ends) as PasteMasks mode 2 gets
    them: larger than the mask (upsampling) and smaller (downsampling), one pixel wide and/or
    high, empty (zero or negative size), partly and wholly outside the frame."""
    fh, fw = frame_hw
    rows = []
    for _ in range(k):
        kind = rng.integers(0, 7)
        x0, y0 = int(rng.integers(-fw // 10 - 1, fw)), int(rng.integers(-fh // 10 - 1, fh))
        w, h = int(rng.integers(1, max(2, fw))), int(rng.integers(1, max(2, fh)))
        if kind == 1:  # small: fewer pixels than mask samples on most masks
            w, h = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        elif kind == 2:  # one pixel wide, high or both
            w, h = [(1, h), (w, 1), (1, 1)][rng.integers(0, 3)]
        elif kind == 3:  # empty: zero or negative width and/or height
            w, h = [(0, h), (w, 0), (-w, h), (0, -h)][rng.integers(0, 4)]
        elif kind == 4:  # straddling the top-left corner
            x0, y0 = -int(rng.integers(0, w)), -int(rng.integers(0, h))
        elif kind == 5:  # straddling the bottom-right corner
            x0, y0 = fw - int(rng.integers(0, w)), fh - int(rng.integers(0, h))
        elif kind == 6:  # wholly outside, below-right or above-left
            x0, y0 = (fw + int(rng.integers(0, 9)), 0) if rng.integers(0, 2) else (-w - int(rng.integers(0, 9)), y0)
        rows.append([x0, y0, x0 + w, y0 + h])
    return np.asarray(rows, dtype=np.float32).reshape(k, 4)


def zoom_masks(rng: np.random.Generator, k: int, m: int) -> np.ndarray:
    """[k, m, m] float32 probabilities for PasteMasks mode 2: uniform ones, ones all >= 0.5 (the
    clip to the mask's range decides the box's edge pixels), constant 0.5 (every pasted value is
    exactly the threshold), and ones rounded to float16 (exactly what an FP16 graph feeds)."""
    masks = rng.random((k, m, m), dtype=np.float32)
    for i in range(k):
        kind = i % 4
        if kind == 1:
            masks[i] = 0.5 + 0.5 * masks[i]
        elif kind == 2:
            masks[i] = 0.5
        elif kind == 3:
            masks[i] = masks[i].astype(np.float16).astype(np.float32)
    return masks


def zoom_paste_cases(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int], float]]:
    """(masks, boxes, frame, threshold) for PasteMasks mode 2 over the shared frames, mask sides
    1 to 28, thresholds at and off 0.5, K from 0 up."""
    cases = []
    for frame_hw in FRAMES:
        for threshold in (0.5, 0.3, 0.95):
            k, m = int(rng.integers(0, 13)), int(rng.choice([1, 2, 5, 14, 28]))
            cases.append((zoom_masks(rng, k, m), zoom_boxes(rng, k, frame_hw), frame_hw, threshold))
    return cases


def pyramid(rng: np.random.Generator, n: int, c: int, image_hw: tuple[int, int], strides: list[int]):
    """Features of an FPN pyramid for an image of image_hw (sizes rounded up, as convs do)."""
    return [
        rng.standard_normal((n, c, math.ceil(image_hw[0] / s), math.ceil(image_hw[1] / s))).astype(np.float32)
        for s in strides
    ]



def boundary_rois() -> np.ndarray:
    """Boxes whose sqrt(area) sits on, just below and just above the level boundaries
    224 * 2^j (j = -3..2) of the default canonical scale and level, square and elongated."""
    rows = []
    for j in range(-3, 3):
        side = 224.0 * 2.0**j
        for rel in (-1e-3, -1e-5, -2e-6, -1e-6, -5e-7, 0.0, 5e-7, 1e-6, 2e-6, 1e-5, 1e-3):
            s = side * (1 + rel)
            for aspect in (1.0, 2.0, 0.25):
                w, h = s * math.sqrt(aspect), s / math.sqrt(aspect)
                x0, y0 = 3.0 + j, 5.0 - j
                rows.append([0, x0, y0, x0 + w, y0 + h])
    for side in (56.0, 112.0, 224.0, 448.0, 0.0, 1.0):  # exact sides; tiny and empty boxes
        rows.append([0, 10, 10, 10 + side, 10 + side])
    rows.append([0, 50, 50, 40, 60])  # negative area: no level in torchvision, zeros
    return np.asarray(rows, dtype=np.float32)



def random_roi_align_cases(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int], float,
                                                                    int, bool]]:
    """(features [2, C, H, W], rois, output size, scale, sampling ratio, aligned): every scale,
    output size, sampling ratio and alignment, with random small maps and mixed RoIs."""
    cases = []
    for scale in SCALES:
        for out_hw in OUTPUT_SIZES:
            for sampling_ratio in (-1, 0, 2):
                for aligned in (False, True):
                    n, c = 2, int(rng.integers(1, 5))
                    h, w = int(rng.integers(1, 24)), int(rng.integers(1, 24))
                    features = rng.standard_normal((n, c, h, w)).astype(np.float32)
                    rois = random_rois(rng, int(rng.integers(1, 12)), n, w / scale, h / scale)
                    cases.append((features, rois, out_hw, scale, sampling_ratio, aligned))
    return cases


# ----------------------------------------------------------------------------------------------
# MultiLevelRoIAlign sampling 1 (tf.image.crop_and_resize) and level_rule 2 (matterport)

#: matterport's molded image area of the crop_and_resize cases (IMAGE_MAX_DIM 512, case A)
MATTERPORT_AREA = 512.0 * 512.0

#: Normalised boxes (y1, x1, y2, x2) whose matterport level term log(sqrt(h * w) / (224 /
#: sqrt(512 * 512))) / log(2) is exactly -1.5 in float32 (logf as glibc and torch compute it):
#: round half to even gives 4 + -2 = level 2 where rounding half up would give 3.
EXACT_HALF_BOXES = np.array(
    [[0.0, 0.0, 0.09280776232481003, 0.257799357175827],
     [0.0, 0.0, 0.09319543093442917, 0.2567269802093506],
     [0.0, 0.0, 0.09358309954404831, 0.2556634843349457]],
    dtype=np.float32,
)


def yx_to_rois(boxes: np.ndarray, batch: np.ndarray | None = None) -> np.ndarray:
    """matterport boxes (y1, x1, y2, x2) -> the op's rois (batch index, x0, y0, x1, y1)."""
    index = np.zeros(len(boxes), np.float32) if batch is None else batch.astype(np.float32)
    return np.stack([index, boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]], 1).astype(np.float32)


def random_norm_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """[count, 4] normalised matterport boxes (y1, x1, y2, x2): ordinary, zero rows (the padded
    proposals), zero-size, tiny, reversed, partly and wholly outside [0, 1], whole-image."""
    rows = []
    for _ in range(count):
        kind = rng.integers(0, 8)
        y1, x1 = rng.uniform(0, 0.9, 2)
        h, w = rng.uniform(0.01, 1.0 - max(y1, x1) + 0.05, 2)
        if kind == 1:  # padded row
            y1 = x1 = h = w = 0.0
        elif kind == 2:  # zero height and/or width
            h, w = float(rng.choice([0.0, h])), float(rng.choice([0.0, w]))
        elif kind == 3:  # tiny: well under a feature pixel
            h, w = rng.uniform(0, 2e-3, 2)
        elif kind == 4:  # reversed
            y1, h = y1 + h, -h
        elif kind == 5:  # straddling the borders
            y1, x1 = rng.uniform(-0.4, 0.0, 2)
            h, w = rng.uniform(0.3, 1.6, 2)
        elif kind == 6:  # wholly outside
            y1, x1 = rng.uniform(1.05, 1.5), rng.uniform(-1.5, -0.6)
            h, w = rng.uniform(0.05, 0.5, 2)
        elif kind == 7:  # large boxes (level 5)
            y1, x1 = rng.uniform(0, 0.2, 2)
            h, w = rng.uniform(0.6, 0.8, 2)
        rows.append([y1, x1, y1 + h, x1 + w])
    return np.asarray(rows, dtype=np.float32).reshape(count, 4)


def matterport_boundary_boxes() -> np.ndarray:
    """Normalised boxes at, just below and just above matterport's level boundaries (terms
    k + 0.5, k = -3..2, image area 512 * 512), square and elongated, the exact -1.5 terms, zero
    and negative-area boxes."""
    d = 224.0 / 512.0
    rows = [row for row in EXACT_HALF_BOXES]
    for k in range(-3, 3):
        side = d * 2.0 ** (k + 0.5)
        for rel in (-1e-3, -1e-6, -2e-7, 0.0, 2e-7, 1e-6, 1e-3):
            s = side * (1 + rel)
            for aspect in (1.0, 2.5, 0.3):
                h, w = s / math.sqrt(aspect), s * math.sqrt(aspect)
                rows.append([0.05, 0.1, 0.05 + h, 0.1 + w])
    rows += [[0, 0, 0, 0], [0.3, 0.3, 0.3, 0.6], [0.5, 0.5, 0.4, 0.7]]  # zero, empty, negative area
    return np.asarray(rows, dtype=np.float32)


def crop_and_resize_cases(rng: np.random.Generator) -> list[tuple[list[np.ndarray], np.ndarray, tuple[int, int]]]:
    """(pyramid [2, C, H_l, W_l] for scales 1/4 .. 1/32, rois (normalised), output size) for
    sampling 1 with level_rule 2: random and boundary boxes, square and other output sizes
    (1 x 1 and 1-wide outputs take TF's centre branch), small and 1-pixel maps."""
    cases = []
    for image_hw in ((512, 512), (64, 96), (32, 4)):
        for out_hw in ((7, 7), (14, 14), (1, 1), (1, 4), (5, 1), (3, 2)):
            features = pyramid(rng, 2, int(rng.integers(1, 5)), image_hw, [4, 8, 16, 32])
            boxes = np.concatenate([random_norm_boxes(rng, 60), matterport_boundary_boxes()])
            rois = yx_to_rois(boxes, rng.integers(0, 2, len(boxes)))
            cases.append((features, rois, out_hw))
    return cases


#: ZoomLinear geometries (frame H, W, C, zoomed height, width, canvas height, width, top, left):
#: matterport's case A, up- and downsampling, zoom factor 1, odd paddings, one sample, anisotropic,
#: one and four channels.
ZOOM_CASES = [
    (400, 600, 3, 341, 512, 512, 512, 85, 0),
    (100, 150, 3, 171, 256, 256, 256, 42, 0),
    (300, 200, 3, 128, 85, 128, 128, 0, 21),
    (96, 128, 3, 96, 128, 128, 128, 16, 0),
    (50, 333, 3, 77, 512, 512, 512, 217, 0),
    (77, 131, 3, 100, 170, 193, 193, 46, 11),
    (7, 11, 3, 1, 1, 3, 2, 1, 1),
    (7, 11, 1, 40, 3, 41, 5, 0, 2),
    (33, 47, 4, 61, 29, 64, 32, 3, 1),
]


def random_frame(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """A float32 [h, w, c] frame of integer pixel values; some frames span 0..255, others a
    narrower range (the clip then decides at the borders)."""
    lo, hi = (0, 256) if rng.integers(0, 2) else (int(rng.integers(1, 60)), int(rng.integers(180, 256)))
    return rng.integers(lo, hi, (h, w, c)).astype(np.float32)
