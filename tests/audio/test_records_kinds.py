"""``.salrec`` version 2: non-image map kinds, written at the lowest version that describes them,
so version-1 readers keep reading image streams and stop, by name, at audio/series/tabular ones."""

from __future__ import annotations

import numpy as np
import pytest

from edgesal.runtimes import records
from edgesal.runtimes.errors import RecordsError
from edgesal.runtimes.records import HEADER, MAGIC, RecordReader, RecordWriter


def versions(path) -> list[int]:
    """The version byte of every record, parsed from the raw bytes."""
    blob, pos, out = path.read_bytes(), len(MAGIC), []
    while pos < len(blob):
        _sync, _kind, version, _flags, meta_len, data_len, _crc = HEADER.unpack_from(blob, pos)
        out.append(version)
        pos += HEADER.size + meta_len + data_len
    return out


def test_non_image_kinds_round_trip_at_version_2(tmp_path):
    rng = np.random.default_rng(0)
    maps = {
        "time_frequency": rng.random((98, 40)).astype(np.float32),
        "series": rng.random((200, 3)).astype(np.float32),
        "tabular": rng.random(13).astype(np.float32),
    }
    path = tmp_path / "a.salrec"
    writer = RecordWriter(path, {"modality": "audio"}, bits=16)
    for i, (kind, value) in enumerate(maps.items()):
        writer.frame({"frame": i, "map": {"kind": kind, "axes": ["time"]}}, value)
    writer.close()
    reader = RecordReader(path)
    assert reader.headers()[0]["version"] == 2
    frames = list(reader.frames())
    assert [f.kind for f in frames] == list(maps)
    for frame, value in zip(frames, maps.values(), strict=True):
        scale = frame.meta["map"]["scale"]
        np.testing.assert_allclose(frame.saliency, value, atol=scale / 2 + 1e-7)
    assert versions(path) == [2, 2, 2, 2]


def test_image_streams_stay_version_1(tmp_path):
    path = tmp_path / "img.salrec"
    writer = RecordWriter(path, {"source": "0"})
    writer.frame({"frame": 0, "map": {"region": [0, 0, 4, 4]}}, np.eye(4, dtype=np.float32))
    writer.frame({"frame": 1})
    writer.close()
    assert versions(path) == [1, 1, 1]
    assert [f.kind for f in RecordReader(path).frames()] == ["image", "image"]


def test_a_version_1_reader_stops_at_an_audio_stream(tmp_path, monkeypatch):
    path = tmp_path / "mixed.salrec"
    writer = RecordWriter(path, {"source": "0"})
    writer.frame({"frame": 0}, np.ones((2, 2), np.float32))
    writer.close()
    writer = RecordWriter(path, {"modality": "audio"})  # appended stream
    writer.frame({"frame": 0, "map": {"kind": "time_frequency"}}, np.ones((3, 2), np.float32))
    writer.close()
    monkeypatch.setattr(records, "VERSION", 1)
    seen = []
    with pytest.raises(RecordsError, match="format version 2; this reader knows up to 1"):
        for record in RecordReader(path):
            seen.append(record.kind)
    assert seen == ["header", "frame"]  # the image stream before it was read


def test_unknown_map_kind_is_refused(tmp_path):
    writer = RecordWriter(tmp_path / "x.salrec", {})
    with pytest.raises(RecordsError, match="unknown map kind 'sonar'"):
        writer.frame({"frame": 0, "map": {"kind": "sonar"}}, np.ones(3, np.float32))
    writer.close()
