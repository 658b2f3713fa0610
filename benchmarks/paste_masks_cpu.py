"""Time edgeseg.ops.paste_masks (CPU build of PasteMasks) against torchvision.

100 random 28 x 28 masks with random boxes are pasted into a 1080 x 1920 frame, on 2 threads
each: ours with threads=2, torchvision's paste_masks_in_image (+ `> 0.5`) with
torch.set_num_threads(2). Prints the median of several runs and the speed-up.

    python benchmarks/paste_masks_cpu.py [--runs 7] [--masks 100] [--mode torchvision]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import median_seconds
from edgeseg import ops

FRAME_HW = (1080, 1920)
MASK_SIZE = 28
THREADS = 2


def random_inputs(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mask probabilities [count, 28, 28] and boxes [count, 4] (x0, y0, x1, y1) of 16 to 400
    pixels a side, centred anywhere in the frame (so some stick out of it)."""
    rng = np.random.default_rng(seed)
    masks = rng.random((count, MASK_SIZE, MASK_SIZE)).astype(np.float32)
    size = rng.uniform(16, 400, (count, 2))
    centre = rng.uniform(0, 1, (count, 2)) * np.array([FRAME_HW[1], FRAME_HW[0]])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    return masks, boxes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per implementation (median)")
    parser.add_argument("--masks", type=int, default=100, help="number of masks")
    parser.add_argument("--mode", choices=["torchvision", "continuous"], default="torchvision",
                        help="our paste mode (torchvision's function is always its own)")
    args = parser.parse_args(argv)

    masks, boxes = random_inputs(args.masks)
    torch.set_num_threads(THREADS)
    masks_t = torch.from_numpy(masks[:, None])
    boxes_t = torch.from_numpy(boxes)

    def ours() -> np.ndarray:
        return ops.paste_masks(masks, boxes, FRAME_HW, mode=args.mode, threads=THREADS)

    def reference() -> np.ndarray:
        return (paste_masks_in_image(masks_t, boxes_t, FRAME_HW)[:, 0] > 0.5).numpy()

    if args.mode == "torchvision":
        same = float((ours() == reference()).mean())
        print(f"agreement with torchvision: {same * 100:.4f}% of pixels")

    t_ours = median_seconds(ours, args.runs)
    t_ref = median_seconds(reference, args.runs)
    print(f"{args.masks} masks {MASK_SIZE}x{MASK_SIZE} -> {FRAME_HW[0]}x{FRAME_HW[1]}, {THREADS} threads, "
          f"median of {args.runs} runs")
    print(f"  edgeseg.ops.paste_masks ({args.mode}): {t_ours * 1e3:8.1f} ms")
    print(f"  torchvision paste_masks_in_image > 0.5: {t_ref * 1e3:8.1f} ms")
    print(f"  speed-up: {t_ref / t_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
