"""Soak: does a long run leak? ``python benchmarks/bench_soak.py [--frames 20000] [--cycles 100]``.

1. ``--frames`` frames of a looping clip through the full runtime (threaded runner, records sink,
   overlay) with the budget governor on: a fake thermal zone is heated and cooled every
   ``--period`` seconds, so the governor keeps switching methods, rates and scales and pausing
   (a paused file waits, so the heater is a thread, not a sink). A sampler sink
   reads RSS (``/proc/self/statm``), live threads and open file descriptors every ``--every``
   frames. Pass: after ``--warmup`` frames the least-squares RSS slope is <= 1 MB per 10,000
   frames, and threads and descriptors never exceed their count at the end of warm-up.
2. A camera that disappears and returns ``--cycles`` times: the clip through a real
   ``cv2.VideoCapture`` that stops delivering after a few frames (unplugged) and whose reopen
   fails a few times before it opens again (absent, then back), read by the runtime's own
   :class:`~edgesal.runtimes.sources.Source` with its reopen-and-backoff logic. Pass: exactly
   ``--cycles`` reopens, and threads and descriptors back where they started.

The model is the tiny synthetic one of the runtime tests (three methods, 32x32 input), so the
numbers measure the runtime around the model, not the model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_info  # noqa: E402
from edgesal.runtimes.errors import SourceError  # noqa: E402
from edgesal.runtimes.governor import Budget  # noqa: E402
from edgesal.runtimes.heap import limit_malloc_arenas  # noqa: E402
from edgesal.runtimes.model import MethodChain  # noqa: E402
from edgesal.runtimes.pipeline import Pipeline, PipelineConfig  # noqa: E402
from edgesal.runtimes.runner import Runner  # noqa: E402
from edgesal.runtimes.sinks import RecordsSink  # noqa: E402
from edgesal.runtimes.sources import Source, open_source  # noqa: E402
from tests.runtimes import synthetic  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_SLOPE_MB = 1.0  # per 10,000 frames


def usage() -> tuple[float, int, int]:
    """(RSS in MB, live threads, open file descriptors) of this process."""
    rss = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20
    return rss, threading.active_count(), len(os.listdir("/proc/self/fd"))


class Sampler:
    """A sink that samples :func:`usage` every ``every`` frames."""

    def __init__(self, every: int):
        self.every = every
        self.frames = 0
        self.samples: list[tuple[int, float, int, int]] = []

    def write(self, result) -> None:
        self.frames += 1
        if self.frames % self.every == 0:
            self.samples.append((self.frames, *usage()))

    def close(self) -> None:
        pass


def heat_and_cool(temp: Path, period: float, stop: threading.Event) -> threading.Thread:
    """Alternate the fake zone between 85 C and 40 C every ``period`` seconds until ``stop``."""

    def drive() -> None:
        hot = False
        while not stop.wait(period):
            hot = not hot
            temp.write_text("85000\n" if hot else "40000\n")

    thread = threading.Thread(target=drive, name="heater", daemon=True)
    thread.start()
    return thread


def slope_mb_per_10k(samples: list[tuple[int, float, int, int]], warmup: int) -> float:
    """Least-squares slope of RSS over frames after ``warmup``, in MB per 10,000 frames."""
    after = [(f, rss) for f, rss, *_ in samples if f > warmup]
    frames, rss = np.array(after, np.float64).T
    return float(np.polyfit(frames, rss, 1)[0] * 10_000)


def soak(args, folder: Path) -> dict:
    zone = folder / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("40000\n")
    clip = synthetic.write_video(folder / "clip.avi", synthetic.colour_frames(40, (96, 128)))
    methods = ("integrated", "vanilla", "gradcam")
    model = synthetic.build(folder / "m.onnx", size=32, methods=methods)
    config = PipelineConfig(
        budget=Budget(temp_limit=70, temp_hysteresis=5, dwell=0.2),
        thermal_dir=str(zone.parent),
        governor_interval=0.05,
    )
    pipeline = Pipeline(MethodChain.load([str(model)]), config)
    sampler = Sampler(args.every)
    records = RecordsSink(folder / "soak.salrec", {"bench": "soak"})
    runner = Runner(pipeline, open_source(str(clip), loop=True), [records, sampler])
    runner.max_frames = args.frames
    stop = threading.Event()
    heater = heat_and_cool(zone / "temp", args.period, stop)  # started before the runner, so
    start = time.perf_counter()  # its thread is in every count
    summary = runner.run(handle_signals=False)
    seconds = time.perf_counter() - start
    stop.set()
    heater.join()
    at_warmup = next(s for s in sampler.samples if s[0] >= args.warmup)
    after = [s for s in sampler.samples if s[0] >= args.warmup]
    return {
        "frames": summary.frames,
        "seconds": seconds,
        "maps": summary.maps,
        "decisions": summary.governor_decisions,
        "rss_warm": at_warmup[1],
        "rss_end": sampler.samples[-1][1],
        "rss_max": max(s[1] for s in after),
        "slope": slope_mb_per_10k(sampler.samples, args.warmup),
        "threads": (at_warmup[2], max(s[2] for s in after)),
        "fds": (at_warmup[3], max(s[3] for s in after)),
        "records_mb": (folder / "soak.salrec").stat().st_size / 2**20,
    }


class FlakyCamera:
    """The clip as a camera that is unplugged after ``frames`` frames (reads fail)."""

    def __init__(self, clip: Path, frames: int):
        self.cap = cv2.VideoCapture(str(clip))
        if not self.cap.isOpened():
            raise SourceError(f"cannot open {clip}")
        self.left = frames

    def read(self):
        self.left -= 1
        return self.cap.read() if self.left >= 0 else (False, None)

    def release(self) -> None:
        self.cap.release()


def camera_cycles(args, folder: Path) -> dict:
    clip = synthetic.write_video(folder / "cam.avi", synthetic.colour_frames(40, (96, 128)))
    attempts = {"n": 0}

    def opener():
        attempts["n"] += 1
        if attempts["n"] > 1 and attempts["n"] % 3 != 1:  # two failed reopens, then back
            raise SourceError("camera absent")
        return FlakyCamera(clip, 5)

    before = usage()
    source = Source("flaky-camera", opener, live=True, max_backoff=0.01)
    frames = 0
    start = time.perf_counter()
    for _ in source:
        frames += 1
        if source.reopens >= args.cycles:
            break
    source.close()
    seconds = time.perf_counter() - start
    after = usage()
    return {
        "reopens": source.reopens,
        "frames": frames,
        "failed_opens": attempts["n"] - 1 - source.reopens,
        "seconds": seconds,
        "threads": (before[1], after[1]),
        "fds": (before[2], after[2]),
        "rss": (before[0], after[0]),
    }


def report(args, soaked: dict, cycles: dict) -> tuple[str, bool]:
    ok_soak = (
        soaked["slope"] <= MAX_SLOPE_MB
        and soaked["threads"][1] <= soaked["threads"][0]
        and soaked["fds"][1] <= soaked["fds"][0]
    )
    ok_cycles = (
        cycles["reopens"] == args.cycles
        and cycles["threads"][1] <= cycles["threads"][0]
        and cycles["fds"][1] <= cycles["fds"][0]
    )
    lines = [
        f"Machine: {machine_info()}; shared with other jobs while measured (timings are loose).",
        "",
        "| soak | value |",
        "|---|---|",
        f"| frames (looping 40-frame clip, governor on) | {soaked['frames']} "
        f"in {soaked['seconds']:.0f} s ({soaked['frames'] / soaked['seconds']:.0f} fps) |",
        f"| maps / governor decisions | {soaked['maps']} / {soaked['decisions']} |",
        f"| RSS at warm-up ({args.warmup} frames) / end / max | {soaked['rss_warm']:.1f} / "
        f"{soaked['rss_end']:.1f} / {soaked['rss_max']:.1f} MB |",
        f"| RSS slope after warm-up | {soaked['slope']:+.3f} MB per 10,000 frames "
        f"(limit {MAX_SLOPE_MB}) |",
        f"| threads at warm-up / max after | {soaked['threads'][0]} / {soaked['threads'][1]} |",
        f"| file descriptors at warm-up / max after | {soaked['fds'][0]} / {soaked['fds'][1]} |",
        f"| records written | {soaked['records_mb']:.1f} MB |",
        f"| camera gone and back | {cycles['reopens']} reopens ({cycles['failed_opens']} failed "
        f"tries while absent), {cycles['frames']} frames, {cycles['seconds']:.1f} s |",
        f"| camera: threads / fds / RSS before -> after | {cycles['threads'][0]} -> "
        f"{cycles['threads'][1]} / {cycles['fds'][0]} -> {cycles['fds'][1]} / "
        f"{cycles['rss'][0]:.1f} -> {cycles['rss'][1]:.1f} MB |",
        "",
        f"soak {'PASS' if ok_soak else 'FAIL'}, camera cycles {'PASS' if ok_cycles else 'FAIL'}",
    ]
    return "\n".join(lines), ok_soak and ok_cycles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=4_000)
    parser.add_argument("--every", type=int, default=250, help="frames between samples")
    parser.add_argument("--period", type=float, default=3.0, help="seconds between heat/cool")
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    limit_malloc_arenas()  # as `edgesal run` does
    with tempfile.TemporaryDirectory(prefix="edgesal-soak-") as tmp:
        soaked = soak(args, Path(tmp))
        cycles = camera_cycles(args, Path(tmp))
    text, ok = report(args, soaked, cycles)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
