"""Embed edgeseg in your own loop: read a video, segment each frame, use the label map.

    python samples/segment_video.py hrnet.onnx clip.mp4

Prints the largest class of every 10th frame and writes nothing; see `edgeseg run` or
samples/video_file.py for overlays. Needs a semantic (HRNet) model. The source can also be a
camera (0, csi://0) or a stream: anything `edgeseg run --source` takes.
"""

from __future__ import annotations

import sys

import edgeseg
from edgeseg.sources import open_source


def main(model_path: str, source_uri: str) -> int:
    try:
        model = edgeseg.load(model_path)
        source = open_source(source_uri)
    except edgeseg.EdgesegError as exc:  # the message says what is wrong and how to fix it
        print(f"segment_video: error: {exc}", file=sys.stderr)
        return 1
    with source:  # closes the video (or camera) however the loop ends
        for index, frame in enumerate(source):  # HxWx3 uint8 BGR, any size
            try:
                result = model.semantic(frame)  # label_map: HxW uint8 class ids, frame coordinates
            except edgeseg.EdgesegError as exc:  # e.g. an instance model: use model.instances(frame)
                print(f"segment_video: error: {exc}", file=sys.stderr)
                return 1
            if index % 10 == 0:
                areas = result.class_areas()
                top = max(areas, key=lambda name: areas[name])
                print(f"frame {index}: {top} covers {areas[top] / result.label_map.size:.0%}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
