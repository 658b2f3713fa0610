"""The video pipeline: capture, inference, drawing and writing overlapped in threads.

::

    source --capture--> [slot | queue] --infer--> [queue] --draw--> [queue] --main thread: sinks

Each stage runs in its own thread (writing runs in the calling thread, so windows and Ctrl-C
behave), joined by bounded queues, so a frame is captured while the previous one is inferred,
the one before drawn and the one before that written: throughput is set by the slowest stage
alone. The heavy work (ONNX Runtime / TensorRT, OpenCV, numpy) releases the GIL.

Live sources (cameras, streams) hand over through a one-frame slot that keeps only the newest
frame: a stale frame is replaced and counted as dropped, so latency stays one frame. Files go
through a blocking queue: no frame is ever dropped and order is kept.

Stopping: end of stream drains every queue. An exception in a stage (or a KeyboardInterrupt
raised in one) stops capture, discards frames not yet inferred, draws and writes those already
inferred, closes every sink (videos are finalised and moved into place) and re-raises it from
:meth:`Pipeline.run`. Ctrl-C or SIGTERM in the calling thread (the CLI turns SIGTERM into
KeyboardInterrupt) writes what is already drawn, closes the sinks and re-raises. A live source
whose read fails is reopened with exponential backoff for ``reconnect_seconds``, with warnings;
if it does not come back the stream ends with :class:`SourceError` and the output is kept. A
corrupt frame (None, not HxWx3, not uint8) is skipped and counted. ``pipeline.summary`` holds the
counts whichever way ``run`` ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import draw as draw_module
from edgeseg import ranges
from edgeseg.deferred_signals import DeferredSignals
from edgeseg.errors import FrameError, SourceError
from edgeseg.frames import validate_frame
from edgeseg.progress import FrameProgress
from edgeseg.result import Capture, InstanceResult, SemanticResult
from edgeseg.sinks import FrameRecord, MultiSink, Sink
from edgeseg.sources import IterableSource, Source

log = logging.getLogger("edgeseg.pipeline")

FrameModel = Callable[[np.ndarray], Any]
DrawFn = Callable[[np.ndarray, Any], np.ndarray]

_END = object()  # end of stream, passed down the queues after the last frame
_POLL = 0.05  # seconds between checks of the stop flags while waiting on a queue


def default_draw(frame: np.ndarray, result: Any) -> np.ndarray:
    """:func:`edgeseg.draw.draw_result` for edgeseg results; the frame as it is otherwise.

    Looked up on the module at every call, so it can be replaced (tests monkeypatch it)."""
    if result is None or not hasattr(result, "palette"):
        return frame.copy()
    return draw_module.draw_result(frame, result)


@dataclass
class RunSummary:
    """What a run did. Counts are frames; ``elapsed`` is seconds from start to the sinks closing.

    ``frames_in``: frames read from the source (corrupt ones included). ``frames_out``: frames
    handed to the sinks. ``dropped``: stale frames a live source replaced before inference took
    them. ``corrupt``: unusable frames skipped. ``discarded``: frames read but abandoned because
    the run was stopped by an error or Ctrl-C. frames_in = frames_out + dropped + corrupt +
    discarded once ``run`` has returned. ``reconnects``: times a live source came back after
    failing. ``outputs``: files written. ``interrupted``: stopped by KeyboardInterrupt.
    ``error``: the message of the exception that ended the run, if any.
    """

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    corrupt: int = 0
    discarded: int = 0
    reconnects: int = 0
    elapsed: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    interrupted: bool = False
    error: str | None = None
    mean_latency: float = 0.0

    @property
    def fps(self) -> float:
        """Frames written per second of wall time."""
        return self.frames_out / self.elapsed if self.elapsed > 0 else 0.0

    def describe(self) -> str:
        """One line for people: ``done: 120 frame(s), 14.2 FPS, 3 dropped -> out.mp4``."""
        state = "interrupted after" if self.interrupted else "stopped after" if self.error else "done:"
        parts = [f"{state} {self.frames_out} frame(s), {self.fps:.1f} FPS"]
        if self.dropped:
            parts.append(f"{self.dropped} dropped")
        if self.corrupt:
            parts.append(f"{self.corrupt} corrupt skipped")
        if self.reconnects:
            parts.append(f"{self.reconnects} reconnect(s)")
        line = ", ".join(parts)
        if self.outputs:
            line += " -> " + ", ".join(str(p) for p in self.outputs)
        return line


class _Slot:
    """A one-item mailbox for live sources: ``put`` replaces an item nobody took yet (and says so),
    ``get`` waits for one. ``close`` lets the consumer take the last item, then ``_END``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store *item*; True if it replaced one never taken (a dropped frame)."""
        with self._cond:
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def get(self, timeout: float) -> Any:
        """The newest item, ``_END`` once closed and empty; raises queue.Empty after *timeout* s."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                raise queue.Empty
            if self._full:
                item, self._item, self._full = self._item, None, False
                return item
            return _END



@dataclass
class _Packet:
    index: int
    timestamp: float
    captured: float  # time.perf_counter() at capture
    frame: np.ndarray
    wall: float = 0.0  # time.time() at capture
    monotonic: float = 0.0  # time.monotonic() at capture
    result: Any = None
    image: np.ndarray | None = None


def with_capture(result: Any, packet: _Packet) -> Any:
    """*result* with its frame's capture times and the latency until now (edgeseg results only;
    other objects a custom model returns pass unchanged)."""
    if isinstance(result, (InstanceResult, SemanticResult)):
        latency_ms = (time.perf_counter() - packet.captured) * 1000.0
        return dataclasses.replace(result, capture=Capture(packet.wall, packet.monotonic, latency_ms))
    return result


class Pipeline:
    """Run *model* over *source* and hand every processed frame to *sinks*.

    *source*: a :class:`~edgeseg.sources.Source` (``open_source``), or any iterable of frames
    (read as a file unless wrapped in ``IterableSource(..., live=True)``). *model*: any callable
    frame -> result (an :class:`edgeseg.Model`, or a stand-in). *sinks*: one sink or several
    (:mod:`edgeseg.sinks`). *draw*: frame, result -> image (HxWx3 uint8 BGR), or None to pass the
    frame on undrawn; skipped when no sink needs images. *hud*: write FPS, latency and dropped
    frames in the image's top-right corner. *queue_size*: frames each queue between stages holds
    (default 1 for live sources, to keep latency low, 2 for files).
    *max_frames*: stop after reading this many frames. *reconnect_seconds*: how long a live source
    that stopped delivering is retried. *progress*: updated after each frame written.
    *on_warning*: called with a message for each reconnect attempt and corrupt frame (default:
    the ``edgeseg.pipeline`` logger). *close_source*: close the source when the run ends.

    :meth:`run` may be called once. :meth:`stop` (from any thread, e.g. a callback) ends the
    stream as if the source had ended.
    """

    def __init__(self, source: Source | Iterable[Any], model: FrameModel, sinks: Sink | Sequence[Sink] = (), *,
                 draw: DrawFn | None = default_draw, hud: bool = False, queue_size: int | None = None,
                 max_frames: int | None = None, reconnect_seconds: float = 10.0,
                 progress: FrameProgress | None = None, on_warning: Callable[[str], None] | None = None,
                 close_source: bool = True, stream: int | None = None) -> None:
        self.source: Source = source if isinstance(source, Source) else IterableSource(source)
        self._live = bool(self.source.live)
        if queue_size is None:
            # Live: every queued frame adds a frame of latency; files: a little slack absorbs jitter.
            queue_size = 1 if self._live else 2
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.model = model
        self.sink: Sink = sinks if isinstance(sinks, Sink) else MultiSink(list(sinks))
        self.draw = draw
        self.hud = hud
        self.max_frames = max_frames
        self.reconnect_seconds = ranges.check("reconnect_seconds", reconnect_seconds, 0)
        self.progress = progress
        self.warn: Callable[[str], None] = on_warning or log.warning
        self.close_source = close_source
        self.stream = stream
        self.summary = RunSummary()
        self._q_capture: Any = _Slot() if self._live else queue.Queue(maxsize=queue_size)
        self._q_infer: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._q_draw: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stop_capture = threading.Event()  # read no more frames; the rest drains normally
        self._abort = threading.Event()  # a stage failed: drop frames not yet inferred
        self._gone = threading.Event()  # the writer has stopped: nobody will take anything more
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._signals = DeferredSignals()
        self._started = False
        self._start_time = 0.0
        self._fps_ema = 0.0
        self._last_drawn = 0.0
        self._latency_sum = 0.0

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """End the stream gracefully: capture stops, frames already read are still processed."""
        self._stop_capture.set()

    def _fail(self, exc: BaseException, abort: bool = True) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = exc
        self._stop_capture.set()
        if abort:
            self._abort.set()

    def _put(self, q: Any, item: Any) -> bool:
        """Put into a bounded queue, giving up (False) if the writer has stopped."""
        while not self._gone.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: Any) -> Any:
        """Next item of *q*, or ``_END`` if the writer has stopped."""
        while not self._gone.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue
        return _END

    # -- stages --------------------------------------------------------------------------------

    def _read_live(self) -> tuple[bool, Any]:
        """Read a live source; on failure reopen it with exponential backoff (0.1 s doubling to
        2 s) for at most ``reconnect_seconds``, then raise :class:`SourceError`."""
        ok, frame = self.source.read()
        if ok:
            return ok, frame
        start = time.perf_counter()
        delay = 0.1
        attempt = 0
        while not self._stop_capture.is_set():
            waited = time.perf_counter() - start
            if waited >= self.reconnect_seconds:
                raise SourceError(
                    f"{self.source.uri}: stopped delivering frames and did not come back within "
                    f"{self.reconnect_seconds:g} s; check the cable, the network or the device, "
                    "the frames processed so far were kept")
            attempt += 1
            self.warn(f"{self.source.uri}: no frame (read failed); reconnecting, attempt {attempt} "
                      f"({waited:.1f} s of {self.reconnect_seconds:g} s)")
            self._stop_capture.wait(min(delay, max(0.0, self.reconnect_seconds - waited)))
            delay = min(delay * 2, 2.0)
            if self._stop_capture.is_set():
                break
            try:
                self.source.reopen()
                ok, frame = self.source.read()
            except SourceError as exc:
                self.warn(str(exc))
                continue
            if ok:
                self.summary.reconnects += 1
                self.warn(f"{self.source.uri}: back after {time.perf_counter() - start:.1f} s")
                return ok, frame
        return False, None

    def _capture(self) -> None:
        q = self._q_capture
        fps = self.source.fps or 25.0
        index = 0
        try:
            while not self._stop_capture.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                ok, frame = self._read_live() if self._live else self.source.read()
                if not ok:
                    break
                captured, wall, monotonic = time.perf_counter(), time.time(), time.monotonic()
                self.summary.frames_in += 1
                try:
                    frame = validate_frame(frame)
                except FrameError as exc:
                    self.summary.corrupt += 1
                    if self.summary.corrupt == 1 or self.summary.corrupt % 100 == 0:
                        self.warn(f"frame {index}: skipped ({self.summary.corrupt} so far): {exc}")
                    index += 1
                    continue
                stamp = captured - self._start_time if self._live else index / fps
                packet = _Packet(index, stamp, captured, frame, wall, monotonic)
                index += 1
                if self._live:
                    if q.put(packet):
                        self.summary.dropped += 1
                elif not self._put(q, packet):
                    return
        except BaseException as exc:
            # The frames read so far are still processed (a camera gone keeps its video).
            self._fail(exc, abort=False)
        finally:
            if self._live:
                q.close()
            else:
                self._put(q, _END)

    def _infer(self) -> None:
        try:
            while not self._abort.is_set():
                packet = self._get(self._q_capture)
                if packet is _END:
                    break
                packet.result = with_capture(self.model(packet.frame), packet)
                if not self._put(self._q_infer, packet):
                    return
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._put(self._q_infer, _END)

    def _draw_stage(self) -> None:
        needs_image = self.sink.needs_image
        try:
            while True:
                packet = self._get(self._q_infer)
                if packet is _END:
                    break
                if needs_image:
                    packet.image = self.draw(packet.frame, packet.result) if self.draw else packet.frame
                    if self.hud:
                        if packet.image is packet.frame:
                            packet.image = packet.frame.copy()
                        self._draw_hud(packet)
                if not self._put(self._q_draw, packet):
                    return
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._put(self._q_draw, _END)

    def _draw_hud(self, packet: _Packet) -> None:
        now = time.perf_counter()
        if self._last_drawn:
            rate = 1.0 / max(now - self._last_drawn, 1e-6)
            # Smoothed over ~10 frames so the number is readable.
            self._fps_ema = rate if not self._fps_ema else 0.9 * self._fps_ema + 0.1 * rate
        self._last_drawn = now
        assert packet.image is not None
        lines = draw_module.hud_lines(self._fps_ema or None, (now - packet.captured) * 1e3,
                                      self.summary.dropped if self._live else None)
        draw_module.draw_hud(packet.image, lines)

    # -- the writer (calling thread) -----------------------------------------------------------

    def _emit(self, packet: _Packet) -> None:
        latency = time.perf_counter() - packet.captured
        # Written and counted as one step: Ctrl-C between the two would leave the outputs one frame
        # ahead of the summary.
        with self._signals.held():
            self.sink.emit(FrameRecord(packet.index, packet.timestamp, packet.frame, packet.result, packet.image,
                                       latency, {} if self.stream is None else {"stream": self.stream}))
            self.summary.frames_out += 1
            self._latency_sum += latency
            if self.progress is not None:
                self.progress.update()
        if self.sink.stop_requested:
            self.stop()

    def run(self) -> RunSummary:
        """Process the whole stream; returns the summary, or re-raises what stopped the run
        after every sink is closed (``self.summary`` is then still complete)."""
        if self._started:
            raise RuntimeError("a Pipeline runs once; make a new one")
        self._started = True
        self._start_time = time.perf_counter()
        threads = [threading.Thread(target=fn, name=f"edgeseg-{name}", daemon=True)
                   for name, fn in (("capture", self._capture), ("infer", self._infer), ("draw", self._draw_stage))]
        for t in threads:
            t.start()
        try:
            with self._signals:
                interrupt = self._write_all(threads)
        finally:
            self.summary.elapsed = time.perf_counter() - self._start_time
        error = self._error if interrupt is None else interrupt
        self.summary.interrupted = isinstance(error, KeyboardInterrupt)
        if error is not None:
            self.summary.error = str(error) or type(error).__name__
            raise error
        return self.summary

    def _write_all(self, threads: list[threading.Thread]) -> BaseException | None:
        """Write every frame to the sinks until the end of the stream, then finish; returns the
        Ctrl-C / SIGTERM / sink error that stopped the writing, if any."""
        interrupt: BaseException | None = None
        try:
            while True:
                packet = self._get(self._q_draw)
                if packet is _END:
                    break
                self._emit(packet)
        except BaseException as exc:  # Ctrl-C / SIGTERM here, or a sink failed
            interrupt = exc
            self._fail(exc)
            if isinstance(exc, KeyboardInterrupt):
                with contextlib.suppress(KeyboardInterrupt):  # another Ctrl-C: already stopping
                    self._write_ready()
        finally:
            try:
                # Held from the first line: a second Ctrl-C must not cut the finalisation short
                # (a third forces).
                with self._signals.held():
                    self._gone.set()
                    self._stop_capture.set()
                    self._finish(threads)
            except KeyboardInterrupt as exc:
                interrupt = interrupt or exc
        return interrupt

    def _write_ready(self) -> None:
        """After Ctrl-C: write the frames already drawn, without waiting for more."""
        while True:
            try:
                packet = self._q_draw.get_nowait()
            except queue.Empty:
                return
            if packet is _END:
                return
            self._emit(packet)

    def _finish(self, threads: list[threading.Thread]) -> None:
        """Close the sinks, let the stages end, close the source, settle the counts."""
        try:
            self.sink.close()
        finally:
            for t in threads:
                # A stage stuck in a model call or a blocking read is left to finish on its own
                # (daemon thread); the outputs are already final.
                t.join(timeout=2.0)
            if self.close_source and not threads[0].is_alive():
                self.source.close()
            if self.progress is not None:
                self.progress.finish()
            s = self.summary
            s.outputs = self.sink.paths
            s.mean_latency = self._latency_sum / s.frames_out if s.frames_out else 0.0
            # Whatever was read and neither written, dropped nor skipped was abandoned in flight.
            s.discarded = max(0, s.frames_in - s.frames_out - s.dropped - s.corrupt)


def run_pipeline(source: Source | Iterable[Any], model: FrameModel, sinks: Sink | Sequence[Sink] = (),
                 **options: Any) -> RunSummary:
    """``Pipeline(source, model, sinks, **options).run()``."""
    return Pipeline(source, model, sinks, **options).run()


class _OneAtATime:
    """A model whose backend cannot run from several threads at once, called under a lock."""

    def __init__(self, model: FrameModel) -> None:
        self.model = model
        self._lock = threading.Lock()

    def __call__(self, frame: np.ndarray) -> Any:
        with self._lock:
            return self.model(frame)


def shared(model: FrameModel) -> FrameModel:
    """*model* as several streams may call it: as it is where its backend runs concurrently
    (ONNX Runtime: one session serves every stream's inference thread), else serialised."""
    backend = getattr(model, "backend", None)
    return model if getattr(backend, "concurrent_runs", False) else _OneAtATime(model)


@dataclass
class StreamOutcome:
    """How one stream of :func:`run_streams` ended: its summary and the error that stopped it."""

    stream: int
    uri: str
    summary: RunSummary
    error: BaseException | None = None


def run_streams(pipelines: Sequence[Pipeline]) -> list[StreamOutcome]:
    """Run several pipelines (one per stream, usually sharing one model: :func:`shared`) side by
    side until all end. A stream that fails (a camera gone for good) is reported in its outcome
    and the others go on; Ctrl-C stops them all, each finalising its outputs."""
    outcomes = [StreamOutcome(p.stream if p.stream is not None else i, p.source.uri, p.summary)
                for i, p in enumerate(pipelines)]

    def work(i: int) -> None:
        try:
            outcomes[i].summary = pipelines[i].run()
        except BaseException as exc:  # reported per stream; the others keep running
            outcomes[i].error = exc

    threads = [threading.Thread(target=work, args=(i,), name=f"edgeseg-stream-{i}", daemon=True)
               for i in range(len(pipelines))]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    except KeyboardInterrupt:
        # Every stream stops as at its end and finalises its outputs; another Ctrl-C meanwhile is
        # held (pressing it twice more forces), since the process would otherwise end with the
        # stream threads mid-write.
        with contextlib.suppress(KeyboardInterrupt), DeferredSignals() as signals, signals.held():
            for p in pipelines:
                p.stop()
            for t in threads:
                t.join()
        for o in outcomes:
            o.summary.interrupted = True
    return outcomes
