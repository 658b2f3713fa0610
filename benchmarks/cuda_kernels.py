"""Time the plugins' CUDA kernels against torchvision's CUDA ops on the same GPU (no TensorRT).

- PasteMasks: 100 masks 28 x 28 pasted into 1080 x 1920, against
  ``torchvision.models.detection.roi_heads.paste_masks_in_image`` (+ ``> 0.5``, as edgeseg thresholds
  in the op).
- MultiLevelRoIAlign: 1000 RoIs, 256 channels, 4 FPN levels of an 800 x 1216 image, 7 x 7 and
  14 x 14, sampling ratio 2, against ``torchvision.ops.MultiScaleRoIAlign``.

FP32 and FP16 each. Every figure is the median GPU time (CUDA events) of --runs calls, the two
contenders alternating call by call so clock and thermal drift hit both alike; the ratio is
torchvision's time over ours. Prints a table and, with --json, writes the figures to a file.

    python benchmarks/cuda_kernels.py [--runs 30] [--json kernels.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAME_HW = (1080, 1920)
IMAGE_HW = (800, 1216)
STRIDES = (4, 8, 16, 32)


def alternate(contenders: dict[str, Callable[[], object]], runs: int) -> dict[str, float | None]:
    """Median milliseconds of each contender's GPU time, calls interleaved, after one warm-up each;
    None for a contender that fails on this GPU / dtype (its error is printed)."""
    import torch

    for name, fn in list(contenders.items()):
        try:
            fn()
        except RuntimeError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            del contenders[name]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end))
    return {name: statistics.median(times[name]) if name in times else None for name in ("edgeseg", "torchvision")}


def paste_inputs(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = rng.random((count, 28, 28)).astype(np.float32)
    size = rng.uniform(16, 400, (count, 2))
    centre = rng.uniform(0, 1, (count, 2)) * np.array([FRAME_HW[1], FRAME_HW[0]])
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    return masks, boxes


def bench_paste(kernels: Any, dtype: Any, runs: int) -> dict[str, float | None]:
    import torch
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    masks_np, boxes_np = paste_inputs(100)
    masks = torch.from_numpy(masks_np).cuda().to(dtype)
    boxes = torch.from_numpy(boxes_np).cuda()
    out = torch.empty((100, *FRAME_HW), dtype=torch.uint8, device="cuda")
    return alternate({
        "edgeseg": lambda: kernels.paste_masks(masks, boxes, FRAME_HW, out=out, sync=False),
        "torchvision": lambda: paste_masks_in_image(masks[:, None], boxes, FRAME_HW)[:, 0] > 0.5,
    }, runs)


def bench_roi_align(kernels: Any, dtype: Any, output: int, runs: int) -> dict[str, float | None]:
    import torch
    from torchvision.ops import MultiScaleRoIAlign

    rng = np.random.default_rng(1)
    feats = OrderedDict(
        (f"p{i}", torch.randn((1, 256, -(-IMAGE_HW[0] // s), -(-IMAGE_HW[1] // s)), device="cuda").to(dtype))
        for i, s in enumerate(STRIDES))
    xy = rng.uniform(0, 1, (1000, 2)) * np.array([IMAGE_HW[1], IMAGE_HW[0]])
    wh = np.exp(rng.uniform(np.log(8), np.log(600), (1000, 2)))
    boxes = torch.from_numpy(np.concatenate([xy, xy + wh], axis=1).astype(np.float32)).cuda()
    rois = torch.cat([torch.zeros((1000, 1), device="cuda"), boxes], dim=1)
    pool = MultiScaleRoIAlign(list(feats), output, 2)
    levels = list(feats.values())
    scales = [1.0 / s for s in STRIDES]
    tv_boxes = [boxes.to(dtype)]
    return alternate({
        "edgeseg": lambda: kernels.roi_align(levels, rois, (output, output), scales, 2, sync=False),
        "torchvision": lambda: pool(feats, tv_boxes, [IMAGE_HW]),
    }, runs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    import torch

    from tests.cuda_kernels import Kernels, build_library

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to time", file=sys.stderr)
        return 1
    major, minor = torch.cuda.get_device_capability()
    with tempfile.TemporaryDirectory() as tmp:
        kernels = Kernels(build_library(Path(tmp), major * 10 + minor))
        rows: list[dict[str, Any]] = []
        for label, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            cases = [("PasteMasks 100 x 28x28 -> 1080x1920", bench_paste(kernels, dtype, args.runs)),
                     ("MultiLevelRoIAlign 1000 RoIs x 256 ch, 7x7", bench_roi_align(kernels, dtype, 7, args.runs)),
                     ("MultiLevelRoIAlign 1000 RoIs x 256 ch, 14x14",
                      bench_roi_align(kernels, dtype, 14, args.runs))]
            for name, ms in cases:
                ours, theirs = ms["edgeseg"], ms["torchvision"]
                rows.append({"case": name, "precision": label, "edgeseg_ms": ours, "torchvision_ms": theirs,
                             "speedup": theirs / ours if ours and theirs else None})
    gpu = torch.cuda.get_device_name()
    print(f"{gpu}, torch {torch.__version__}, median of {args.runs} alternating runs (CUDA events)")
    print(f"{'case':<46} {'prec':<5} {'edgeseg ms':>11} {'torchvision ms':>15} {'speed-up':>9}")

    def cell(value: float | None, width: int, unit: str = "") -> str:
        return f"{'n/a':>{width}}" if value is None else f"{value:>{width - len(unit)}.3f}{unit}"

    for r in rows:
        print(f"{r['case']:<46} {r['precision']:<5} {cell(r['edgeseg_ms'], 11)} {cell(r['torchvision_ms'], 15)} "
              f"{cell(r['speedup'], 9, 'x')}")
    if args.json:
        from edgeseg.atomic import atomic_output

        report = {"gpu": gpu, "torch": torch.__version__, "runs": args.runs, "rows": rows}
        with atomic_output(args.json) as target:
            target.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
