"""The bounded RIFF/WAVE reader against scipy.io.wavfile as the independent writer, plus
hand-made headers: 24-bit, WAVE_FORMAT_EXTENSIBLE, and broken files refused by name."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edgesal.runtimes.audio_sources import read_wav
from edgesal.runtimes.errors import SourceError

wavfile = pytest.importorskip("scipy.io.wavfile")
RNG = np.random.default_rng(3)


@pytest.mark.parametrize(
    "dtype,scale", [("float32", 1.0), ("float64", 1.0), ("int16", 32768), ("int32", 2**31)]
)
def test_scipy_written_files(tmp_path, dtype, scale):
    stereo = RNG.uniform(-0.9, 0.9, (500, 2))
    data = (stereo * scale).astype(dtype) if scale != 1.0 else stereo.astype(dtype)
    wavfile.write(tmp_path / "x.wav", 22050, data)
    samples, rate = read_wav(tmp_path / "x.wav")
    assert rate == 22050
    expected = data.astype(np.float64).mean(axis=1) / scale
    np.testing.assert_allclose(samples, expected, rtol=1e-6, atol=1e-9)


def test_unsigned_8_bit(tmp_path):
    data = np.array([0, 128, 255], np.uint8)
    wavfile.write(tmp_path / "u8.wav", 8000, data)
    np.testing.assert_allclose(read_wav(tmp_path / "u8.wav")[0], [-1.0, 0.0, 127 / 128])


def riff(fmt: bytes, data: bytes, extra: bytes = b"") -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_24_bit_extensible_and_odd_chunks(tmp_path):
    values = np.array([0, 1, -1, 2**23 - 1, -(2**23)], np.int64)
    data = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in values)
    guid = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 48000, 3, 24, 22, 24, 4) + guid
    odd = b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd size: padded to even
    (tmp_path / "x24.wav").write_bytes(riff(fmt, data, odd))
    samples, rate = read_wav(tmp_path / "x24.wav")
    assert rate == 16000
    np.testing.assert_allclose(samples, values / 2**23)


def test_broken_files_are_refused_by_name(tmp_path):
    pcm16 = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    cases = {
        "text.wav": (b"hello world, not audio", "not a RIFF/WAVE file"),
        "nodata.wav": (riff(pcm16, b"")[:-8], "needs a 'fmt ' and a 'data' chunk"),
        "adpcm.wav": (
            riff(struct.pack("<HHIIHH", 2, 1, 8000, 4000, 1, 8), b"\x00" * 4),
            "wav format 2",
        ),  # fmt: skip
        "align.wav": (
            riff(struct.pack("<HHIIHH", 1, 2, 8000, 16000, 2, 16), b"\x00" * 4),
            "inconsistent format",
        ),  # fmt: skip
        "past.wav": (b"RIFF\x00\x00\x00\x00WAVEfmt \xff\xff\x00\x00" + pcm16, "past the end"),
    }
    for name, (blob, message) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(SourceError, match=message):
            read_wav(tmp_path / name)


def test_truncated_data_keeps_the_whole_samples(tmp_path):
    pcm16 = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    blob = riff(pcm16, np.array([1000, -1000, 2000], "<i2").tobytes())
    (tmp_path / "cut.wav").write_bytes(blob[:-1])  # half of the last sample missing
    np.testing.assert_allclose(read_wav(tmp_path / "cut.wav")[0], [1000 / 32768, -1000 / 32768])


def test_mutated_files_fail_only_by_name(tmp_path):
    """Random byte flips, truncations and size-field rewrites of a valid file: the reader
    returns samples or raises SourceError, nothing else (no IndexError, no huge allocation)."""
    wavfile.write(tmp_path / "ok.wav", 8000, (RNG.uniform(-1, 1, (64, 2)) * 3e4).astype("int16"))
    valid = (tmp_path / "ok.wav").read_bytes()
    rng = np.random.default_rng(11)
    path = tmp_path / "m.wav"
    for _ in range(400):
        blob = bytearray(valid)
        kind = rng.integers(3)
        if kind == 0:
            for at in rng.integers(0, len(blob), rng.integers(1, 6)):
                blob[at] = int(rng.integers(256))
        elif kind == 1:
            blob = blob[: rng.integers(0, len(blob))]
        else:  # a size field (RIFF, fmt, data) set to something large or odd
            at = int(rng.choice([4, 16, 40]))
            blob[at : at + 4] = struct.pack("<I", int(rng.integers(0, 2**32)))
        path.write_bytes(bytes(blob))
        try:
            samples, _ = read_wav(path)
        except SourceError:
            continue
        assert samples.ndim == 1 and samples.size <= len(blob)
