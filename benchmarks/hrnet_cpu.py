"""HRNet on the CPU: edgeseg (ONNX Runtime, the exported graph) vs PyTorch eager.

Both take the same uint8 BGR frame and return the uint8 label map at frame resolution, with the
same weights and the same number of threads. PyTorch runs the very module that is exported
(pre-processing, network, upsampling and ArgMax) in inference mode.

    python benchmarks/hrnet_cpu.py                      # W18-Small-v2 at 512x1024, 2 threads
    python benchmarks/hrnet_cpu.py --arch w48 --frame 1024x2048 --runs 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeseg
from benchmarks.timing import median_seconds
from edgeseg.cli import parse_hw
from edgeseg.converters.hrnet.export import FrameToLabels, build_hrnet, export_hrnet
from edgeseg.democlip import demo_photos, pan_zoom
from edgeseg.metadata import Preprocessing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="w18_small_v2")
    p.add_argument("--frame", default="512x1024", help="HEIGHTxWIDTH")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--weights", help="checkpoint; random weights when omitted (speed does not depend on them)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args(argv)
    frame_hw = parse_hw(args.frame)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    net = build_hrnet(args.arch, args.num_classes, args.weights)
    frame = next(iter(pan_zoom(demo_photos()[0], frame_hw, 1)))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hrnet.onnx"
        export_hrnet(net, path, frame_hw)
        model = edgeseg.load(path, threads=args.threads)
        eager = FrameToLabels(net, frame_hw, frame_hw, Preprocessing()).eval()

        def run_torch() -> np.ndarray:
            with torch.inference_mode():
                return eager(torch.from_numpy(frame))[0].numpy()

        def run_edgeseg() -> np.ndarray:
            return model.semantic(frame).label_map

        agree = float((run_torch() == run_edgeseg()).mean())
        t_torch = median_seconds(run_torch, args.runs)
        t_edge = median_seconds(run_edgeseg, args.runs)

    print(f"HRNetV2-{args.arch}, {args.num_classes} classes, frame {frame_hw[0]}x{frame_hw[1]}, "
          f"{args.threads} threads, median of {args.runs} runs (cpu count {os.cpu_count()})")
    print(f"  pytorch eager          {t_torch * 1000:8.1f} ms/frame")
    print(f"  edgeseg onnxruntime    {t_edge * 1000:8.1f} ms/frame")
    print(f"  speed-up               {t_torch / t_edge:8.2f}x   (label maps agree on {agree:.6f} of pixels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
