"""Embed edgeseg in your own loop: read a video, segment each frame, use the label map.

    python samples/segment_video.py hrnet.onnx clip.mp4

Prints the largest class of every 10th frame and writes nothing; see `edgeseg run` for overlays.
"""

from __future__ import annotations

import sys

import cv2

import edgeseg


def main(model_path: str, video_path: str) -> int:
    model = edgeseg.load(model_path)
    cap = cv2.VideoCapture(video_path)
    if not cap.isOpened():
        print(f"cannot open {video_path}", file=sys.stderr)
        return 1
    index = 0
    try:
        while True:
            ok, frame = cap.read()  # HxWx3 uint8 BGR, any size
            if not ok:
                break
            result = model.semantic(frame)  # result.label_map: HxW uint8 class ids, frame coordinates
            if index % 10 == 0:
                areas = result.class_areas()
                top = max(areas, key=lambda name: areas[name])
                print(f"frame {index}: {top} covers {areas[top] / result.label_map.size:.0%}")
            index += 1
    finally:
        cap.release()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
