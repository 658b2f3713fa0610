"""The samples in samples/ run as their docstrings say, on a tiny HRNet and a generated 30-frame clip.

Each sample runs as a script in its own process, as a user would run it. ros2_node.py needs ROS 2,
which cannot be installed here: only its ROS-free helpers and its message without ROS are tested.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import cv2
import numpy as np
import pytest

import edgeseg
import edgeseg.cli as cli
from edgeseg.errors import OutputError
from edgeseg.sinks import WindowSink

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
FRAME_HW = (96, 128)
FRAMES = 30
FPS = 30.0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("samples") / "tiny.onnx"
    code = cli.main(["convert", "hrnet", "--arch", "w18_small_v1", "--random-weights", "--classes", "cityscapes",
                     "--frame", f"{FRAME_HW[0]}x{FRAME_HW[1]}", "-o", str(path), "-q"])
    assert code == 0
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames at 30 FPS: a ball and a box moving over a two-tone background."""
    path = tmp_path_factory.mktemp("samples") / "clip.mp4"
    h, w = FRAME_HW
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (w, h))
    for i in range(FRAMES):
        frame = np.full((h, w, 3), (40, 90, 40), np.uint8)
        frame[h // 2:] = (90, 90, 90)
        cv2.circle(frame, (10 + 3 * i, 30), 12, (30, 30, 200), -1)
        cv2.rectangle(frame, (w - 20 - 2 * i, 50), (w - 2 * i, 90), (200, 120, 20), -1)
        writer.write(frame)
    writer.release()
    return path


def run_sample(name: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SAMPLES / name), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def test_video_file_writes_every_frame(tiny_model: Path, clip: Path, tmp_path: Path) -> None:
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    run = run_sample("video_file.py", tiny_model, clip, "-o", out, "--threads", "1")
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(rf"done: 30 frame\(s\), [\d.]+ FPS -> {re.escape(f'{out}, {jsonl}')}\n", run.stdout)
    assert "frame 30/30 (100%)" in run.stderr  # progress
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.mp4"], "temporary file left behind"

    video = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    video.release()
    assert len(frames) == FRAMES
    assert frames[0].shape == (*FRAME_HW, 3)

    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == FRAMES
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert lines[3]["time"] == pytest.approx(3 / FPS, abs=1e-6)
    assert {line["kind"] for line in lines} == {"semantic"}
    assert all(sum(line["areas"].values()) == FRAME_HW[0] * FRAME_HW[1] for line in lines)


TICK = re.compile(r"tick +(\d+)  t= *([\d.]+) s  (.*)")
AGE = re.compile(r"result age +(\d+) ms \(frame (\d+)\)  nearest: (.+) at \((\d+), (\d+)\)")


def test_robot_embed_ticks_at_its_rate_and_stops_on_sigterm(tiny_model: Path, clip: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SAMPLES / "robot_embed.py"), str(tiny_model), "--source", str(clip), "--rate", "20",
         "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("tick") for line in lines) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        time.sleep(1.0)  # about 20 ticks
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr

    ticks = [m for m in map(TICK.fullmatch, (line.rstrip("\n") for line in lines)) if m]
    assert [int(m.group(1)) for m in ticks] == list(range(len(ticks)))
    assert len(ticks) >= 10  # about 20 in the second before SIGTERM; its rate is not asserted (no timed tests)
    times = [float(m.group(2)) for m in ticks]
    assert times == sorted(times)

    ages = [m for m in (AGE.fullmatch(t.group(3)) for t in ticks) if m]
    assert len(ages) >= len(ticks) // 2, "most ticks should act on a result"
    assert all(int(a.group(1)) < 1000 for a in ages)
    frames = [int(a.group(2)) for a in ages]
    assert frames == sorted(frames), "always the newest result"
    assert all(0 <= int(a.group(4)) <= FRAME_HW[1] and 0 <= int(a.group(5)) <= FRAME_HW[0] for a in ages)

    summary = [line for line in lines if not line.startswith("tick")]
    assert re.fullmatch(rf"stopped by SIGTERM: {len(ticks)} ticks in [\d.]+ s \([\d.]+ Hz\), \d+ late; "
                        rf"{len(ages)} acted on a result, age mean \d+ ms, max \d+ ms\n", summary[0])
    assert re.fullmatch(r"inference: done: \d+ frame\(s\), [\d.]+ FPS(, \d+ dropped)?\n", summary[1])


def test_camera_demo_on_a_headless_machine_says_so(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(OutputError) as err:  # the error edgeseg itself gives here
        WindowSink()
    assert "no display" in str(err.value)
    run = run_sample("camera_demo.py", tiny_model, "--source", "0", env=dict(os.environ))
    assert run.returncode == 1
    assert run.stderr == f"camera_demo: error: {err.value}\n"
    assert run.stdout == ""


def test_segment_video_prints_every_tenth_frame(tiny_model: Path, clip: Path) -> None:
    run = run_sample("segment_video.py", tiny_model, clip)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["frame 0", "frame 10", "frame 20"]
    assert all(re.fullmatch(r"frame \d+: .+ covers \d+%", line) for line in lines)


def _load_ros2_node() -> ModuleType:
    name = "edgeseg_sample_ros2_node"
    spec = importlib.util.spec_from_file_location(name, SAMPLES / "ros2_node.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_ros2_node_without_ros_says_what_to_do() -> None:
    if importlib.util.find_spec("rclpy") is not None:
        pytest.skip("rclpy is installed here; this tests the message without it")
    run = run_sample("ros2_node.py")
    assert run.returncode == 1
    assert run.stderr == ("ros2_node: error: ROS 2 is not available (No module named 'rclpy'); source its setup "
                          "first, e.g. `source /opt/ros/humble/setup.bash`\n")


def test_ros2_node_reads_images_and_builds_label_images() -> None:
    node = _load_ros2_node()
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)

    def message(encoding: str, pixels: np.ndarray) -> SimpleNamespace:
        rows = pixels.reshape(pixels.shape[0], -1)
        padded = np.concatenate([rows, np.full((rows.shape[0], 3), 7, np.uint8)], axis=1)  # row padding
        return SimpleNamespace(encoding=encoding, height=pixels.shape[0], width=pixels.shape[1],
                               step=padded.shape[1], data=padded.tobytes())

    np.testing.assert_array_equal(node.image_to_bgr(message("bgr8", bgr)), bgr)
    np.testing.assert_array_equal(node.image_to_bgr(message("rgb8", bgr[..., ::-1].copy())), bgr)
    bgra = np.concatenate([bgr, np.full((4, 5, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(node.image_to_bgr(message("bgra8", bgra)), bgr)
    gray = bgr[..., 0].copy()
    np.testing.assert_array_equal(node.image_to_bgr(message("mono8", gray)), np.dstack([gray] * 3))
    assert node.image_to_bgr(message("16UC1", gray)) is None

    masks = np.zeros((3, 4, 5), np.uint8)
    masks[0, :2, :3] = 1
    masks[1, 1:, 2:] = 1  # overlaps detection 0 at (1, 2)
    masks[2] = 1  # below min_score: not drawn
    result = edgeseg.InstanceResult(
        boxes=np.array([[0, 0, 3, 2], [2, 1, 5, 4], [0, 0, 5, 4]], np.float32),
        scores=np.array([0.9, 0.6, 0.3], np.float32), labels=np.array([1, 2, 1], np.int32), masks=masks,
        classes=("__background__", "person", "car"), palette=((0, 0, 0), (1, 1, 1), (2, 2, 2)))
    ids = node.label_image(result, 0.5)
    assert ids.dtype == np.uint8
    assert ids[1, 2] == 1, "the more confident detection is on top"
    assert ids[3, 4] == 2
    assert ids[3, 0] == 0
    header = SimpleNamespace(stamp=SimpleNamespace(sec=12, nanosec=34), frame_id="camera")
    assert json.loads(node.detections_json(result, 0.5, header)) == {
        "stamp": {"sec": 12, "nanosec": 34}, "frame_id": "camera",
        "detections": [{"id": 1, "class": "person", "score": 0.9, "box": [0.0, 0.0, 3.0, 2.0]},
                       {"id": 2, "class": "car", "score": 0.6, "box": [2.0, 1.0, 5.0, 4.0]}]}

    # Outputs carry the capture stamp: the driver's, or the arrival time where the driver left none.
    assert node.stamp_capture_time(header, 99_000_000_005).stamp == SimpleNamespace(sec=12, nanosec=34)
    unstamped = SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id="camera")
    assert node.stamp_capture_time(unstamped, 99_000_000_005).stamp == SimpleNamespace(sec=99, nanosec=5)

    semantic = edgeseg.SemanticResult(np.arange(20, dtype=np.uint8).reshape(4, 5), ("a",) * 20, ((0, 0, 0),) * 20)
    np.testing.assert_array_equal(node.label_image(semantic, 0.5), semantic.label_map)
