"""Where the time goes in an edgeseg ONNX file on the CPU: ONNX Runtime's own profile of the graph,
kernel time summed by module (the node names' path, e.g. ``/net/conv3x3_ocr``), largest first.

    python benchmarks/ort_profile.py hrnet_ocr.onnx                      # a demo photo fitted to the frame
    python benchmarks/ort_profile.py hrnet_ocr.onnx --depth 3 --threads 1 --runs 3

Files with edgeseg's custom nodes need their segments (``edgeseg.load``); this profiles plain
ONNX Runtime graphs (HRNet, HRNet-OCR).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def profile(path: Path, frame: object, threads: int, runs: int) -> list[dict[str, object]]:
    """ONNX Runtime's node events (kernel time) over *runs* runs after one warm-up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: frame})
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, {name: frame})
        events: list[dict[str, object]] = json.loads(Path(session.end_profiling()).read_text())
    return [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]


def by_module(events: list[dict[str, object]], depth: int, runs: int) -> list[tuple[str, float]]:
    """(module path, milliseconds per run), largest first; nodes outside modules under "(graph)"."""
    total: dict[str, float] = collections.defaultdict(float)
    for e in events:
        parts = str(e["name"]).removesuffix("_kernel_time").split("/")[1:-1]
        total["/" + "/".join(parts[:depth]) if parts else "(graph)"] += float(str(e["dur"])) / 1000 / runs
    return sorted(total.items(), key=lambda kv: -kv[1])


def main(argv: list[str] | None = None) -> int:
    from edgeseg.democlip import demo_photos
    from edgeseg.frames import fit_frame
    from edgeseg.model import load

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--depth", type=int, default=2, help="module path components to group by (default 2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args(argv)
    meta = load(args.model).metadata
    frame = fit_frame(demo_photos()[1], meta.frame_hw)
    rows = by_module(profile(args.model, frame, args.threads, args.runs), args.depth, args.runs)
    whole = sum(ms for _, ms in rows)
    print(f"{args.model.name}: {whole:.0f} ms kernel time per run, {args.threads} thread(s), {args.runs} runs "
          f"(cpu count {os.cpu_count()})")
    for module, ms in rows:
        print(f"  {module:48} {ms:8.1f} ms  {100 * ms / whole:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
