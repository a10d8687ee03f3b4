"""Start ``python -m edgesal.runtimes run ...`` in the background and find its status page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def runtime_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgesal.runtimes", *args]


def start_server(
    *args: str, timeout: float = 30.0, seen: list[str] | None = None
) -> tuple[subprocess.Popen, str]:
    """Launch a run with ``--serve 127.0.0.1:0`` and return it with its status page URL.

    ``seen`` collects the lines the run printed up to the URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        runtime_cmd("run", *args, "--serve", "127.0.0.1:0", "--display", "no"),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stderr.readline()
        if seen is not None:
            seen.append(line)
        if match := re.search(r"status page: (https?://\S+)", line):
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"runtime did not start serving: {proc.stderr.read()}")


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM the run and return what it printed after (the summary)."""
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return (out or "") + (proc.stderr.read() if proc.stderr and not proc.stderr.closed else "")
