"""The threaded video pipeline with fake models and sources: order, drops, interrupts, failures,
corrupt frames, finalised outputs. Each frame carries its index in its pixels (8 black/white
blocks) so the order can be read back from the output video."""

from __future__ import annotations

import _thread
import json
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgeseg import rle
from edgeseg.errors import SourceError
from edgeseg.pipeline import Pipeline, RunSummary, run_pipeline
from edgeseg.result import InstanceResult, SemanticResult
from edgeseg.sinks import CallbackSink, FrameRecord, JsonlSink, Sink, VideoSink
from edgeseg.sources import IterableSource, Source, open_source

HW = (96, 128)
BLOCK = 16


def indexed_frame(i: int, hw: tuple[int, int] = HW) -> np.ndarray:
    """A grey frame with *i* written as 8 bits, one 16x16 block each along the top (white = 1)."""
    frame = np.full((*hw, 3), 90, np.uint8)
    for b in range(8):
        frame[:BLOCK, b * BLOCK:(b + 1) * BLOCK] = 255 if (i >> b) & 1 else 0
    return frame


def frame_index(frame: np.ndarray) -> int:
    """Read back :func:`indexed_frame`'s number (block centres survive lossy video coding)."""
    bits = [frame[4:BLOCK - 4, b * BLOCK + 4:(b + 1) * BLOCK - 4].mean() > 127 for b in range(8)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def make_video(path: Path, n: int, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (HW[1], HW[0]))
    for i in range(n):
        writer.write(indexed_frame(i))
    writer.release()
    return path


def video_indices(path: Path) -> list[int]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame_index(frame))
    cap.release()
    return out


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name]


class SleepyModel:
    """Returns the frame's index after *delay* seconds; raises *exc* at frame *fail_at*."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None, exc: BaseException | None = None) -> None:
        self.delay, self.fail_at, self.exc, self.calls = delay, fail_at, exc, 0

    def __call__(self, frame: np.ndarray) -> int:
        index = frame_index(frame)
        if self.fail_at is not None and self.calls == self.fail_at:
            assert self.exc is not None
            raise self.exc
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return index


class FakeCamera(Source):
    """A live source delivering a numbered frame every *period* seconds. After *fail_after*
    frames reads fail; ``reopen`` fails too unless *comes_back*."""

    def __init__(self, period: float, fail_after: int | None = None, comes_back: bool = False) -> None:
        self.uri = "fake-camera"
        self.live = True
        self.fps, self.fps_known = 1.0 / period, True
        self.period = period
        self.fail_after = fail_after
        self.comes_back = comes_back
        self.delivered = 0
        self.reopened = 0
        self.closed = False

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.fail_after is not None and self.delivered >= self.fail_after:
            return False, None
        time.sleep(self.period)
        frame = indexed_frame(self.delivered)
        self.delivered += 1
        return True, frame

    def reopen(self) -> None:
        self.reopened += 1
        if not self.comes_back:
            raise SourceError("fake-camera: no such device")
        self.fail_after = None

    def close(self) -> None:
        self.closed = True


class Collect(CallbackSink):
    def __init__(self) -> None:
        self.records: list[FrameRecord] = []
        super().__init__(self.records.append)

    @property
    def indices(self) -> list[int]:
        return [r.index for r in self.records]


def test_every_frame_of_a_file_reaches_the_output_in_order(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 120)
    out = tmp_path / "out.mp4"
    collect = Collect()
    rng = np.random.default_rng(0)
    delays = iter(rng.uniform(0, 0.002, 200))

    def jittery(frame: np.ndarray) -> int:
        time.sleep(next(delays))  # uneven stage times must not reorder anything
        return frame_index(frame)

    source = open_source(src)
    summary = run_pipeline(source, jittery, [VideoSink(out, source.fps), collect], draw=None)
    assert video_indices(out) == list(range(120))
    assert collect.indices == list(range(120))
    assert [r.result for r in collect.records] == list(range(120))
    assert [r.timestamp for r in collect.records[:3]] == pytest.approx([0.0, 1 / 30, 2 / 30])
    assert (summary.frames_in, summary.frames_out, summary.dropped, summary.corrupt) == (120, 120, 0, 0)
    assert summary.outputs == [out]
    assert summary.fps > 0 and not summary.interrupted and summary.error is None
    assert summary.describe().startswith("done: 120 frame(s)")
    assert no_partials(tmp_path)


def test_keyboard_interrupt_in_the_model_keeps_a_playable_video(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 120)
    out = tmp_path / "out.mp4"
    source = open_source(src)
    pipe = Pipeline(source, SleepyModel(fail_at=40, exc=KeyboardInterrupt()), VideoSink(out, source.fps), draw=None)
    with pytest.raises(KeyboardInterrupt):
        pipe.run()
    assert video_indices(out) == list(range(40))
    s = pipe.summary
    assert s.interrupted and s.frames_out == 40
    assert s.frames_in == s.frames_out + s.discarded  # frames read ahead are accounted for
    assert s.describe().startswith("interrupted after 40 frame(s)")
    assert no_partials(tmp_path)


def test_ctrl_c_in_the_main_thread_keeps_a_playable_video(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 120)
    out = tmp_path / "out.mp4"
    source = open_source(src)
    pipe = Pipeline(source, SleepyModel(delay=0.02), VideoSink(out, source.fps), draw=None)
    timer = threading.Timer(0.5, _thread.interrupt_main)  # as Ctrl-C (or the CLI's SIGTERM handler)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pipe.run()
    finally:
        timer.cancel()
    written = video_indices(out)
    assert 0 < len(written) < 120
    assert written == list(range(len(written))) and pipe.summary.frames_out == len(written)
    assert pipe.summary.interrupted
    assert no_partials(tmp_path)


def test_ctrl_c_while_a_frame_is_written_is_held_until_it_is_counted(tmp_path: Path) -> None:
    # Ctrl-C lands inside a sink's emit, after the frame was written: the frame must be counted
    # (deterministic form of the race the test above can hit by chance).
    src = make_video(tmp_path / "in.mp4", 60)
    out = tmp_path / "out.mp4"
    written: list[int] = []

    def write_then_ctrl_c(record: FrameRecord) -> None:
        written.append(record.index)
        if record.index == 5:
            _thread.interrupt_main()
            time.sleep(0.01)  # many bytecodes: unheld, the interrupt would be raised right here

    source = open_source(src)
    pipe = Pipeline(source, SleepyModel(delay=0.0), [VideoSink(out, source.fps), CallbackSink(write_then_ctrl_c)],
                    draw=None)
    with pytest.raises(KeyboardInterrupt):
        pipe.run()
    assert written[:6] == list(range(6))
    assert pipe.summary.frames_out == len(written) == len(video_indices(out))
    assert pipe.summary.interrupted and no_partials(tmp_path)


def test_held_signals_run_their_handler_after_the_block() -> None:
    import signal

    from edgeseg.deferred_signals import DeferredSignals

    seen: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append("handler"))
    try:
        with DeferredSignals() as signals:
            with signals.held():
                signal.raise_signal(signal.SIGTERM)
                seen.append("block")
            seen.append("after")
            signal.raise_signal(signal.SIGTERM)  # not held: at once
            with signals.held():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)  # the same again while one is held: forces
                seen.append("forced")
            seen.append("end")
            with pytest.raises(ValueError), signals.held():
                signal.raise_signal(signal.SIGTERM)
                raise ValueError("the block's own error")  # wins; the noted signal is dropped
        assert seen == ["block", "handler", "after", "handler", "handler", "forced", "handler", "end"]
        assert signal.getsignal(signal.SIGTERM) is not signals._handle  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_error_in_a_stage_finalises_the_output_and_is_raised(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 60)
    out = tmp_path / "out.mp4"
    source = open_source(src)
    pipe = Pipeline(source, SleepyModel(fail_at=10, exc=ValueError("model broke")), VideoSink(out, source.fps),
                    draw=None)
    with pytest.raises(ValueError, match="model broke"):
        pipe.run()
    assert video_indices(out) == list(range(10))
    assert pipe.summary.error == "model broke" and not pipe.summary.interrupted


def test_an_error_while_drawing_stops_the_run(tmp_path: Path) -> None:
    frames = [indexed_frame(i) for i in range(30)]

    def bad_draw(frame: np.ndarray, result: Any) -> np.ndarray:
        if frame_index(frame) == 7:
            raise RuntimeError("no ink")
        return frame

    collect = Collect()
    with pytest.raises(RuntimeError, match="no ink"):
        run_pipeline(frames, SleepyModel(), collect, draw=bad_draw)
    assert collect.indices == list(range(7))


def test_a_live_source_slower_than_inference_drops_nothing() -> None:
    collect = Collect()
    camera = FakeCamera(period=0.05)  # 20 FPS against 1 ms inference: ample margin on busy CI cores
    summary = run_pipeline(camera, SleepyModel(delay=0.001), collect, draw=None, max_frames=16)
    assert summary.dropped == 0
    assert collect.indices == list(range(16))
    assert [r.result for r in collect.records] == list(range(16))
    assert camera.closed


def test_a_live_source_faster_than_inference_drops_stale_frames() -> None:
    collect = Collect()
    summary = run_pipeline(FakeCamera(period=0.002), SleepyModel(delay=0.02), collect, draw=None, max_frames=100)
    assert summary.dropped >= 40
    assert summary.frames_out + summary.dropped == summary.frames_in == 100
    assert collect.indices == sorted(set(collect.indices))  # newest first never; order kept
    assert collect.indices[-1] == 99  # the last frame is never dropped
    times = [r.timestamp for r in collect.records]
    assert times == sorted(times) and times[0] >= 0


def test_a_camera_that_disappears_is_retried_reported_and_its_output_kept(tmp_path: Path) -> None:
    out = tmp_path / "cam.mp4"
    warnings: list[str] = []
    camera = FakeCamera(period=0.005, fail_after=15)
    pipe = Pipeline(camera, SleepyModel(), VideoSink(out, 30.0), draw=None, reconnect_seconds=0.5,
                    on_warning=warnings.append)
    with pytest.raises(SourceError) as info:
        pipe.run()
    assert str(info.value) == (
        "fake-camera: stopped delivering frames and did not come back within 0.5 s; check the cable, the "
        "network or the device, the frames processed so far were kept")
    assert video_indices(out) == list(range(15))
    assert camera.reopened >= 2  # backoff: 0.1, 0.2, ... within 0.5 s
    assert warnings[0].startswith("fake-camera: no frame (read failed); reconnecting, attempt 1")
    assert "fake-camera: no such device" in warnings
    assert pipe.summary.frames_out == 15 and pipe.summary.error is not None
    assert no_partials(tmp_path)


def test_a_camera_that_comes_back_continues_the_stream() -> None:
    warnings: list[str] = []
    collect = Collect()
    camera = FakeCamera(period=0.002, fail_after=5, comes_back=True)
    summary = run_pipeline(camera, SleepyModel(), collect, draw=None, max_frames=12, reconnect_seconds=5,
                           on_warning=warnings.append)
    assert summary.reconnects == 1 and summary.frames_out + summary.dropped == 12
    assert any(w.startswith("fake-camera: back after") for w in warnings)


def test_corrupt_frames_are_skipped_and_counted() -> None:
    frames: list[Any] = [indexed_frame(i) for i in range(10)]
    frames[3] = None
    frames[5] = frames[5][:, :, 0]  # one channel
    frames[7] = frames[7].astype(np.float32)
    frames[8] = np.zeros((0, 5, 3), np.uint8)
    warnings: list[str] = []
    collect = Collect()
    summary = run_pipeline(IterableSource(frames), SleepyModel(), collect, draw=None, on_warning=warnings.append)
    assert collect.indices == [0, 1, 2, 4, 6, 9]
    assert (summary.frames_in, summary.frames_out, summary.corrupt, summary.dropped) == (10, 6, 4, 0)
    assert warnings[0].startswith("frame 3: skipped (1 so far): frame must be a numpy array")
    assert "4 corrupt skipped" in summary.describe()


def test_stages_overlap() -> None:
    """Inference of frame 1 runs while frame 0 is being drawn: the model waits for that drawing to
    start, which would never happen if the stages ran one after another (no clock is read; the
    speed-up is measured in benchmarks/pipeline_overlap.py)."""
    drawing_started = threading.Event()
    inference_saw_drawing: list[bool] = []
    drawing_released: list[bool] = []

    class WaitingModel:
        def __call__(self, frame: np.ndarray) -> int:
            index = frame_index(frame)
            if index == 1:
                inference_saw_drawing.append(drawing_started.wait(timeout=5))
            return index

    def draw(frame: np.ndarray, result: Any) -> np.ndarray:
        if result == 0:
            drawing_started.set()
            # stay in the drawing stage until inference of frame 1 has observed it
            deadline = time.monotonic() + 5
            while not inference_saw_drawing and time.monotonic() < deadline:
                time.sleep(0.001)
            # run one after another, drawing would only end here by timing out
            drawing_released.append(bool(inference_saw_drawing))
        return frame

    summary = run_pipeline([indexed_frame(i) for i in range(4)], WaitingModel(), Collect(), draw=draw)
    assert summary.frames_out == 4
    assert inference_saw_drawing == [True] and drawing_released == [True]


def test_a_sink_can_stop_the_run() -> None:
    class StopAfter(Collect):
        @property
        def stop_requested(self) -> bool:  # like a window's q key
            return len(self.records) >= 5

    sink = StopAfter()
    summary = run_pipeline([indexed_frame(i) for i in range(200)], SleepyModel(delay=0.002), sink, draw=None)
    assert 5 <= summary.frames_out < 200 and summary.error is None
    assert sink.indices == list(range(summary.frames_out))
    assert summary.frames_in == summary.frames_out  # frames already read are still processed


def test_hud_and_default_drawing() -> None:
    frame = indexed_frame(1, (240, 320))
    label_map = np.zeros((240, 320), np.uint8)
    label_map[100:, :] = 1
    sem = SemanticResult(label_map, ("sky", "road"), ((0, 0, 0), (200, 0, 0)))
    collect = Collect()
    run_pipeline([frame] * 3, lambda f: sem, collect, hud=True)
    image = collect.records[-1].image
    assert image is not None and image.shape == frame.shape
    assert not np.array_equal(image[150:], frame[150:])  # the road is tinted
    assert not np.array_equal(image[:20, -60:], frame[:20, -60:])  # the HUD's panel
    assert np.array_equal(frame, indexed_frame(1, (240, 320)))  # the source frame is untouched


def test_nothing_is_drawn_when_no_sink_needs_images() -> None:
    calls = []

    def count_draw(frame: np.ndarray, result: Any) -> np.ndarray:
        calls.append(1)
        return frame

    collect = CallbackSink(lambda r: None, needs_image=False)
    run_pipeline([indexed_frame(i) for i in range(5)], SleepyModel(), collect, draw=count_draw)
    assert not calls


def test_jsonl_results_through_the_pipeline(tmp_path: Path) -> None:
    h, w = HW
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 10:40, 20:60] = 1
    masks[1, 50:90, 70:128] = 1
    inst = InstanceResult(np.array([[20, 10, 60, 40], [70, 50, 128, 90]], np.float32),
                          np.array([0.9, 0.6], np.float32), np.array([1, 2], np.int32), masks,
                          ("__background__", "person", "dog"), ((0, 0, 0), (255, 0, 0), (0, 255, 0)))
    out = tmp_path / "results.jsonl"
    summary = run_pipeline([indexed_frame(i) for i in range(4)], lambda f: inst, JsonlSink(out))
    assert summary.frames_out == 4
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["frame"] for d in lines] == [0, 1, 2, 3]
    assert lines[1]["time"] == pytest.approx(1 / 25)
    first = lines[0]
    assert first["kind"] == "instance" and first["classes"] == ["person", "dog"] and first["labels"] == [1, 2]
    assert first["boxes"] == [[20, 10, 60, 40], [70, 50, 128, 90]]
    assert first["scores"] == pytest.approx([0.9, 0.6])
    for k in range(2):
        assert np.array_equal(rle.decode(first["masks"][k]), masks[k])


def test_summary_counts_add_up() -> None:
    s = RunSummary(frames_in=10, frames_out=7, dropped=2, corrupt=1, elapsed=2.0)
    assert s.fps == 3.5
    assert s.describe() == "done: 7 frame(s), 3.5 FPS, 2 dropped, 1 corrupt skipped"


def test_a_pipeline_runs_once() -> None:
    pipe = Pipeline([indexed_frame(0)], SleepyModel(), Collect(), draw=None)
    pipe.run()
    with pytest.raises(RuntimeError):
        pipe.run()


def test_sinks_are_closed_when_a_sink_fails(tmp_path: Path) -> None:
    class Broken(Sink):
        def emit(self, record: FrameRecord) -> None:
            if record.index == 3:
                raise OSError("disk full")

    out = tmp_path / "out.mp4"
    with pytest.raises(OSError, match="disk full"):
        run_pipeline([indexed_frame(i) for i in range(20)], SleepyModel(), [VideoSink(out, 10), Broken()], draw=None)
    assert video_indices(out) == [0, 1, 2, 3]  # the video sink got frame 3 before the broken one failed
    assert no_partials(tmp_path)


def test_results_carry_their_capture_times_and_latency(tmp_path: Path) -> None:
    """The capture times are taken when the source returned the frame; latency runs from then
    to the model's result (here a model that takes 30 ms); JSON lines and result objects agree."""
    from edgeseg.result import SemanticResult

    def model(frame: np.ndarray) -> SemanticResult:
        time.sleep(0.03)
        return SemanticResult(np.zeros(frame.shape[:2], np.uint8), ("background",), ((0, 0, 0),))

    camera = FakeCamera(period=0.05)
    collect = Collect()
    out = tmp_path / "r.jsonl"
    wall0, mono0 = time.time(), time.monotonic()
    run_pipeline(camera, model, [collect, JsonlSink(out)], max_frames=5)
    wall1, mono1 = time.time(), time.monotonic()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(collect.records) >= 3
    for line, record in zip(lines, collect.records, strict=True):
        capture = record.result.capture
        assert wall0 <= capture.time <= wall1 and mono0 <= capture.monotonic <= mono1
        assert 30.0 <= capture.latency_ms < 1000.0
        assert line["capture_time"] == pytest.approx(capture.time, abs=1e-5)
        assert line["capture_monotonic"] == pytest.approx(capture.monotonic, abs=1e-5)
        assert line["latency_ms"] == pytest.approx(capture.latency_ms, abs=1e-3)
    gaps = np.diff([r.result.capture.monotonic for r in collect.records])
    assert np.all(gaps > 0.03)  # one camera period apart, not the time they were written


def test_several_streams_share_one_model_and_a_dead_one_does_not_stop_the_others(tmp_path: Path) -> None:
    from edgeseg.pipeline import run_streams, shared

    calls: list[int] = []

    def model(frame: np.ndarray) -> int:
        calls.append(frame_index(frame))
        return frame_index(frame)

    outs = [Collect(), Collect(), Collect()]
    jsonl = tmp_path / "s1.jsonl"
    pipes = [
        Pipeline([indexed_frame(i) for i in range(20)], shared(model), outs[0], stream=0),
        Pipeline([indexed_frame(i) for i in range(30)], shared(model), [outs[1]], stream=1),
        Pipeline(FakeCamera(period=0.01, fail_after=3), shared(model), outs[2], stream=2,  # gone after 3 frames
                 reconnect_seconds=0),
    ]
    outcomes = run_streams(pipes)
    assert [o.stream for o in outcomes] == [0, 1, 2]
    assert outs[0].indices == list(range(20)) and outs[1].indices == list(range(30))
    assert outcomes[0].error is None and outcomes[1].error is None
    assert isinstance(outcomes[2].error, SourceError) and "fake-camera" in str(outcomes[2].error)
    assert outcomes[2].summary.frames_out >= 1  # what it delivered before dying was kept
    assert all(r.extra == {"stream": 1} for r in outs[1].records)
    # the JSON lines of a stream say which one it is
    run_pipeline([indexed_frame(0)], lambda f: None, JsonlSink(jsonl), stream=1)
    assert json.loads(jsonl.read_text())["stream"] == 1
