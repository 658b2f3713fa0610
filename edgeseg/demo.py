"""The end-to-end demo: a generated scene clip, both shipped reference models converted to ONNX,
run on the clip on the CPU, and an annotated video written.

The reference models (a light Mask R-CNN and an HRNetV2-W18-Small-v1) were trained on
``edgeseg.scenes``; their weights ship in ``edgeseg/data/weights/``. Converting them needs
PyTorch (the ``convert`` extra) and the clip needs scikit-image (the ``demo`` extra); running
the converted models needs neither.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeseg import ranges
from edgeseg.draw import draw_result
from edgeseg.errors import OutputError, SourceError
from edgeseg.model import load
from edgeseg.progress import FrameProgress, Steps
from edgeseg.scenes import make_scene_clip
from edgeseg.sinks import open_sink
from edgeseg.torch_side import converters

CLIP_NAME = "scenes.mp4"
MASKRCNN_NAME = "scenes_maskrcnn_lite.onnx"
HRNET_NAME = "scenes_hrnet_w18s1.onnx"
OUTPUT_NAME = "demo.mp4"
FPS = 15.0
SCORE_THRESH = 0.5  # detections drawn in the demo (evaluation exports keep torchvision's 0.05)
SEMANTIC_ALPHA = 0.7


def _title(image: np.ndarray, text: str) -> None:
    """A caption in the bottom-left corner, on a dark band (in place)."""
    h = image.shape[0]
    scale = max(0.4, h / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = image[h - th - base - 8 :, : tw + 12]
    band[:] = band // 3
    cv2.putText(image, text, (6, h - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def run_demo(out_dir: str | os.PathLike[str], *, frames: int = 90, size: tuple[int, int] = (360, 640),
             seed: int = 0, stills: int = 0, threads: int | None = None, quiet: bool = False) -> Path:
    """Make the scene clip, convert both shipped models, run them on it and write the result.

    Writes into *out_dir* (created if needed): ``scenes.mp4`` (the clip: *frames* frames of
    *size* = (height, width), scene *seed*), the two ONNX files, and ``demo.mp4``: each frame
    with the Mask R-CNN's instances (masks, boxes, class and score) on the left and the HRNet's
    label map on the right. *stills* > 0 also saves that many evenly spaced output frames as
    ``demo_<frame>.png``. *threads*: ONNX Runtime CPU threads (default: one per core).
    Progress goes to stderr unless *quiet*. Returns the path of ``demo.mp4``.
    """
    ranges.check("frames", frames, 1, integer=True)
    ranges.check("stills", stills, 0, integer=True)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"cannot write the demo to {out}: it is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(4, quiet=quiet)
    clip = out / CLIP_NAME
    with steps.step(f"generating a {frames}-frame scene clip {size[0]}x{size[1]} at {clip}"):
        make_scene_clip(clip, frames=frames, size=size, fps=FPS, seed=seed)
    maskrcnn_path, hrnet_path = out / MASKRCNN_NAME, out / HRNET_NAME
    converters("reference").export_reference_models(maskrcnn_path, hrnet_path, size, steps, SCORE_THRESH)
    instance_model = load(maskrcnn_path, threads=threads)
    semantic_model = load(hrnet_path, threads=threads)

    result_path = out / OUTPUT_NAME
    keep = {round(i * (frames - 1) / max(stills - 1, 1)) for i in range(stills)} if stills > 0 else set()
    with steps.step(f"running both models on the clip (ONNX Runtime, CPU) -> {result_path}"):
        if not quiet:
            print(file=sys.stderr)
        cap = cv2.VideoCapture(str(clip))
        if not cap.isOpened():
            raise SourceError(f"cannot open {clip}: OpenCV cannot read it back; check the OpenCV build (FFmpeg)")
        sink = open_sink(result_path, fps=FPS)
        progress = FrameProgress(frames, quiet=quiet)
        try:
            index = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                left = draw_result(frame, instance_model.instances(frame))
                # Strong blend: the label map itself, with the frame faintly behind it.
                right = draw_result(frame, semantic_model.semantic(frame), alpha=SEMANTIC_ALPHA)
                _title(left, "Mask R-CNN (ResNet-18 FPN lite)")
                _title(right, "HRNetV2-W18-Small-v1")
                panel = np.concatenate([left, right], axis=1)
                sink.write(panel)
                if index in keep:
                    still = open_sink(out / f"demo_{index:03d}.png")
                    still.write(panel)
                    still.close()
                index += 1
                progress.update()
        finally:
            cap.release()
            sink.close()
            progress.finish()
    if not quiet:
        print(f"demo written to {result_path} (clip: {clip}; models: {maskrcnn_path.name}, {hrnet_path.name})",
              file=sys.stderr)
    return result_path
