"""Records that survive the device: a full disk or a file-size limit stops the run cleanly with
every complete frame readable, and a writer killed at 50 random points loses no frame it had
written (the OS page cache keeps what ``write`` returned; power loss is what ``--fsync-every``
is for, docs/salrec.md)."""

from __future__ import annotations

import errno
import os
import random
import resource
import signal
import subprocess
import time

import numpy as np
import pytest

from edgesal.runtimes import records, sinks
from edgesal.runtimes.errors import OutputError
from edgesal.runtimes.records import RecordReader, RecordWriter, valid_end
from tests.runtimes.clihelp import ROOT, runtime_cmd


def test_disk_full_mid_record_is_cut_back_and_reported(tmp_path, monkeypatch):
    """ENOSPC after part of a record went out: the part is cut, the error says what happened,
    and a later writer (space freed) appends after the last complete frame."""
    path = tmp_path / "full.salrec"
    writer = RecordWriter(path, {"source": "test"})
    rng = np.random.default_rng(0)
    for i in range(3):
        writer.frame({"frame": i}, rng.random((32, 32), dtype=np.float32))
    real_write, budget = os.write, [400]

    def short_disk(fd, data):
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(data), budget[0])
        budget[0] -= n
        return real_write(fd, data[:n])

    monkeypatch.setattr(records.os, "write", short_disk)
    with pytest.raises(OutputError, match=r"disk full \(ENOSPC\) after 4 records.*every complete"):
        writer.frame({"frame": 3}, rng.random((32, 32), dtype=np.float32))
    writer.close()
    monkeypatch.setattr(records.os, "write", real_write)
    end, size = valid_end(path)
    assert end == size  # no torn tail left behind
    assert [f.meta["frame"] for f in RecordReader(path).frames()] == [0, 1, 2]
    again = RecordWriter(path, {"source": "after cleanup"})
    again.frame({"frame": 3})
    again.close()
    assert [f.meta["frame"] for f in RecordReader(path).frames()] == [0, 1, 2, 3]


def _limit_file_size(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_file_size_limit_stops_a_run_cleanly(models, video, tmp_path):
    """RLIMIT_FSIZE stands in for a small disk: the run ends with exit 2 and a one-line error,
    and the records hold every frame up to there, in order, with no torn tail."""
    path = tmp_path / "limited.salrec"
    limit = 120_000
    proc = subprocess.run(
        runtime_cmd("run", str(models["vanilla"]), "--source", str(video), "--loop")
        + ["--display", "no", "--records", str(path), "--max-frames", "100000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(limit),
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "file size limit reached (EFBIG)" in proc.stderr
    assert "keeps every complete record" in proc.stderr
    reader = RecordReader(path)
    frames = [f.meta["frame"] for f in reader.frames()]
    assert len(frames) > 10 and frames == list(range(len(frames)))
    assert reader.truncated_bytes == 0 and path.stat().st_size <= limit


def test_video_stops_before_the_disk_is_full(tmp_path, monkeypatch):
    class Nearly:
        f_bavail, f_frsize = 100, 4096

    class Result:
        overlay = np.zeros((16, 16, 3), np.uint8)

    sink = sinks.VideoSink(tmp_path / "v.avi", 10.0)
    sink.write(Result())
    monkeypatch.setattr(sinks.os, "statvfs", lambda _path: Nearly())
    sink.frames = sinks.DISK_CHECK_EVERY
    with pytest.raises(OutputError, match=r"disk nearly full \(0 MiB free\) after 30 frames"):
        sink.write(Result())
    sink.close()


def _writer(path, run: int, acks: int) -> None:
    """In a forked child: append frames forever, writing each acknowledged index to ``acks``."""
    try:
        writer = RecordWriter(path, {"run": run})
        rng = np.random.default_rng(run)
        os.write(acks, b"ready\n")
        i = 0
        while True:
            writer.frame({"frame": i, "run": run}, rng.random((240, 320), np.float32))
            os.write(acks, f"{i}\n".encode())  # acknowledged: the write of frame i returned
            i += 1
    finally:
        os._exit(1)


def _kill_one_writer(path, run: int, delay: float) -> int:
    """Fork a writer, SIGKILL it ``delay`` s after it starts; the frames it acknowledged."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _writer(path, run, write_end)
    os.close(write_end)
    with os.fdopen(read_end) as acks:
        assert acks.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        lines = acks.read().split()
    return int(lines[-1]) + 1 if lines else 0


@pytest.mark.slow
def test_kill_9_at_50_random_points_loses_no_written_frame(tmp_path):
    """50 writers append to one file, each killed (SIGKILL) after a random 0-250 ms of writing;
    every frame a writer acknowledged is read back, with its map, in every run."""
    path, rng = tmp_path / "killed.salrec", random.Random(50)
    acked: dict[int, int] = {}
    torn = 0
    for run in range(50):
        if path.exists():
            end, size = valid_end(path)
            torn += end < size
        acked[run] = _kill_one_writer(path, run, rng.uniform(0.0, 0.25))
    got: dict[int, list[int]] = {}
    for frame in RecordReader(path).frames():
        got.setdefault(frame.meta["run"], []).append(frame.meta["frame"])
        assert frame.saliency.shape == (240, 320)
    lost = {run: n - len(got.get(run, [])) for run, n in acked.items() if len(got.get(run, [])) < n}
    assert not lost, f"frames lost per run: {lost}"
    for run, frames in got.items():
        assert frames == list(range(len(frames))), run
    print(f"acknowledged {sum(acked.values())} frames, read {sum(map(len, got.values()))}")
    print(f"torn tails cut by the next writer: {torn} of 50 kills")
