"""Segment every frame of a video file: an annotated video and one JSON line of results per frame.

    python samples/video_file.py MODEL.onnx|MODEL.engine clip.mp4 -o out.mp4 [--json out.jsonl] [--threads N]

The JSON Lines file (default: the video's name with .jsonl) holds per frame its index and time;
instance models add boxes, scores, classes and masks (COCO RLE), semantic models the pixels per
class. Progress goes to stderr, the summary line to stdout. Ctrl-C or SIGTERM stops early and keeps
both files, holding every frame processed so far (exit code 130).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import edgeseg
from edgeseg.pipeline import Pipeline
from edgeseg.sinks import FrameRecord, open_sinks
from edgeseg.sources import open_source

PROG = "video_file"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Segment every frame of a video file.")
    p.add_argument("model", help=".onnx from `edgeseg convert` or .engine from `edgeseg build`")
    p.add_argument("video", help="video file to read (.mp4, .avi, .mkv, ...)")
    p.add_argument("-o", "--output", type=Path, required=True, help="annotated video to write (.mp4, .avi, .mkv)")
    p.add_argument("--json", type=Path, help="JSON Lines results (default: OUTPUT with .jsonl)")
    p.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime (default: all cores)")
    return p.parse_args(argv)


class Progress:
    """Prints ``frame 12/30 (40%), 9.8 FPS`` about every tenth of the video (a callback sink)."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.count = 0
        self.start = time.perf_counter()
        self._decile = 0

    def __call__(self, record: FrameRecord) -> None:
        self.count += 1
        fps = self.count / max(time.perf_counter() - self.start, 1e-9)
        if self.total:
            decile = self.count * 10 // self.total  # whole numbers: 0.1 + 0.1 + 0.1 is not 0.3
            if decile > self._decile:
                self._decile = decile
                print(f"frame {self.count}/{self.total} ({self.count / self.total:.0%}), {fps:.1f} FPS",
                      file=sys.stderr, flush=True)
        elif self.count % 100 == 0:  # a file that does not say how long it is
            print(f"frame {self.count}, {fps:.1f} FPS", file=sys.stderr, flush=True)


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: stop like Ctrl-C, so a killed batch job still finalises its files."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    json_path = args.json or args.output.with_suffix(".jsonl")
    try:
        model = edgeseg.load(args.model, threads=args.threads)
        # A file is not a live source: the pipeline reads it only as fast as the model takes
        # frames, so no frame is ever dropped and the order is kept.
        source = open_source(args.video)
    except edgeseg.EdgesegError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    try:
        # All outputs are checked (writable folder, known suffix) before the first frame, and
        # written under temporary names that are renamed when complete: no half-written files.
        sinks = open_sinks([args.output], jsonl=json_path, fps=source.fps, callbacks=[Progress(source.frame_count)])
    except edgeseg.EdgesegError as exc:
        source.close()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1

    pipeline = Pipeline(source, model, sinks)  # the default drawing: class colours, boxes, legend
    signal.signal(signal.SIGTERM, interrupt)
    try:
        summary = pipeline.run()
    except KeyboardInterrupt:
        # The pipeline has already closed the sinks: both files hold the frames done so far.
        print(pipeline.summary.describe())
        return 130
    except edgeseg.EdgesegError as exc:
        print(pipeline.summary.describe())
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    if source.frame_count and summary.frames_out != source.frame_count:
        # Containers only estimate their frame count; say so rather than let a gap pass unnoticed.
        print(f"{PROG}: note: the file announced {source.frame_count} frames, {summary.frames_out} were decoded",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
