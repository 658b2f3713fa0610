"""matterport Mask R-CNN on the CPU: edgeseg's graph (ONNX Runtime + the CPU build of edgeseg's
ops), FP32 and INT8, against the eager PyTorch rebuild of matterport's ``detect()``
(``edgeseg.converters.matterport.detect.load_eager(...).detect``), side by side in one run.

The model: ``../shared/matterport`` case A (its ``.h5`` and Config, ResNet-50 at 512 x 512) when
present, else the same Config with seeded random weights. The frame: case A's photo (400x600, or
a scikit-image photo fitted to --frame). One uint8 frame in (BGR for edgeseg, RGB for the eager
rebuild), frame-size binary masks out. Each contender runs in its own process (its peak memory is
its own), the contenders take turns for --rounds rounds (this VM drifts by tens of percent), and
each figure is the median over all its rounds; the ratios are against the eager rebuild.

    python benchmarks/matterport_cpu.py                       # case A, 2 threads, 2 rounds x 3 runs
    python benchmarks/matterport_cpu.py --rounds 3 --calib-count 8
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.maskrcnn_cpu import peak_rss_mb
from benchmarks.timing import alternate_in_processes, print_against_eager, timed
from edgeseg.cli import parse_hw

SHARED = Path(__file__).resolve().parents[2] / "shared" / "matterport"
CONTENDERS = ("matterport_eager", "edgeseg_fp32", "edgeseg_int8")


def run_edgeseg(work: Path, frame: np.ndarray, threads: int, runs: int, precision: str) -> dict[str, Any]:
    import edgeseg

    model = edgeseg.load(work / f"edgeseg_{precision}.onnx", threads=threads)
    seconds, result = timed(lambda: model.instances(frame), runs)
    return {"seconds": seconds, "detections": len(result)}


def run_eager(work: Path, frame: np.ndarray, threads: int, runs: int) -> dict[str, Any]:
    import torch

    from edgeseg.converters.matterport.export import read

    torch.set_num_threads(threads)
    weights = work / "weights.h5"
    model = read(work / "config.json", weights if weights.is_file() else None)
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    seconds, dets = timed(lambda: model.detect(rgb), runs)
    return {"seconds": seconds, "detections": len(dets.class_ids)}


RUNNERS: dict[str, Callable[[Path, np.ndarray, int, int], dict[str, Any]]] = {
    "matterport_eager": run_eager,
    "edgeseg_fp32": lambda w, f, t, r: run_edgeseg(w, f, t, r, "fp32"),
    "edgeseg_int8": lambda w, f, t, r: run_edgeseg(w, f, t, r, "int8"),
}


def prepare(work: Path, frame_hw: tuple[int, int] | None, calib_count: int) -> str:
    """The Config, weights (case A's or none), the frame, calibration frames and both ONNX files,
    made once in the parent; returns what the model is."""
    import cv2

    from edgeseg.converters.api import export
    from edgeseg.democlip import demo_photos, pan_zoom
    from edgeseg.frames import fit_frame
    from edgeseg.precision.convert import Calibration

    if (SHARED / "weights_caseA.h5.xz").is_file():
        with lzma.open(SHARED / "weights_caseA.h5.xz") as src, (work / "weights.h5").open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        shutil.copy(SHARED / "config_caseA.json", work / "config.json")
        photo = np.asarray(cv2.imread(str(SHARED / "input_caseA.png"), cv2.IMREAD_COLOR))
        what = "case A (../shared/matterport: its .h5 and Config)"
    else:
        overrides = {"NAME": "caseA", "IMAGES_PER_GPU": 1, "BACKBONE": "resnet50", "NUM_CLASSES": 6,
                     "IMAGE_MIN_DIM": 256, "IMAGE_MAX_DIM": 512, "TOP_DOWN_PYRAMID_SIZE": 64,
                     "FPN_CLASSIF_FC_LAYERS_SIZE": 256, "DETECTION_MIN_CONFIDENCE": 0.2}
        (work / "config.json").write_text(json.dumps(overrides))
        photo = demo_photos()[1]
        what = "case A's Config with random weights (no ../shared/matterport)"
    hw = frame_hw or (int(photo.shape[0]), int(photo.shape[1]))
    np.save(work / "frame.npy", fit_frame(photo, hw))
    calib = work / "calib"
    calib.mkdir()
    photos = demo_photos()
    for i in range(calib_count):
        cv2.imwrite(str(calib / f"{i:04d}.png"), next(iter(pan_zoom(photos[i % len(photos)], hw, 1))))
    weights = work / "weights.h5"
    for precision in ("fp32", "int8"):
        export("matterport", work / f"edgeseg_{precision}.onnx", frame_hw=hw, config=str(work / "config.json"),
               weights=weights if weights.is_file() else None, random_weights=not weights.is_file(),
               precision=precision,
               calibration=Calibration(images=calib, count=calib_count) if precision == "int8" else None)
    return f"{what}, frame {hw[0]}x{hw[1]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frame", help="HEIGHTxWIDTH (default: the photo's own size)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3, help="timed runs per round, after one warm-up")
    p.add_argument("--rounds", type=int, default=2, help="turns each contender takes")
    p.add_argument("--calib-count", type=int, default=4, help="INT8 calibration frames (speed does not depend on it)")
    p.add_argument("--child", nargs=2, metavar=("CONTENDER", "WORK"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:  # one contender in its own process: print JSON
        name, work = args.child
        frame = np.load(Path(work) / "frame.npy")
        out = RUNNERS[name](Path(work), frame, args.threads, args.runs)
        out["peak_mb"] = peak_rss_mb()
        print(json.dumps(out))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "EDGESEG_CACHE_DIR": str(work / "cache")}
        os.environ["EDGESEG_CACHE_DIR"] = env["EDGESEG_CACHE_DIR"]
        print(f"preparing the model, {args.calib_count} calibration frames, the FP32 and INT8 files ...",
              file=sys.stderr)
        what = prepare(work, parse_hw(args.frame) if args.frame else None, args.calib_count)
        results = alternate_in_processes(
            list(CONTENDERS), lambda name: [sys.executable, __file__, "--child", name, str(work), "--threads",
                                            str(args.threads), "--runs", str(args.runs)], args.rounds, env)
    print(f"matterport Mask R-CNN R50-FPN, {what}, {args.threads} threads, median of {args.rounds}x{args.runs} "
          f"runs, alternating; one frame in -> frame-size binary masks out")
    print_against_eager(results, "matterport_eager")
    return 0


if __name__ == "__main__":
    sys.exit(main())
