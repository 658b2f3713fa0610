"""Bad sources and outputs (issue 20.4): every address, port, scheme and file type a run names is
checked by one function per kind (edgeseg/uris.py, sources.check_source, sinks.check_output)
before anything opens: one line naming the value and the right form, a usage error (exit 2) on
the command line, no traceback, nothing opened, nothing written, the model not even loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import edgeseg.cli as cli
from edgeseg import uris
from edgeseg.errors import OutputError, OutputUriError, SourceError, SourceUriError
from edgeseg.sinks import check_output, open_sink
from edgeseg.sources import check_source, open_source

PORT = "the port must be a number from 1 to 65535"
SOURCES = ("a camera (0, /dev/video0, csi://0), a video, an image, a folder or glob of images, a stream (rtsp://, "
           "rtsps://, rtmp://, http://, https://, udp://, tcp://) or a GStreamer pipeline (... ! appsink)")
OUTPUTS = ("a video (.mp4, .m4v, .avi, .mkv, .mov), an image (.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp), a folder "
           "for PNG frames (end the name with /), JSON lines of results (.jsonl), http://HOST:PORT (a live MJPEG "
           "view), udp://HOST:PORT or rtsp://SERVER[:PORT]/PATH (H.264 through GStreamer)")

BAD_OUTPUTS = [
    # the live view: before, a port out of range or not a number was a ValueError traceback, port 0 or a
    # broken IPv6 host served on whatever the OS picked or raised ValueError
    ("http://127.0.0.1:70000", f"http://127.0.0.1:70000: {PORT}"),
    ("http://127.0.0.1:abc", f"http://127.0.0.1:abc: {PORT}"),
    ("http://127.0.0.1:0", f"http://127.0.0.1:0: {PORT}"),
    ("http://[::1:8090", "http://[::1:8090: malformed address (Invalid IPv6 URL); write SCHEME://HOST:PORT, an IPv6 "
                         "host in brackets ([::1])"),
    ("http://127.0.0.1:8090/view", "http://127.0.0.1:8090/view: the live view is served at the root; give "
                                   "http://HOST:PORT"),
    ("http://127.0.0.1:8090/?fps=5", "http://127.0.0.1:8090/?fps=5: the live view is served at the root; give "
                                     "http://HOST:PORT"),
    # udp:// and rtsp:// (GStreamer): the same host and port check
    ("udp://:5000", "udp://:5000: give the receiver's address and port, e.g. -o udp://192.168.1.20:5000"),
    ("udp://10.0.0.2", "udp://10.0.0.2: give the receiver's address and port, e.g. -o udp://192.168.1.20:5000"),
    ("udp://10.0.0.2:0", f"udp://10.0.0.2:0: {PORT}"),
    ("udp://10.0.0.2:65536", f"udp://10.0.0.2:65536: {PORT}"),
    ("udp://10.0.0.2:5000/front", "udp://10.0.0.2:5000/front: udp:// output takes no path or query; give "
                                  "udp://HOST:PORT"),
    ("udp://robot one:5000", "'udp://robot one:5000': an address cannot contain spaces"),
    ("http://0.0.0.0:8090 ", "'http://0.0.0.0:8090 ': an address cannot contain spaces"),
    ("udp://::1:5000", "udp://::1:5000: write an IPv6 host in brackets, e.g. udp://[::1]:5000"),
    ("rtsp://:8554/robot", "rtsp://:8554/robot: give the RTSP server and a stream path, e.g. "
                           "-o rtsp://localhost:8554/robot"),
    ("rtsp://server:99999/robot", f"rtsp://server:99999/robot: {PORT}"),
    ("RTSP://server:8554", "RTSP://server:8554: give the RTSP server and a stream path, e.g. "
                           "-o rtsp://localhost:8554/robot"),
    # no such output
    ("ftp://server/out.mp4", "ftp://server/out.mp4: unknown output scheme ftp://; outputs are files, folders/, "
                             "http://HOST:PORT (a live MJPEG view), udp://HOST:PORT or rtsp://SERVER[:PORT]/PATH "
                             "(H.264 through GStreamer)"),
    ("", f"empty output: give {OUTPUTS}"),
    ("out.xyz", "out.xyz: unknown output type '.xyz'; use a video (.mp4, .m4v, .avi, .mkv, .mov), an image (.png, "
                ".jpg, .jpeg, .bmp, .tif, .tiff, .webp), a folder for PNG frames (end the name with /) or .jsonl"),
]

BAD_SOURCES = [
    # before: handed to OpenCV, which tried (network time-outs) and said only "cannot open this source"
    ("rtsp://camera:70000/live", f"rtsp://camera:70000/live: {PORT}"),
    ("rtsp://camera:abc/live", f"rtsp://camera:abc/live: {PORT}"),
    ("rtsp://:554/live", "rtsp://:554/live: give the server, e.g. rtsp://192.168.1.20:8554/stream"),
    ("http://", "http://: give the server, e.g. http://192.168.1.20:8554/stream"),
    ("rtmp://[::1/live", "rtmp://[::1/live: malformed address (Invalid IPv6 URL); write SCHEME://HOST:PORT, an IPv6 "
                         "host in brackets ([::1])"),
    ("udp://0.0.0.0", "udp://0.0.0.0: give the port to read from, e.g. udp://0.0.0.0:5000"),
    ("tcp://0.0.0.0:0", f"tcp://0.0.0.0:0: {PORT}"),
    # before: "ftp:/x/clip.mp4: no such file" (the path, one slash lost) and ": no images found"
    ("ftp://x/clip.mp4", f"ftp://x/clip.mp4: unknown source scheme ftp://; give {SOURCES}"),
    ("", f"empty source: give {SOURCES}"),
    ("csi://", "csi://: write csi://N with N the sensor id, e.g. csi://0"),
    ("csi://front", "csi://front: write csi://N with N the sensor id, e.g. csi://0"),
    # before: handed to OpenCV, "cannot open this source"
    ("v4l2src ! videoconvert ! autovideosink",
     "v4l2src ! videoconvert ! autovideosink: a GStreamer pipeline source ends in appsink, where OpenCV takes the "
     "frames, e.g. ... ! videoconvert ! video/x-raw,format=BGR ! appsink"),
]


@pytest.fixture
def nothing_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any capture, server or GStreamer writer that opens fails the test."""
    import cv2

    from edgeseg.gst_output import GstStreamSink
    from edgeseg.mjpeg import MjpegSink

    def opened(*args: object, **kwargs: object) -> None:
        raise AssertionError("something was opened")

    monkeypatch.setattr(cv2, "VideoCapture", opened)
    monkeypatch.setattr(MjpegSink, "__init__", opened)
    monkeypatch.setattr(GstStreamSink, "__init__", opened)


@pytest.mark.parametrize(("output", "message"), BAD_OUTPUTS)
def test_a_bad_output_is_one_line_before_anything_opens(output: str, message: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, nothing_opens: None) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputUriError) as err:
        open_sink(output)
    assert str(err.value) == message
    assert isinstance(err.value, OutputError) and isinstance(err.value, ValueError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("source", "message"), BAD_SOURCES)
def test_a_bad_source_is_one_line_before_anything_opens(source: str, message: str, nothing_opens: None) -> None:
    with pytest.raises(SourceUriError) as err:
        open_source(source)
    assert str(err.value) == message
    assert isinstance(err.value, SourceError) and isinstance(err.value, ValueError)


def test_a_source_file_of_an_unknown_type_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "clip.xyz").write_bytes(b"?")
    with pytest.raises(SourceUriError, match=r"clip\.xyz: unknown source type '\.xyz'; give an image"):
        check_source(tmp_path / "clip.xyz")


@pytest.mark.parametrize(("uri", "kind"), [
    ("0", "camera"), ("csi://1", "csi"), ("rtsp://user:pw@[::1]:8554/cam?x=1", "stream"), ("RTSP://cam/live", "stream"),
    ("udp://:5000", "stream"), ("tcp://0.0.0.0:5000?listen", "stream"), ("https://host/clip.mp4", "stream"),
    ("rtspsrc location=rtsp://cam/live ! decodebin ! videoconvert ! appsink", "gstreamer"), ("shots/*.png", "glob"),
    ("shots", "folder"), ("shots/a.png", "image"),
])
def test_good_sources_are_classified_without_opening(uri: str, kind: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, nothing_opens: None) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "a.png").write_bytes(b"listed, not decoded")
    assert check_source(uri) == kind


@pytest.mark.parametrize(("uri", "kind"), [
    ("http://0.0.0.0:8090", "http"), ("HTTP://[::1]:8091/", "http"), ("http://:8092", "http"),
    ("udp://239.0.0.1:5000", "udp"), ("rtsp://user:pw@[::1]/robot?token=a", "rtsp"), ("out.MP4", "video"),
    ("frames/", "folder"), ("r.ndjson", "jsonl"), ("shot.png", "image"),
])
def test_good_outputs_are_classified_without_opening(uri: str, kind: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, nothing_opens: None) -> None:
    monkeypatch.chdir(tmp_path)
    assert check_output(uri) == kind
    assert list(tmp_path.iterdir()) == []


def test_the_live_view_defaults() -> None:
    assert uris.http_output("http://") == ("0.0.0.0", 8090)
    assert uris.http_output("http://[::1]:8091/") == ("::1", 8091)


@pytest.fixture
def model_never_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.model

    def load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the sources and outputs were checked")

    monkeypatch.setattr(edgeseg.model, "load", load)


@pytest.fixture
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    path.write_bytes(b"not decoded: the run stops before it is opened")
    return path


@pytest.mark.parametrize(("args", "code", "message"), [
    (["-o", "http://0.0.0.0:70000"], 2, f"http://0.0.0.0:70000: {PORT}"),
    (["-o", "udp://10.0.0.2"], 2, "udp://10.0.0.2: give the receiver's address and port, e.g. -o udp://192.168.1.20:5000"),
    (["-o", "out.mp4", "-o", "ftp://x"], 2, "ftp://x: unknown output scheme ftp://; outputs are files, folders/, "
                                            "http://HOST:PORT (a live MJPEG view), udp://HOST:PORT or "
                                            "rtsp://SERVER[:PORT]/PATH (H.264 through GStreamer)"),
    (["-o", "out.xyz"], 2, "out.xyz: unknown output type '.xyz'; use a video (.mp4, .m4v, .avi, .mkv, .mov), an image "
                           "(.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp), a folder for PNG frames (end the name with "
                           "/) or .jsonl"),
    (["-o", "missing/out.mp4"], 1, "cannot write missing/out.mp4: folder missing does not exist; create it or "
                                   "choose another path"),
    (["-o", "out.mp4", "--json", "missing/r.jsonl"], 1, "cannot write missing/r.jsonl: folder missing does not exist; "
                                                        "create it or choose another path"),
    (["--source", "rtsp://camera:70000/live", "-o", "out.mp4"], 2, f"rtsp://camera:70000/live: {PORT}"),
    (["--source", "csi://front", "-o", "out.mp4"], 2, "csi://front: write csi://N with N the sensor id, e.g. csi://0"),
    # several streams: every source and every expanded output, before any stream starts
    (["--source", "{clip}", "--source", "rtsp://:554/b", "-o", "cam{stream}.mp4"], 2,
     "stream 1: rtsp://:554/b: give the server, e.g. rtsp://192.168.1.20:8554/stream; no stream was started: mend or "
     "drop that --source"),
    (["--source", "{clip}", "--source", "{clip}", "-o", "out{stream}.mp4", "-o", "http://0.0.0.0:{stream}"], 2,
     f"stream 0: http://0.0.0.0:0: {PORT}; no stream was started"),
    (["--source", "{clip}", "--source", "{clip}", "-o", "cam{stream}.mp4", "--json", "missing/cam{stream}.jsonl"], 1,
     "stream 0: cannot write missing/cam0.jsonl: folder missing does not exist; create it or choose another path; no "
     "stream was started"),
])
def test_run_checks_every_source_and_output_before_the_model_loads(
        args: list[str], code: int, message: str, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], model_never_loads: None, nothing_opens: None) -> None:
    monkeypatch.chdir(tmp_path)
    sources = [] if "--source" in args else ["--source", "{clip}"]
    argv = ["run", "model.onnx", *(a.replace("{clip}", str(clip)) for a in sources + args)]
    assert cli.main(argv) == code
    assert capsys.readouterr().err == f"edgeseg: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_run_says_a_folder_without_images_before_the_model_loads(
        tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], model_never_loads: None) -> None:
    empty = tmp_path_factory.mktemp("no-images")
    (empty / "notes.txt").write_text("no frames here")
    for source in (str(empty), f"{empty}/*.png"):  # before: said after the model had loaded
        assert cli.main(["run", "m.onnx", "--source", source, "-o", str(empty / "out.mp4")]) == 1
        assert capsys.readouterr().err == (f"edgeseg: error: {source}: no images found (.png, .jpg, .jpeg, .bmp, "
                                           ".tif, .tiff, .webp); check the folder or pattern\n")
    assert [p.name for p in empty.iterdir()] == ["notes.txt"]


def test_the_console_script_says_a_bad_port_in_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("edgeseg")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgeseg.cli"]
    proc = subprocess.run([*cmd, "run", "absent.onnx", "--source", "0", "-o", "http://localhost:http"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert (proc.returncode, proc.stderr) == (2, f"edgeseg: error: http://localhost:http: {PORT}\n")
    assert list(tmp_path.iterdir()) == []


def test_run_help_lists_every_source_and_output_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    outputs = [".mp4", ".avi", ".mkv", ".png", ".jpg", "folder for PNG frames (end the name with /)", ".jsonl",
               "http://HOST:PORT (a live MJPEG view)", "udp://HOST:PORT", "rtsp://SERVER[:PORT]/PATH", "--json"]
    sources = ["camera index (0)", "/dev/videoN", "video or image file", "folder or glob of images", "csi://N",
               "GStreamer pipeline", *(f"{s}://" for s in uris.STREAM_SOURCE_SCHEMES)]
    assert [kind for kind in outputs + sources if kind not in text] == []


@pytest.mark.parametrize(("outputs", "jsonl", "message"), [
    # before: both sinks wrote, and the second rename silently replaced the first one's file
    (["r.jsonl"], "r.jsonl", "r.jsonl: the same output as r.jsonl; give each output its own name"),
    (["out.mp4", "./out.mp4"], None, "./out.mp4: the same output as out.mp4; give each output its own name"),
    (["frames/", "./frames//"], None, "./frames//: the same output as frames/; give each output its own name"),
    # before: the second live view failed to bind after the first had started
    (["http://0.0.0.0:8090", "http://127.0.0.1:8090/"], None,
     "http://127.0.0.1:8090/: the same output as http://0.0.0.0:8090; give each output its own name and port"),
])
def test_an_output_named_twice_is_refused_before_any_opens(outputs: list[str], jsonl: str | None, message: str,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           nothing_opens: None) -> None:
    from edgeseg.sinks import open_sinks

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputUriError) as err:
        open_sinks(outputs, jsonl=jsonl)
    assert str(err.value) == message
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_an_output_named_twice(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], model_never_loads: None) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "m.onnx", "--source", str(clip), "-o", "r.jsonl", "--json", "r.jsonl"]) == 2
    assert capsys.readouterr().err == ("edgeseg: error: r.jsonl: the same output as r.jsonl; give each output its own "
                                       "name\n")


def test_a_class_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    from edgeseg.classes import read_class_file
    from edgeseg.errors import ArgumentError

    (tmp_path / "names.json").write_bytes(b"\xff\xfe[]")
    with pytest.raises(ArgumentError) as err:  # before: a UnicodeDecodeError traceback
        read_class_file(tmp_path / "names.json")
    assert str(err.value) == (f"--classes {tmp_path}/names.json: not UTF-8 text (byte 0); give a .txt with one name "
                              "per line or a .json list")


def test_a_weights_folder_is_named_as_a_folder(tmp_path: Path) -> None:
    from edgeseg.converters.checkpoint import read_state_dict
    from edgeseg.errors import CheckpointError

    with pytest.raises(CheckpointError) as err:  # before: "no such weights file", though it exists
        read_state_dict(tmp_path)
    assert str(err.value) == f"{tmp_path}: is a folder, not a weights file; give the checkpoint file in it"
