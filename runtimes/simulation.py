"""Simulated device conditions for firmware examples and CI: a thermal zone that follows a
temperature profile, written where ``--thermal-dir`` points.

The profile is a list of (seconds, degrees C) points; the temperature is interpolated linearly
between them and held after the last one. Files are replaced atomically, as sysfs reads are.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HEAT_AND_COOL = [(0.0, 50.0), (1.0, 85.0), (3.0, 85.0), (4.0, 45.0)]


class ThermalSimulator:
    """``with ThermalSimulator(profile) as folder:`` -> a fake ``/sys/class/thermal``."""

    def __init__(
        self, profile: list[tuple[float, float]] = HEAT_AND_COOL, folder: str | None = None
    ):
        self.profile = profile
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if not folder:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgesal-thermal-")
            folder = self._tmp.name
        self.folder = Path(folder)
        self.zone = self.folder / "thermal_zone0"
        self.zone.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thermal-sim", daemon=True)
        self.write(profile[0][1])

    def temperature(self, elapsed: float) -> float:
        times, temps = zip(*self.profile, strict=True)
        return float(np.interp(elapsed, times, temps))

    def write(self, celsius: float) -> None:
        tmp = self.zone / "temp.tmp"
        tmp.write_text(f"{int(celsius * 1000)}\n")
        tmp.replace(self.zone / "temp")

    def _run(self) -> None:
        start = time.time()
        while not self._stop.wait(0.1):
            self.write(self.temperature(time.time() - start))

    def __enter__(self) -> Path:
        self._thread.start()
        return self.folder

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._tmp is not None:
            self._tmp.cleanup()


def stop_after(seconds: float | None) -> None:
    """Send this process SIGINT after ``seconds`` (a run then ends with its summary)."""
    if not seconds:
        return
    import os
    import signal

    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()


def run_example(flags: list[str], simulate: bool, seconds: float | None) -> int:
    """``edgesal run`` with ``flags`` for a firmware example, stopped after ``seconds``; with
    ``simulate``, against a fake thermal zone that heats past the limit and cools."""
    from edgesal.runtimes.cli import main as runtime_main

    stop_after(seconds)
    if not simulate:
        return runtime_main(flags)
    with ThermalSimulator() as thermal:
        return runtime_main([*flags, "--thermal-dir", str(thermal)])
