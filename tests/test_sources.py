"""Sources chosen by URI: files, images, folders, globs, cameras, streams, CSI/GStreamer, and their
typed errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import edgeseg.sources as sources
from edgeseg.errors import SourceError
from edgeseg.sources import (
    CaptureSource,
    ImageFolderSource,
    ImageSource,
    IterableSource,
    VideoFileSource,
    csi_pipeline,
    open_source,
)


def write_video(path: Path, n: int, hw: tuple[int, int] = (48, 64), fps: float = 20.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (hw[1], hw[0]))
    for i in range(n):
        writer.write(np.full((*hw, 3), i * 10, np.uint8))
    writer.release()
    return path


def test_video_file(tmp_path: Path) -> None:
    src = open_source(write_video(tmp_path / "a.mp4", 12))
    assert isinstance(src, VideoFileSource)
    assert (src.live, src.fps, src.fps_known, src.frame_count) == (False, 20.0, True, 12)
    frames = list(src)
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert src.read() == (False, None)
    src.close()
    src.close()  # idempotent
    assert src.read() == (False, None)


def test_video_file_resized_and_rate_overridden(tmp_path: Path) -> None:
    with open_source(write_video(tmp_path / "a.mp4", 3), width=32, fps=5) as src:
        assert src.fps == 5.0
        assert [f.shape for f in src] == [(24, 32, 3)] * 3  # height follows the aspect ratio


def test_image_file(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), image)
    src = open_source(tmp_path / "x.png")
    assert isinstance(src, ImageSource) and not src.live and src.frame_count == 1
    frames = list(src)
    assert len(frames) == 1 and np.array_equal(frames[0], image)


def test_folder_of_images_in_natural_order_with_an_undecodable_one(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "frame5.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(tmp_path)
    assert isinstance(src, ImageFolderSource)
    assert [p.name for p in src.paths] == ["frame1.png", "frame2.png", "frame5.jpg", "frame10.png"]
    assert (src.live, src.frame_count, src.fps_known) == (False, 4, False)
    reads = [src.read() for _ in range(5)]
    assert [int(f[0, 0, 0]) if f is not None else None for ok, f in reads[:4]] == [1, 2, None, 10]
    assert [ok for ok, _ in reads] == [True, True, True, True, False]  # the bad one: (True, None)


def test_glob_of_images(tmp_path: Path) -> None:
    for name in ("b.png", "a.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    src = open_source(str(tmp_path / "*.png"))
    assert isinstance(src, ImageFolderSource) and [p.name for p in src.paths] == ["a.png", "b.png"]


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        open_source(tmp_path)
    assert str(info.value) == (f"{tmp_path}: no images found (.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp); "
                               "check the folder or pattern")


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "nope.mp4")
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(SourceError, match=r"unknown source type '.bin'; give an image"):
        open_source(tmp_path / "data.bin")


def test_csi_without_gstreamer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "gstreamer_available", lambda: False)
    with pytest.raises(SourceError) as info:
        open_source("csi://0")
    message = str(info.value)
    assert message.startswith(f"csi://0 needs OpenCV built with GStreamer, and the OpenCV here ({cv2.__version__}, ")
    assert "was built without it (cv2.getBuildInformation() shows GStreamer: NO)" in message
    assert "on a Jetson use JetPack's OpenCV" in message
    with pytest.raises(SourceError, match="a GStreamer pipeline source needs OpenCV built with GStreamer"):
        open_source("videotestsrc ! videoconvert ! appsink")


def test_gstreamer_detection_matches_the_build() -> None:
    info = cv2.getBuildInformation()
    assert sources.gstreamer_available() == any(
        "GStreamer:" in line and "YES" in line for line in info.splitlines())


def test_malformed_csi_uri() -> None:
    with pytest.raises(SourceError, match=r"write csi://N with N the sensor id, e.g. csi://0"):
        open_source("csi://front")


def test_csi_pipeline_string() -> None:
    text = csi_pipeline(1, 1920, 1080, 60)
    assert text.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=(int)1920, "
                           "height=(int)1080, framerate=(fraction)60/1")
    assert text.endswith("appsink drop=true max-buffers=1 sync=false")


def test_missing_camera_device() -> None:
    with pytest.raises(SourceError, match=r"^/dev/video987: no such camera device; is the camera connected"):
        open_source("/dev/video987")


def test_camera_index_that_cannot_be_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed:
        def __init__(self, *args: object) -> None:
            self.args = args

        def isOpened(self) -> bool:
            return False

        def release(self) -> None:
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", Closed)
    with pytest.raises(SourceError, match=r"^7: OpenCV cannot open this source; is camera 7 connected"):
        open_source("7")


def test_camera_requests_resolution_and_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, float]] = []

    class FakeCap:
        def __init__(self, target: object, api: int) -> None:
            self.target, self.api = target, api

        def isOpened(self) -> bool:
            return True

        def set(self, prop: int, value: float) -> bool:
            calls.append((prop, value))
            return True

        def get(self, prop: int) -> float:
            return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: 640.0, cv2.CAP_PROP_FRAME_HEIGHT: 480.0}.get(
                prop, 0.0)

        def read(self) -> tuple[bool, np.ndarray | None]:
            return False, None

        def release(self) -> None:
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCap)
    src = open_source("0", width=1280, height=720, fps=60)
    assert isinstance(src, CaptureSource)
    assert (src.live, src.fps, src.frame_count, src.size) == (True, 30.0, None, (640, 480))  # what the driver chose
    assert (cv2.CAP_PROP_FRAME_WIDTH, 1280) in calls and (cv2.CAP_PROP_FRAME_HEIGHT, 720) in calls
    assert (cv2.CAP_PROP_FPS, 60) in calls and (cv2.CAP_PROP_BUFFERSIZE, 1) in calls
    assert src.read() == (False, None)
    src.reopen()
    stream = open_source("rtsp://camera.local/stream")
    assert stream.live and stream.frame_count is None


def test_iterable_source() -> None:
    frames = [np.zeros((2, 2, 3), np.uint8)] * 3
    src = IterableSource(frames)
    assert (src.live, src.frame_count) == (False, 3)
    assert len(list(src)) == 3
    with pytest.raises(SourceError, match="cannot be reopened"):
        src.reopen()
