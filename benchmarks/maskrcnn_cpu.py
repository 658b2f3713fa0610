"""Mask R-CNN on the CPU: edgeseg (ONNX Runtime + the CPU build of our ops) vs torchvision eager
vs torchvision's own ONNX export on ONNX Runtime.

Same weights (random, seeded; torchvision's default score threshold 0.05, which random weights
pass with 100 detections), same frame (a scikit-image photo resized to --frame), same threads.
Each contender runs in its own process so its peak memory is its own. Timed: one frame in,
frame-resolution binary masks out (torchvision's masks thresholded at 0.5).

    python benchmarks/maskrcnn_cpu.py                     # 400x600 (torchvision upsizes it to 800x1200)
    python benchmarks/maskrcnn_cpu.py --frame 720x1280 --runs 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import timed
from edgeseg.cli import parse_hw

# Only the torchvision contenders import torch: the edgeseg process must look like a deployment
# (torch loaded next to our kernels would also bring its own busy-waiting OpenMP threads).

CONTENDERS = ("edgeseg", "torchvision_eager", "torchvision_onnx")


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage: Linux carries ru_maxrss over
    from the parent across exec, so a child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_edgeseg(work: Path, frame: np.ndarray, threads: int, runs: int) -> dict[str, Any]:
    import edgeseg
    from edgeseg.backends.ort import OnnxRuntimeBackend

    model = edgeseg.load(work / "edgeseg.onnx", threads=threads)
    seconds, result = timed(lambda: model.instances(frame), runs)
    stages: list[tuple[str, float]] = []
    backend = model.backend
    if isinstance(backend, OnnxRuntimeBackend) and backend._split is not None:
        stages = backend._split.last_timings
    return {"seconds": seconds, "detections": len(result), "stages": stages}


def run_torchvision_eager(work: Path, frame: np.ndarray, threads: int, runs: int) -> dict[str, Any]:
    import torch

    from edgeseg.converters.maskrcnn.archs import build_arch

    torch.set_num_threads(threads)
    model = build_arch("resnet50_fpn", 91)
    model.load_state_dict(torch.load(work / "weights.pth", weights_only=True))
    image = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1])).permute(2, 0, 1).float() / 255
    stages: dict[str, float] = {}

    def clock(name: str, start: float) -> float:
        now = time.perf_counter()
        stages[name] = now - start
        return now

    def infer() -> Any:
        with torch.inference_mode():
            t = time.perf_counter()
            images, _ = model.transform([image])
            t = clock("transform (resize, normalise, pad)", t)
            feats = model.backbone(images.tensors)
            t = clock("backbone + FPN", t)
            proposals, _ = model.rpn(images, feats)
            t = clock("RPN", t)
            dets, _ = model.roi_heads(feats, proposals, images.image_sizes)
            t = clock("RoI heads (box + mask)", t)
            dets = model.transform.postprocess(dets, images.image_sizes, [tuple(frame.shape[:2])])
            masks = dets[0]["masks"][:, 0] > 0.5
            clock("paste masks + threshold", t)
            return masks

    seconds, masks = timed(infer, runs)
    return {"seconds": seconds, "detections": int(masks.shape[0]), "stages": list(stages.items())}


def run_torchvision_onnx(work: Path, frame: np.ndarray, threads: int, runs: int) -> dict[str, Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(work / "torchvision.onnx"), opts, providers=["CPUExecutionProvider"])
    image = (np.ascontiguousarray(frame[:, :, ::-1]).transpose(2, 0, 1).astype(np.float32) / 255)
    name = session.get_inputs()[0].name

    def infer() -> np.ndarray:
        masks = session.run(None, {name: image})[3]  # boxes, labels, scores, masks
        return np.asarray(masks[:, 0] > 0.5)

    seconds, masks = timed(infer, runs)
    return {"seconds": seconds, "detections": int(masks.shape[0]), "stages": []}


RUNNERS: dict[str, Callable[[Path, np.ndarray, int, int], dict[str, Any]]] = {
    "edgeseg": run_edgeseg,
    "torchvision_eager": run_torchvision_eager,
    "torchvision_onnx": run_torchvision_onnx,
}


def prepare(work: Path, frame_hw: tuple[int, int]) -> None:
    """Weights, frame, and both ONNX files, made once in the parent process."""
    import torch

    from edgeseg.converters.maskrcnn.archs import build_arch
    from edgeseg.converters.maskrcnn.export import export_maskrcnn
    from edgeseg.democlip import demo_photos
    from edgeseg.frames import fit_frame

    model = build_arch("resnet50_fpn", 91)
    torch.save(model.state_dict(), work / "weights.pth")
    np.save(work / "frame.npy", fit_frame(demo_photos()[1], frame_hw))
    export_maskrcnn(model, work / "edgeseg.onnx", frame_hw, arch="maskrcnn_resnet50_fpn")
    example = [torch.zeros((3, *frame_hw))]
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(work / "torchvision.onnx"), opset_version=17, dynamo=False,
                          input_names=["image"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frame", default="400x600", help="HEIGHTxWIDTH")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3, help="timed runs per round, after one warm-up")
    p.add_argument("--rounds", type=int, default=2, help="turns each contender takes")
    p.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.contender:  # child process: run one contender, print JSON
        frame = np.load(args.work / "frame.npy")
        out = RUNNERS[args.contender](args.work, frame, args.threads, args.runs)
        out["peak_mb"] = peak_rss_mb()
        print(json.dumps(out))
        return 0

    frame_hw = parse_hw(args.frame)
    # This VM's speed drifts by tens of percent over minutes: the contenders take turns, in
    # --rounds rounds, and each one's figure is the median over all its rounds.
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"preparing weights and ONNX files for a {frame_hw[0]}x{frame_hw[1]} frame ...", file=sys.stderr)
        prepare(work, frame_hw)
        for turn in range(args.rounds):
            for name in CONTENDERS:
                print(f"round {turn + 1}/{args.rounds}: running {name} ...", file=sys.stderr)
                proc = subprocess.run(
                    [sys.executable, __file__, "--contender", name, "--work", str(work),
                     "--threads", str(args.threads), "--runs", str(args.runs)],
                    capture_output=True, text=True, check=True,
                )
                rounds[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = {}
    for name, runs in rounds.items():
        best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        results[name] = {**best, "seconds": statistics.median(r["seconds"] for r in runs),
                         "peak_mb": max(r["peak_mb"] for r in runs)}

    print(f"Mask R-CNN R50-FPN (random weights), frame {frame_hw[0]}x{frame_hw[1]}, {args.threads} threads, "
          f"median of {args.rounds}x{args.runs} runs, one frame in -> frame-size binary masks out")
    for name in CONTENDERS:
        r = results[name]
        print(f"  {name:18} {r['seconds'] * 1000:8.0f} ms  {r['detections']:3d} detections  "
              f"peak memory {r['peak_mb']:6.0f} MB")
        for stage, seconds in r["stages"]:
            print(f"      {stage:40} {seconds * 1000:8.0f} ms")
    base = results["edgeseg"]["seconds"]
    print(f"  edgeseg speed-up vs torchvision eager:        {results['torchvision_eager']['seconds'] / base:5.2f}x")
    print(f"  edgeseg speed-up vs torchvision's ONNX export: {results['torchvision_onnx']['seconds'] / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
