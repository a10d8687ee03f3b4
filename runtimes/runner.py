"""The threaded run loop: capture -> inference -> render/outputs, joined by bounded queues.

Three stages overlap so the slowest sets the pace. Live sources (cameras, streams, and files
with ``realtime``) keep one slot per queue and the newest frame replaces an unprocessed one, so
latency cannot grow; files and folders block instead, so every frame is processed and recorded in
order. ``workers`` > 1 runs the model on that many frames at once (one session, several calls in
flight): on a small CPU this beats splitting one call over several threads, because a network
this size keeps intra-op threads waiting on each other. Frames still leave inference in order.
SIGINT/SIGTERM (or :meth:`Runner.stop`) end the run cleanly: sources are closed, queues drained,
outputs finalised, and a summary is returned.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from edgesal.runtimes.pipeline import FrameResult, Pipeline
from edgesal.runtimes.progress import ProgressBar
from edgesal.runtimes.sinks import RecordsSink, Sink
from edgesal.runtimes.sources import Frame, Source
from edgesal.runtimes.stats import StreamStats

log = logging.getLogger("edgesal.runtimes.runner")
END = object()


class LatestQueue:
    """A bounded queue; in ``newest_wins`` mode a put on a full queue drops the oldest item."""

    def __init__(self, size: int, newest_wins: bool, on_drop: Callable[[], None]):
        self.q: queue.Queue = queue.Queue(maxsize=size)
        self.newest_wins, self.on_drop = newest_wins, on_drop

    def put(self, item: object, stop: threading.Event) -> bool:
        """Queue ``item``; False when ``stop`` was set first. END is always delivered: blocking
        while the run goes on (files lose no frame), dropping the oldest item once stopping."""
        while item is END or not stop.is_set():
            try:
                if self.newest_wins:
                    self.q.put_nowait(item)
                else:
                    self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self.newest_wins or stop.is_set():
                    self._drop_oldest()
        return False

    def _drop_oldest(self) -> None:
        try:
            old = self.q.get_nowait()
        except queue.Empty:
            return
        if old is END:  # never lose the end marker
            self.q.put_nowait(old)
        else:
            self.on_drop()

    def get(self) -> object:
        return self.q.get()


@dataclass
class Summary:
    frames: int
    maps: int
    dropped: int
    corrupt: int
    reopens: int
    selfchecks: int
    unfaithful: int
    seconds: float
    fps: float
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    model_ms_p50: float | None
    governor_decisions: int
    stopped_by: str

    def text(self) -> str:
        return "\n".join(f"{k.replace('_', ' ')}: {_fmt(v)}" for k, v in asdict(self).items())


class TurnGate:
    """Lets threads pass one at a time in ticket order (0, 1, 2, ...), whatever order they
    arrive in; ``stop``, when given and set, releases everyone."""

    def __init__(self):
        self._next = 0
        self._cond = threading.Condition()

    def wait(self, ticket: int, stop: threading.Event | None) -> None:
        with self._cond:
            while self._next != ticket and not (stop is not None and stop.is_set()):
                self._cond.wait(0.1)

    def done(self, ticket: int) -> None:
        with self._cond:
            self._next = max(self._next, ticket + 1)
            self._cond.notify_all()


class Runner:
    """Runs ``pipeline`` on ``source`` into ``sinks`` until the source ends or ``stop``."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: Source,
        sinks: list[Sink],
        realtime: bool = False,
        max_frames: int | None = None,
        progress: ProgressBar | None = None,
        workers: int = 1,
    ):
        if workers < 1:
            raise ValueError(f"--workers {workers}: must be at least 1")
        self.pipeline, self.source, self.sinks = pipeline, source, sinks
        self.workers = workers
        self.live = source.live or realtime
        self.realtime = realtime and not source.live
        self.max_frames = max_frames
        self.progress = progress
        self.stats = StreamStats()
        self._stop = threading.Event()
        self.stopped_by = "end of source"
        drop = lambda: self.stats.count("dropped")  # noqa: E731
        # Files: two slots per queue keep every stage busy (as fast as four on the stream
        # benchmark) while holding fewer frames in memory and in the capture-to-output latency.
        self._frames = LatestQueue(1 if self.live else 2, self.live, drop)
        self._results = LatestQueue(1 if self.live else 2, self.live, drop)
        self.error: BaseException | None = None
        self._take = threading.Lock()  # frames are taken and prepared in order
        self._tickets = 0
        self._gate = TurnGate()  # and finished in the same order
        self._running = workers
        self._running_lock = threading.Lock()

    def stop(self, reason: str = "stop requested") -> None:
        if not self._stop.is_set():
            self.stopped_by = reason
            log.info("stopping: %s", reason)
        self._stop.set()
        self.source.stop_event.set()

    def status(self) -> dict:
        """The live numbers for the status page, JSON endpoint and metrics."""
        snap = self.stats.snapshot()
        variant = self.pipeline.variant
        snap.update(
            corrupt=self.source.corrupt,
            reopens=self.source.reopens,
            source=self.source.name,
            method=variant.method,
            backend=variant.backend.name,
            models=self.pipeline.chain.describe(),
            governor=self.pipeline.governor.snapshot(),
        )
        return snap

    def _capture(self) -> None:
        start, first = time.time(), None
        try:
            for frame in self.source:
                if self.realtime and self.source.fps > 0:
                    first = frame.index if first is None else first
                    delay = start + (frame.index - first) / self.source.fps - time.time()
                    if delay > 0 and self._stop.wait(delay):
                        break
                if not self._frames.put(frame, self._stop):
                    break
                if self.max_frames is not None and frame.index + 1 >= self.max_frames:
                    self.stopped_by = f"--max-frames {self.max_frames}"
                    break
        except BaseException as exc:  # reported by run()
            self.error = exc
        finally:
            self._frames.put(END, self._stop)

    def _infer(self) -> None:
        try:
            while self._infer_one():
                pass
        except BaseException as exc:
            self.error = exc
            self.stop("error in inference")
        finally:
            with self._running_lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self._results.put(END, self._stop)

    def _infer_one(self) -> bool:
        """Take the next frame, run it, pass it on in order; False at the end of the source."""
        with self._take:
            item = self._frames.get()
            if item is END:
                self._frames.put(END, self._stop)  # the other workers end too
                return False
            frame: Frame = item
            if self._stop.is_set() and self.live:
                return True
            ticket, self._tickets = self._tickets, self._tickets + 1
            job = self.pipeline.prepare(frame.image, frame.index, frame.time)
        try:
            while job.result.state.paused and not self.live and not self._stop.is_set():
                time.sleep(0.2)  # a file waits for the governor to resume: no frame lost
                with self._take:
                    job = self.pipeline.prepare(frame.image, frame.index, frame.time)
            self.pipeline.run(job)
            # a file keeps its order even while stopping; a live source may let go of it
            self._gate.wait(ticket, self._stop if self.live else None)
            result = self.pipeline.finish(job)
            self._results.put(result, self._stop)
        finally:
            self._gate.done(ticket)
        return True

    def _render(self) -> None:
        try:
            while True:
                item = self._results.get()
                if item is END:
                    break
                self._output(item)
        except BaseException as exc:
            self.error = exc
            self.stop("error in output")

    def _output(self, result: FrameResult) -> None:
        self.pipeline.render(result)
        for sink in self.sinks:
            sink.write(result)
            if isinstance(sink, RecordsSink):
                sink.decisions(self.pipeline.governor.snapshot()["decisions"])
        inf = result.inference
        if result.fresh_map:
            self.stats.count("maps")
        if result.check is not None:
            self.stats.count("selfchecks")
            self.stats.count("unfaithful", int(not result.check.faithful))
        latency = time.time() - result.captured
        self.stats.frame_done(latency, inf.seconds if inf else None, _brief(result))
        if self.progress:
            self.progress.update(self.stats.counters["frames"], self.stats.fps())

    def run(self, handle_signals: bool = True) -> Summary:
        """Run to the end; returns the summary. Re-raises an error from any stage."""
        previous = self._install_signals() if handle_signals else {}
        stages = [("capture", self._capture)]
        stages += [(f"inference-{i}", self._infer) for i in range(self.workers)]
        stages += [("render", self._render)]
        threads = [threading.Thread(target=t, name=n, daemon=True) for n, t in stages]
        started = time.time()
        try:
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                threads[-1].join(timeout=0.2)
        finally:
            self.stop(self.stopped_by)
            for thread in threads:
                thread.join(timeout=5.0)
            self.source.close()
            for sink in self.sinks:
                sink.close()
            if self.progress:
                self.progress.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.error is not None:
            raise self.error
        return self._summary(time.time() - started)

    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda s, _f: self.stop(signal.Signals(s).name))
        return previous

    def _summary(self, seconds: float) -> Summary:
        snap = self.stats.snapshot()
        return Summary(
            frames=snap["frames"],
            maps=snap["maps"],
            dropped=snap["dropped"],
            corrupt=self.source.corrupt,
            reopens=self.source.reopens,
            selfchecks=snap["selfchecks"],
            unfaithful=snap["unfaithful"],
            seconds=seconds,
            fps=snap["frames"] / seconds if seconds > 0 else 0.0,
            latency_ms_p50=snap["latency_ms"]["p50"],
            latency_ms_p95=snap["latency_ms"]["p95"],
            model_ms_p50=snap["model_ms"]["p50"],
            governor_decisions=len(self.pipeline.governor.decisions),
            stopped_by=self.stopped_by,
        )


def _fmt(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _brief(result: FrameResult) -> dict:
    return {
        "frame": result.index,
        "label": result.label or "(paused)",
        "score": result.score,
        "map": result.fresh_map,
        "faithful": result.check.faithful if result.check else None,
        "method": result.inference.method if result.inference else None,
    }
