"""Sinks: atomic videos (mp4/avi/mkv), image folders, JSON Lines with COCO RLE masks, the window's
headless error, callbacks and fan-out; and the RLE encoder against reference decodings."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg import rle
from edgeseg.errors import OutputError
from edgeseg.result import InstanceResult, SemanticResult
from edgeseg.sinks import (
    CallbackSink,
    FrameRecord,
    ImageFolderSink,
    ImageSink,
    JsonlSink,
    MultiSink,
    Sink,
    VideoSink,
    WindowSink,
    open_sink,
    open_sinks,
)
from tests.conftest import frame_count


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_video_is_written_atomically(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    sink = open_sink(out, fps=10)
    assert isinstance(sink, VideoSink)
    for i in range(7):
        sink.write(np.full((32, 48, 3), i * 30, np.uint8))
    assert not out.exists() and len(partials(tmp_path)) == 1  # nothing under the final name yet
    sink.close()
    sink.close()
    assert frame_count(out) == 7 and not partials(tmp_path)


def test_video_frames_of_another_size_are_resized_not_lost(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    sink = VideoSink(out, 10)
    sink.write(np.zeros((32, 48, 3), np.uint8))
    sink.write(np.zeros((64, 64, 3), np.uint8))
    sink.close()
    assert frame_count(out) == 2


def test_video_with_no_frames_writes_nothing(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "out.mp4", 10)
    sink.close()
    assert list(tmp_path.iterdir()) == []


def test_image_sink_takes_one_frame(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "x.png")
    assert isinstance(sink, ImageSink)
    sink.write(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(OutputError, match="an image holds one frame"):
        sink.write(np.zeros((4, 4, 3), np.uint8))
    assert (tmp_path / "x.png").exists() and not partials(tmp_path)


def test_image_folder_appears_whole(tmp_path: Path) -> None:
    sink = open_sink(f"{tmp_path}/frames/")
    assert isinstance(sink, ImageFolderSink)
    for i in (0, 1, 5):
        sink.emit(FrameRecord(i, i / 10, np.full((8, 8, 3), i, np.uint8)))
    assert not (tmp_path / "frames").exists()
    sink.close()
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == ["frame_000000.png", "frame_000001.png", "frame_000005.png"]
    fifth = cv2.imread(str(tmp_path / "frames" / "frame_000005.png"))
    assert fifth is not None and int(fifth[0, 0, 0]) == 5
    assert not partials(tmp_path)


def test_image_folder_may_be_an_existing_empty_folder_but_not_a_full_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    sink = open_sink(tmp_path / "empty")
    sink.write(np.zeros((4, 4, 3), np.uint8))
    sink.close()
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["frame_000000.png"]
    with pytest.raises(OutputError) as info:
        open_sink(tmp_path / "empty")
    assert str(info.value) == (f"cannot write frames to {tmp_path / 'empty'}: the folder is not empty; "
                               "remove it or name a new folder")


def test_unknown_output_type(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"unknown output type '.xyz'; use a video"):
        open_sink(tmp_path / "out.xyz")


def test_show_on_a_headless_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(OutputError) as info:
        WindowSink()
    assert str(info.value) == (
        "--show cannot open a window: this machine has no display (DISPLAY and WAYLAND_DISPLAY are unset); "
        "watch it in a browser instead (-o http://0.0.0.0:8090, a live view for headless machines), write a video "
        "(-o out.mp4), or run where a display is available (`ssh -X`, set DISPLAY, install opencv-python instead of "
        "opencv-python-headless)")
    with pytest.raises(OutputError, match="--show cannot open a window"):
        open_sinks(["unused.mp4"], show=True)


@pytest.mark.skipif("GUI:                           NONE" not in cv2.getBuildInformation(),
                    reason="needs an OpenCV without GUI support (opencv-python-headless)")
def test_show_with_an_opencv_without_gui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":0")
    with pytest.raises(OutputError, match=r"^--show cannot open a window: this OpenCV has no GUI support"):
        WindowSink()


def instance_result(h: int = 40, w: int = 50) -> InstanceResult:
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 5:20, 3:30] = 1
    masks[1, 22:40, 25:50] = 1
    masks[1, 30, 30] = 0  # a hole
    return InstanceResult(np.array([[3, 5, 30, 20], [25, 22, 50, 40]], np.float32),
                          np.array([0.91234, 0.5], np.float32), np.array([2, 1], np.int32), masks,
                          ("__background__", "person", "car"), ((0, 0, 0), (1, 2, 3), (4, 5, 6)))


def test_jsonl_lines(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    sink = open_sink(out)
    assert isinstance(sink, JsonlSink) and not sink.needs_image
    frame = np.zeros((40, 50, 3), np.uint8)
    inst = instance_result()
    label_map = np.zeros((40, 50), np.uint8)
    label_map[:10] = 2
    sem = SemanticResult(label_map, ("road", "car", "sky"), ((0, 0, 0),) * 3)
    sink.emit(FrameRecord(0, 0.0, frame, inst))
    sink.emit(FrameRecord(3, 0.12, frame, sem))
    sink.emit(FrameRecord(4, 0.16, frame, InstanceResult(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                                           np.zeros(0, np.int32), np.zeros((0, 40, 50), np.uint8),
                                                           inst.classes, inst.palette)))
    assert not out.exists()
    sink.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["frame"] == 0 and lines[0]["time"] == 0.0 and lines[0]["kind"] == "instance"
    assert lines[0]["boxes"] == [[3.0, 5.0, 30.0, 20.0], [25.0, 22.0, 50.0, 40.0]]
    assert lines[0]["scores"] == [0.9123, 0.5]
    assert lines[0]["labels"] == [2, 1] and lines[0]["classes"] == ["car", "person"]
    for k in range(2):
        assert lines[0]["masks"][k]["size"] == [40, 50]
        assert np.array_equal(rle.decode(lines[0]["masks"][k]), inst.masks[k])
    assert lines[1] == {"frame": 3, "time": 0.12, "kind": "semantic", "size": [40, 50],
                        "areas": {"road": 1500, "sky": 500}}
    assert lines[2]["masks"] == [] and lines[2]["boxes"] == []


def test_jsonl_refuses_foreign_results(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "r.jsonl")
    with pytest.raises(OutputError, match="the JSON Lines sink writes edgeseg results, got a dict"):
        sink.emit(FrameRecord(0, 0.0, np.zeros((2, 2, 3), np.uint8), {"x": 1}))


def test_callback_and_fan_out(tmp_path: Path) -> None:
    got: list[int] = []
    multi = open_sinks([tmp_path / "a.mp4"], jsonl=tmp_path / "r.jsonl", callbacks=[lambda r: got.append(r.index)])
    assert [type(s) for s in multi.sinks] == [VideoSink, JsonlSink, CallbackSink]
    assert multi.paths == [tmp_path / "a.mp4", tmp_path / "r.jsonl"] and multi.needs_image
    for i in range(3):
        image = np.zeros((16, 16, 3), np.uint8)
        multi.emit(FrameRecord(i, i / 25, image, SemanticResult(np.zeros((16, 16), np.uint8), ("a",), ((0, 0, 0),)),
                               image))
    multi.close()
    assert got == [0, 1, 2] and frame_count(tmp_path / "a.mp4") == 3
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 3


def test_nothing_to_write() -> None:
    with pytest.raises(OutputError, match=r"^nothing to write: give -o OUT"):
        open_sinks()


def test_fan_out_closes_every_sink_when_one_fails(tmp_path: Path) -> None:
    class FailsToClose(Sink):
        def emit(self, record: FrameRecord) -> None:
            pass

        def close(self) -> None:
            raise OSError("flush failed")

    video = VideoSink(tmp_path / "a.mp4", 10)
    multi = MultiSink([FailsToClose(), video])
    frame = np.zeros((16, 16, 3), np.uint8)
    multi.emit(FrameRecord(0, 0.0, frame, None, frame))
    with pytest.raises(OSError, match="flush failed"):
        multi.close()
    assert frame_count(tmp_path / "a.mp4") == 1


# -- COCO RLE ---------------------------------------------------------------------------------


def reference_decode(size: list[int], counts: str) -> np.ndarray:
    """COCO's rleFrString + rleDecode, transcribed line by line (pure Python)."""
    cnts: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, 1
        while more:
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << 5 * k
            more = c & 0x20
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << 5 * k
        if len(cnts) > 2:
            x += cnts[len(cnts) - 2]
        cnts.append(x)
    h, w = size
    flat = []
    v = 0
    for c in cnts:
        flat.extend([v] * c)
        v = 1 - v
    return np.array(flat, np.uint8).reshape(w, h).T


def masks_to_check() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [np.zeros((5, 7), np.uint8), np.ones((5, 7), np.uint8), np.ones((1, 1), np.uint8),
           np.zeros((1, 1), np.uint8)]
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        out.append((rng.random((h, w)) < rng.random()).astype(np.uint8))
    big = np.zeros((700, 900), np.uint8)  # long runs: multi-group and negative differences
    big[0, 0] = big[699, 899] = big[350, 10:800] = 1
    cv2.circle(big, (450, 300), 120, 1, -1)
    out.append(big)
    return out


def test_rle_decodes_back_to_the_mask() -> None:
    for mask in masks_to_check():
        encoded = rle.encode(mask)
        assert encoded["size"] == list(mask.shape)
        assert np.array_equal(reference_decode(encoded["size"], encoded["counts"]), mask)
        assert np.array_equal(rle.decode(encoded), mask)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools
def test_rle_strings_are_pycocotools_strings() -> None:
    coco = pytest.importorskip("pycocotools.mask")
    for mask in masks_to_check():
        expected = coco.encode(np.asfortranarray(mask))
        assert rle.encode(mask)["counts"] == expected["counts"].decode("ascii")
        decoded = coco.decode({"size": list(mask.shape), "counts": rle.encode(mask)["counts"].encode("ascii")})
        assert np.array_equal(np.asarray(decoded), mask)


def test_rle_of_bool_and_255_masks() -> None:
    mask = np.zeros((6, 4), bool)
    mask[2:5, 1:3] = True
    assert rle.encode(mask) == rle.encode(mask.astype(np.uint8) * 255) == rle.encode(mask.astype(np.uint8))
