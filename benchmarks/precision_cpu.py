"""INT8 vs FP32 vs PyTorch eager on the CPU, side by side in one run, with peak memory.

For each model: PyTorch eager (the very module that is exported, or torchvision's Mask R-CNN),
edgeseg's FP32 file and its INT8 file (``edgeseg convert --precision int8``, calibrated on
frames of scikit-image's photos; speed does not depend on the weights, which are random and
seeded), all on ONNX Runtime / PyTorch with the same threads, one uint8 BGR frame in, the
frame-size result out. Each contender runs in its own process (its peak memory is its own),
the contenders take turns for --rounds rounds (this VM drifts by tens of percent), and each
figure is the median over all its rounds.

    python benchmarks/precision_cpu.py                         # HRNet W18-Small-v2 512x1024 and R50-FPN 400x600
    python benchmarks/precision_cpu.py --model hrnet --rounds 5 --fp16
    python benchmarks/precision_cpu.py --model hrnet_ocr --calib-count 4   # HRNet-OCR W18-Small-v2 512x1024

HRNet-OCR's eager contender is edgeseg's own faithful build of the official ``seg_hrnet_ocr.py``
(the same module that is exported; ``tests/test_hrnet_ocr.py`` holds it to the official outputs),
built from an official-style experiment file with the official OCR sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.maskrcnn_cpu import peak_rss_mb, run_torchvision_eager
from benchmarks.timing import alternate_in_processes, print_against_eager, timed
from edgeseg.cli import parse_hw


@dataclass(frozen=True)
class Setup:
    family: str
    title: str
    arch: str
    frame: str
    num_classes: int
    eager: str  # the PyTorch contender's name
    ocr: bool = False  # HRNet: converted from an experiment file with the OCR head


SETUPS = {
    "hrnet": Setup("hrnet", "HRNetV2-W18-Small-v2", "w18_small_v2", "512x1024", 19, "pytorch_eager"),
    "hrnet_ocr": Setup("hrnet", "HRNet-OCR W18-Small-v2", "w18_small_v2", "512x1024", 19, "pytorch_eager", ocr=True),
    "maskrcnn": Setup("maskrcnn", "Mask R-CNN R50-FPN", "resnet50_fpn", "400x600", 91, "torchvision_eager"),
}


def build_options(setup: Setup, work: Path) -> tuple[str, dict[str, Any]]:
    """(arch, the family's options) of *setup*; an HRNet-OCR setup writes its experiment file first."""
    if not setup.ocr:
        return setup.arch, {"align_corners": False} if setup.family == "hrnet" else {}
    import yaml

    from edgeseg.converters.hrnet.archs import ARCHS
    from edgeseg.converters.hrnet.config import experiment
    from edgeseg.converters.hrnet.ocr import OCRSpec

    config = work / "experiment.yaml"
    if not config.is_file():
        config.write_text(yaml.safe_dump(experiment(ARCHS[setup.arch], setup.num_classes, OCRSpec())))
    return "", {"config": str(config)}


def run_edgeseg(work: Path, frame: np.ndarray, threads: int, runs: int, precision: str) -> dict[str, Any]:
    import edgeseg

    model = edgeseg.load(work / f"edgeseg_{precision}.onnx", threads=threads)
    from edgeseg.result import InstanceResult

    seconds, result = timed(lambda: model(frame), runs)
    return {"seconds": seconds, "detections": len(result) if isinstance(result, InstanceResult) else None}


def run_hrnet_eager(setup: Setup, work: Path, frame: np.ndarray, threads: int, runs: int) -> dict[str, Any]:
    import torch

    from edgeseg.converters.api import FAMILIES
    from edgeseg.converters.hrnet.export import FrameToLabels
    from edgeseg.metadata import Preprocessing

    torch.set_num_threads(threads)
    arch, options = build_options(setup, work)
    net = FAMILIES["hrnet"].build(arch, setup.num_classes, work / "weights.pth", False, options)
    eager = FrameToLabels(net, frame.shape[:2], frame.shape[:2], Preprocessing()).eval()

    def infer() -> np.ndarray:
        with torch.inference_mode():
            return eager(torch.from_numpy(frame))[0].numpy()

    seconds, _ = timed(infer, runs)
    return {"seconds": seconds, "detections": None}


def runners(setup: Setup) -> dict[str, Callable[[Path, np.ndarray, int, int], dict[str, Any]]]:
    eager = ((lambda w, f, t, r: run_hrnet_eager(setup, w, f, t, r)) if setup.family == "hrnet"
             else run_torchvision_eager)
    found: dict[str, Callable[[Path, np.ndarray, int, int], dict[str, Any]]] = {setup.eager: eager}
    for precision in ("fp32", "fp16", "int8"):
        found[f"edgeseg_{precision}"] = (lambda p: lambda w, f, t, r: run_edgeseg(w, f, t, r, p))(precision)
    return found


def prepare(work: Path, setup: Setup, calib_count: int, precisions: list[str]) -> None:
    """Weights, the frame, calibration frames and the ONNX files, made once in the parent."""
    import cv2
    import torch

    from edgeseg.converters.api import FAMILIES, export
    from edgeseg.democlip import demo_photos, pan_zoom
    from edgeseg.frames import fit_frame
    from edgeseg.precision.convert import Calibration

    frame_hw = parse_hw(setup.frame)
    torch.manual_seed(0)
    arch, options = build_options(setup, work)
    model = FAMILIES[setup.family].build(arch, setup.num_classes, None, False, options)
    torch.save(model.state_dict(), work / "weights.pth")
    np.save(work / "frame.npy", fit_frame(demo_photos()[1], frame_hw))
    calib = work / "calib"
    calib.mkdir()
    photos = demo_photos()
    for i in range(calib_count):
        frame = next(iter(pan_zoom(photos[i % len(photos)], frame_hw, 1)))
        cv2.imwrite(str(calib / f"{i:04d}.png"), frame)
    for precision in precisions:
        export(setup.family, work / f"edgeseg_{precision}.onnx", arch=arch, frame_hw=frame_hw,
               weights=work / "weights.pth", num_classes=setup.num_classes, precision=precision,
               calibration=Calibration(images=calib, count=calib_count) if precision == "int8" else None,
               **{k: v for k, v in options.items() if k == "config"})


def bench(key: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    setup = SETUPS[key]
    precisions = ["fp32", "int8"] + (["fp16"] if args.fp16 else [])
    names = [setup.eager] + [f"edgeseg_{p}" for p in precisions]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"preparing {setup.title} at {setup.frame}: weights, {args.calib_count} calibration frames, "
              f"{', '.join(precisions)} files ...", file=sys.stderr)
        env = {**os.environ, "EDGESEG_CACHE_DIR": str(work / "cache")}
        os.environ["EDGESEG_CACHE_DIR"] = env["EDGESEG_CACHE_DIR"]
        prepare(work, setup, args.calib_count, precisions)
        return alternate_in_processes(
            names, lambda name: [sys.executable, __file__, "--child", key, name, str(work), "--threads",
                                 str(args.threads), "--runs", str(args.runs)], args.rounds, env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=(*SETUPS, "both"), default="both", help="both: hrnet and maskrcnn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3, help="timed runs per round, after one warm-up")
    p.add_argument("--rounds", type=int, default=3, help="turns each contender takes")
    p.add_argument("--calib-count", type=int, default=16, help="INT8 calibration frames (speed does not depend on it)")
    p.add_argument("--fp16", action="store_true", help="also the FP16 file (ONNX Runtime's CPU kernels: slow; a GPU "
                                                       "format)")
    p.add_argument("--child", nargs=3, metavar=("SETUP", "CONTENDER", "WORK"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:  # one contender in its own process: print JSON
        key, name, work = args.child
        frame = np.load(Path(work) / "frame.npy")
        out = runners(SETUPS[key])[name](Path(work), frame, args.threads, args.runs)
        out["peak_mb"] = peak_rss_mb()
        print(json.dumps(out))
        return 0

    for key in (["hrnet", "maskrcnn"] if args.model == "both" else [args.model]):
        setup = SETUPS[key]
        results = bench(key, args)
        print(f"{setup.title} (random weights), frame {setup.frame}, {args.threads} threads, median of "
              f"{args.rounds}x{args.runs} runs, alternating (cpu count {os.cpu_count()})")
        print_against_eager(results, setup.eager)
    return 0


if __name__ == "__main__":
    sys.exit(main())
