"""Audio sources: a ``.wav`` file or a microphone, cut into the windows an audio model reads.

Each source iterates :class:`edgesal.runtimes.sources.Frame` objects whose ``image`` is one window
of mono float samples in [-1, 1] at the model's sample rate (the runner treats a window as a
frame). A wav file is read by a small bounded RIFF reader (PCM 8/16/24/32-bit, IEEE float
32/64-bit, any channel count, averaged to mono); a rate other than the model's is resampled and
the run logs it,
or, with ``resample=False``, refused - never silently fed at the wrong rate. The microphone
(``--source mic`` or ``mic:DEVICE``) goes through the ``sounddevice`` package, imported only then,
at the model's rate.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesal.runtimes.audio import resample
from edgesal.runtimes.errors import SourceError
from edgesal.runtimes.sources import Frame

log = logging.getLogger("edgesal.runtimes.audio_sources")
AUDIO_SUFFIXES = (".wav", ".wave")
MICROPHONE = ("mic", "microphone")
MAX_WAV_BYTES = 64 << 20  # read whole (x8 as float64): 35 min of 16-bit mono at 16 kHz
PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE


@dataclass(frozen=True)
class Windowing:
    """``window`` samples every ``stride`` samples at ``rate`` Hz."""

    rate: int
    window: int
    stride: int

    @property
    def windows_per_second(self) -> float:
        return self.rate / self.stride


def is_audio_spec(spec: str) -> bool:
    spec = spec.strip().lower()
    return spec.endswith(AUDIO_SUFFIXES) or spec.split(":")[0] in MICROPHONE


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float64 samples, sample rate) of a RIFF/WAVE file: PCM 8/16/24/32-bit or IEEE
    float 32/64-bit (also as WAVE_FORMAT_EXTENSIBLE), any channel count (averaged).

    Chunks are walked by their declared sizes with every size checked against the file, so a
    truncated or hostile header cannot make the reader allocate more than the file holds."""
    try:
        blob = Path(path).read_bytes() if Path(path).stat().st_size <= MAX_WAV_BYTES else None
    except OSError as exc:
        raise SourceError(f"--source {path}: cannot read ({exc})") from None
    if blob is None:
        raise SourceError(f"--source {path}: larger than {MAX_WAV_BYTES >> 20} MiB; split the file")
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise SourceError(f"--source {path}: not a RIFF/WAVE file")
    chunks = _chunks(blob, path)
    if b"fmt " not in chunks or b"data" not in chunks:
        raise SourceError(f"--source {path}: a wav file needs a 'fmt ' and a 'data' chunk")
    fmt = chunks[b"fmt "]
    if len(fmt) < 16:
        raise SourceError(f"--source {path}: 'fmt ' chunk of {len(fmt)} bytes (needs 16)")
    code, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", fmt)
    if code == EXTENSIBLE and len(fmt) >= 26:
        code = struct.unpack_from("<H", fmt, 24)[0]  # the sub-format GUID's first two bytes
    width = bits // 8
    if channels < 1 or rate < 1 or width < 1 or bits % 8 or align != channels * width:
        raise SourceError(
            f"--source {path}: inconsistent format ({channels} channels, {bits} bits, "
            f"block {align} bytes, {rate} Hz)"
        )
    data = chunks[b"data"]
    data = data[: len(data) - len(data) % align]
    samples = _decode(data, code, width, path).reshape(-1, channels).mean(axis=1)
    return samples, rate


def _chunks(blob: bytes, path: str | Path) -> dict[bytes, bytes]:
    """The first chunk of each id after the RIFF header (ids padded to even sizes)."""
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(blob):
        name, size = blob[pos : pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = blob[pos + 8 : pos + 8 + size]
        if len(body) < size and name != b"data":
            raise SourceError(f"--source {path}: chunk {name!r} runs past the end of the file")
        chunks.setdefault(name, body)  # a truncated 'data' chunk keeps what is there
        pos += 8 + size + (size & 1)
    return chunks


def _decode(data: bytes, code: int, width: int, path: str | Path) -> np.ndarray:
    """PCM (8-bit unsigned, 16/24/32-bit signed) or IEEE float -> float64, full scale 1."""
    if code == FLOAT and width in (4, 8):
        return np.frombuffer(data, np.dtype(f"<f{width}")).astype(np.float64)
    if code != PCM:
        raise SourceError(f"--source {path}: wav format {code} (readable: PCM 1, IEEE float 3)")
    if width == 1:
        return (np.frombuffer(data, np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)
    if width in (2, 4):
        ints = np.frombuffer(data, np.dtype(f"<i{width}"))
        return ints.astype(np.float64) / float(1 << (8 * width - 1))
    raise SourceError(f"--source {path}: {8 * width}-bit PCM is not read (8, 16, 24, 32)")


class AudioSource:
    """Windows of a wav file (in order, then the end) or a live microphone; the runner's
    ``Source`` interface (``name``, ``live``, ``total``, ``fps``, ``stop_event``, ``close``)."""

    def __init__(self, name: str, windows: Iterator[np.ndarray], live: bool, total, fps: float):
        self.name, self.live, self.total, self.fps = name, live, total, fps
        self.loop = False
        self.corrupt = 0
        self.reopens = 0
        self.stop_event = threading.Event()
        self._windows = windows
        self._closers: list = []

    def __iter__(self) -> Iterator[Frame]:
        for index, samples in enumerate(self._windows):
            if self.stop_event.is_set():
                return
            yield Frame(index, samples, time.time())

    def close(self) -> None:
        self.stop_event.set()
        for closer in self._closers:
            closer()
        self._closers.clear()


def open_audio_source(
    spec: str, windowing: Windowing, resample_rate: bool = True, loop: bool = False
) -> AudioSource:
    """``clip.wav`` or ``mic`` / ``mic:DEVICE`` cut into ``windowing`` windows."""
    spec = spec.strip()
    if not is_audio_spec(spec):
        raise SourceError(f"--source {spec}: an audio model reads a .wav file or mic[:DEVICE]")
    if spec.lower().split(":")[0] in MICROPHONE:
        device = spec.split(":", 1)[1] if ":" in spec else None
        return _microphone(spec, device, windowing)
    path = Path(spec)
    if not path.is_file():
        raise SourceError(f"--source {spec}: no such wav file")
    samples, rate = read_wav(path)
    if rate != windowing.rate:
        if not resample_rate:
            raise SourceError(
                f"--source {spec}: sampled at {rate} Hz but the model expects "
                f"{windowing.rate} Hz (resampling was turned off)"
            )
        log.warning("%s: resampled from %d Hz to the model's %d Hz", spec, rate, windowing.rate)
        samples = resample(samples, rate, windowing.rate)
    starts = window_starts(samples.size, windowing)
    windows = _file_windows(samples, starts, windowing.window, loop)
    total = None if loop else len(starts)
    return AudioSource(spec, windows, False, total, windowing.windows_per_second)


def window_starts(count: int, windowing: Windowing) -> list[int]:
    """Start of every whole window; a clip shorter than one window gets one (zero-padded)."""
    last = max(count - windowing.window, 0)
    return list(range(0, last + 1, windowing.stride))


def _file_windows(
    samples: np.ndarray, starts: list[int], size: int, loop: bool
) -> Iterator[np.ndarray]:
    while True:
        for start in starts:
            window = samples[start : start + size].astype(np.float32)
            if window.size < size:
                window = np.pad(window, (0, size - window.size))
            yield window
        if not loop:
            return


def _microphone(spec: str, device: str | None, windowing: Windowing) -> AudioSource:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise SourceError(
            f"--source {spec}: the microphone needs the sounddevice package and PortAudio "
            f"(pip install sounddevice; on Debian/Raspberry Pi OS also apt install "
            f"libportaudio2): {exc}"
        ) from None
    ring = SampleRing(windowing)
    target = int(device) if device and device.isdigit() else device
    try:
        stream = sounddevice.InputStream(
            samplerate=windowing.rate,
            channels=1,
            dtype="float32",
            device=target,
            callback=lambda data, _frames, _time, _status: ring.push(data[:, 0]),
        )
        stream.start()
    except Exception as exc:  # PortAudioError, ValueError (unknown device): both bad input
        raise SourceError(f"--source {spec}: cannot open the microphone ({exc})") from None
    source = AudioSource(spec, ring.windows(), True, None, windowing.windows_per_second)
    source._closers += [ring.close, stream.stop, stream.close]
    ring.stop_event = source.stop_event
    return source


class SampleRing:
    """Samples pushed by the audio callback thread; :meth:`windows` yields the newest window
    each time ``stride`` new samples have arrived (older windows are dropped: newest wins)."""

    def __init__(self, windowing: Windowing):
        self.windowing = windowing
        self.buffer = np.zeros(windowing.window, np.float32)
        self.fresh = 0
        self.cond = threading.Condition()
        self.stop_event = threading.Event()
        self.closed = False

    def push(self, samples: np.ndarray) -> None:
        with self.cond:
            samples = samples[-self.buffer.size :]
            self.buffer = np.concatenate([self.buffer[samples.size :], samples])
            self.fresh += samples.size
            self.cond.notify_all()

    def windows(self) -> Iterator[np.ndarray]:
        while True:
            with self.cond:
                while self.fresh < self.windowing.stride and not self._ended():
                    self.cond.wait(0.1)
                if self._ended():
                    return
                self.fresh = 0
                window = self.buffer.copy()
            yield window

    def _ended(self) -> bool:
        return self.closed or self.stop_event.is_set()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
