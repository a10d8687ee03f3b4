"""The .salrec format: round trip within the quantization step, appends, torn tails, kill -9."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgesal.runtimes.errors import RecordsError
from edgesal.runtimes.records import (
    HEADER,
    MAGIC,
    SYNC,
    VERSION,
    RecordReader,
    RecordWriter,
    quantize,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bits", [8, 16])
def test_round_trip_within_half_a_step(tmp_path, bits):
    rng = np.random.default_rng(bits)
    maps = [rng.random((24, 32)).astype(np.float32) * (i + 1) - i for i in range(5)]
    writer = RecordWriter(tmp_path / "a.salrec", {"model": "m"}, bits=bits)
    for i, m in enumerate(maps):
        writer.frame({"frame": i, "score": 0.5}, m)
    writer.close()
    frames = list(RecordReader(tmp_path / "a.salrec").frames())
    assert [f.meta["frame"] for f in frames] == list(range(5))
    for original, frame in zip(maps, frames, strict=True):
        scale = frame.meta["map"]["scale"]
        assert scale == pytest.approx((original.max() - original.min()) / (2**bits - 1), rel=1e-5)
        assert np.abs(frame.saliency - original).max() <= scale / 2 + 1e-6
        assert frame.header["model"] == "m"


def test_constant_map_and_frames_without_map(tmp_path):
    writer = RecordWriter(tmp_path / "c.salrec", {})
    writer.frame({"frame": 0}, np.full((4, 4), 0.25, np.float32))
    writer.frame({"frame": 1})
    writer.close()
    a, b = RecordReader(tmp_path / "c.salrec").frames()
    np.testing.assert_allclose(a.saliency, 0.25)
    assert b.saliency is None and "map" not in b.meta


def test_quantize_uses_the_full_range():
    q, scale, offset = quantize(np.array([[0.0, 0.5], [1.0, 2.0]], np.float32), 8)
    assert q.dtype == np.uint8 and q.max() == 255 and q.min() == 0 and offset == 0.0


def test_append_after_a_torn_tail_keeps_every_complete_record(tmp_path):
    path = tmp_path / "t.salrec"
    writer = RecordWriter(path, {"run": 1})
    for i in range(3):
        writer.frame({"frame": i}, np.eye(5, dtype=np.float32))
    writer.close()
    full = path.stat().st_size
    with open(path, "ab") as handle:  # half of a record, as a killed writer leaves it
        handle.write(b"SREC\x02\x01\x00\x00\x40\x00\x00\x00")
    reader = RecordReader(path)
    assert len(list(reader.frames())) == 3 and reader.truncated_bytes == path.stat().st_size - full
    writer = RecordWriter(path, {"run": 2})
    writer.frame({"frame": 3})
    writer.close()
    reader = RecordReader(path)
    assert [f.meta["frame"] for f in reader.frames()] == [0, 1, 2, 3]
    assert [h["run"] for h in reader.headers()] == [1, 2] and reader.truncated_bytes == 0


def test_corrupt_record_stops_reading_at_the_last_good_one(tmp_path):
    path = tmp_path / "x.salrec"
    writer = RecordWriter(path, {})
    for i in range(4):
        writer.frame({"frame": i}, np.ones((3, 3), np.float32) * i)
    writer.close()
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF  # flip a byte of the last record's payload: its CRC fails
    path.write_bytes(bytes(blob))
    assert [f.meta["frame"] for f in RecordReader(path).frames()] == [0, 1, 2]


def test_not_a_records_file(tmp_path):
    path = tmp_path / "video.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    with pytest.raises(RecordsError, match="not a .salrec"):
        RecordReader(path)
    with pytest.raises(RecordsError, match="cannot read"):
        RecordReader(tmp_path / "absent.salrec")


def test_newer_major_version_is_refused(tmp_path):
    path = tmp_path / "v.salrec"
    body = b"{}"
    head = HEADER.pack(SYNC, 2, VERSION + 1, 0, len(body), 0, 0)[:16]
    crc = zlib.crc32(body, zlib.crc32(head))
    path.write_bytes(MAGIC + head + struct.pack("<I", crc) + body)
    with pytest.raises(RecordsError, match=f"format version {VERSION + 1}"):
        list(RecordReader(path).frames())


WRITER = """
import sys, time, numpy as np
from edgesal.runtimes.records import RecordWriter
w = RecordWriter(sys.argv[1], {"model": "kill-test"})
rng = np.random.default_rng(0)
i = 0
while True:
    w.frame({"frame": i}, rng.random((120, 160), dtype=np.float32))
    i += 1
    if i == 20:
        print("ready", flush=True)
"""


def test_kill_9_mid_run_leaves_every_complete_frame_readable(tmp_path):
    path = tmp_path / "k.salrec"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    frames = list(RecordReader(path).frames())
    assert len(frames) >= 20
    assert [f.meta["frame"] for f in frames] == list(range(len(frames)))
    rng = np.random.default_rng(0)
    for frame in frames:
        expected = rng.random((120, 160), dtype=np.float32)
        assert np.abs(frame.saliency - expected).max() <= frame.meta["map"]["scale"] / 2 + 1e-6
