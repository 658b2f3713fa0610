"""Live segmentation of a camera on screen, with a HUD (FPS, latency, dropped frames).

    python samples/camera_demo.py MODEL.onnx|MODEL.engine [--source 0|/dev/video1|csi://0|rtsp://...]
                                  [--width 1280 --height 720 --fps 30] [--threads N]

``--source 0`` is the first USB camera (the default), ``csi://0`` a Jetson CSI camera (needs
JetPack's OpenCV, built with GStreamer). Esc or q in the window, closing it, or Ctrl-C quits.

It needs a display and an OpenCV with GUI support (opencv-python, not -headless). On a headless
machine it stops before loading anything, with edgeseg's OutputError saying why (exit code 1).
"""

from __future__ import annotations

import argparse
import sys

import edgeseg
from edgeseg.pipeline import Pipeline
from edgeseg.sinks import WindowSink
from edgeseg.sources import open_source

PROG = "camera_demo"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Live segmentation of a camera, on screen with a HUD.")
    p.add_argument("model", help=".onnx from `edgeseg convert` or .engine from `edgeseg build`")
    p.add_argument("--source", default="0", help="camera index, /dev/videoN, csi://N or a stream URL (default 0)")
    p.add_argument("--width", type=int, help="capture width asked of the camera")
    p.add_argument("--height", type=int, help="capture height asked of the camera")
    p.add_argument("--fps", type=float, help="capture frame rate asked of the camera")
    p.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime (default: all cores)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # The window first: it is the cheapest check, so a headless machine says so at once
        # instead of after loading a model and opening the camera.
        window = WindowSink(title=f"edgeseg: {args.source}")
        model = edgeseg.load(args.model, threads=args.threads)
        # A camera is a *live* source: the pipeline keeps only its newest frame and counts the
        # ones it had to skip (the HUD's "dropped"), so the picture never lags behind.
        source = open_source(args.source, width=args.width, height=args.height, fps=args.fps)
    except edgeseg.EdgesegError as exc:
        # Every edgeseg error names the problem and the fix: one line is enough.
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1

    # Capture, inference, drawing and display run in overlapping threads; hud=True writes
    # FPS, capture-to-screen latency and dropped frames in the top-right corner.
    pipeline = Pipeline(source, model, window, hud=True)
    try:
        summary = pipeline.run()  # returns when q/Esc is pressed, the window closes or the camera ends
    except KeyboardInterrupt:
        print(pipeline.summary.describe())
        return 130
    except edgeseg.EdgesegError as exc:  # e.g. the camera was unplugged and did not come back
        print(pipeline.summary.describe())
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
