"""Audio front end on the device: samples -> (log-)mel features, numpy only.

``features = cmvn(lfr(log(mel @ |rfft(window * frame)|^power + log_offset)))``, computed per
window of audio. The parameters live in the model's metadata (``edgesal.audio``, JSON fields of
:class:`FrontEnd`), so the device computes exactly the features the model was trained on:

- framing: a frame is ``win_length`` samples every ``hop_length``, optionally after
  pre-emphasis ``x[n] - a x[n-1]``; ``center`` pads ``n_fft // 2`` samples on both sides by
  reflection (as librosa and torch.stft do). Kaldi's order inside each frame instead:
  ``remove_dc`` subtracts the frame's mean, then ``frame_preemphasis`` applies the pre-emphasis
  within the frame (its first sample times ``1 - a``). The windowed frame is zero-padded at its
  end to ``n_fft`` (Kaldi's convention; librosa centres the window inside ``n_fft`` instead - the
  two agree when ``win_length == n_fft``). Windows: periodic ``hann`` and ``hamming``, Kaldi's
  ``povey`` (``hann ** 0.85``), ``rect``.
- mel: ``n_mels`` triangular filters between ``fmin`` and ``fmax``, spaced on the ``htk``
  (``2595 log10(1 + f / 700)``) or ``slaney`` (linear below 1 kHz, logarithmic above) scale, the
  triangles drawn in Hz (as librosa's and torchaudio's filter banks); ``mel_norm`` ``slaney``
  scales each to unit area. ``kaldi``: the HTK scale (``1127 ln(1 + f / 700)``) with the
  triangles drawn in mel and the Nyquist bin left out, as Kaldi's ``MelBanks``. ``n_mels`` 0
  keeps the ``n_fft // 2 + 1`` linear bins.
- log: ``none``, ``ln``, ``log10`` or ``db`` (``10 log10``) of ``max(x + log_offset, log_floor)``.
- LFR (low frame rate, FunASR): stack ``lfr_m`` frames every ``lfr_n`` frames, the first frame
  repeated ``(lfr_m - 1) // 2`` times in front and the last frame repeated behind as needed.
- CMVN: ``(x + shift) * scale`` per feature, read from a file next to the model: JSON
  ``{"mean": [...], "std": [...]}`` or ``{"shift": [...], "scale": [...]}``, or a Kaldi nnet
  text ``am.mvn`` (``<AddShift>`` and ``<Rescale>`` vectors, as FunASR ships).

The model input's frame count fixes how many samples one window holds
(:meth:`FrontEnd.window_samples`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from edgesal.runtimes.errors import ModelError

META_KEY = "audio"
WINDOWS = ("hann", "hamming", "povey", "rect")
LOGS = ("none", "ln", "log10", "db")
MEL_SCALES = ("htk", "slaney", "kaldi")
LAYOUTS = ("NTF", "NFT", "NCTF", "NCFT")
MAX_CMVN_BYTES = 16 << 20
MAX_FFT, MAX_MELS, MAX_RATE, MAX_LFR = 1 << 16, 4096, 768000, 256  # bounds on hostile metadata


@dataclass(frozen=True)
class FrontEnd:
    """Front-end parameters (``edgesal.audio`` metadata); see the module docstring."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    window: str = "hann"
    center: bool = False
    preemphasis: float = 0.0
    remove_dc: bool = False  # Kaldi: subtract each frame's mean first
    frame_preemphasis: bool = False  # Kaldi: pre-emphasis within each frame
    power: float = 2.0
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float = 0.0  # 0: sample_rate / 2
    mel_scale: str = "htk"
    mel_norm: str = "none"
    log: str = "ln"
    log_offset: float = 0.0
    log_floor: float = 1e-10
    lfr_m: int = 1
    lfr_n: int = 1
    cmvn: str = ""  # file name, relative to the model file
    layout: str = ""  # model input axes: NTF, NFT, NCTF or NCFT (default: from the input rank)
    stride: float = 0.0  # seconds between windows of a stream (0: one window length)

    @classmethod
    def from_meta(cls, data: object, where: str) -> FrontEnd:
        """The ``edgesal.audio`` metadata entry; unknown fields or bad values name ``where``."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: edgesal.audio must be a JSON object, got {data!r:.80}")
        defaults = {f.name: f.default for f in fields(cls)}
        unknown = sorted(set(data) - set(defaults))
        if unknown:
            raise ModelError(f"{where}: edgesal.audio has unknown field(s) {unknown}")
        for name, value in data.items():
            if not _same_kind(value, defaults[name]):
                raise ModelError(
                    f"{where}: edgesal.audio {name} {value!r:.40}: expected "
                    f"{type(defaults[name]).__name__}"
                )
        front = cls(**data)
        front.check(where)
        return front

    def check(self, where: str) -> None:
        """Refuse parameters that cannot describe a front end, naming the field."""
        problems = []
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.win_length <= 0:
            problems.append("sample_rate, win_length and hop_length must be > 0")
        if self.n_fft < self.win_length:
            problems.append(f"n_fft {self.n_fft} < win_length {self.win_length}")
        for name, value, allowed in (
            ("window", self.window, WINDOWS),
            ("log", self.log, LOGS),
            ("mel_scale", self.mel_scale, MEL_SCALES),
            ("mel_norm", self.mel_norm, ("none", "slaney")),
        ):
            if value not in allowed:
                problems.append(f"{name} {value!r} (choose {', '.join(allowed)})")
        if self.layout and self.layout not in LAYOUTS:
            problems.append(f"layout {self.layout!r} (choose {', '.join(LAYOUTS)})")
        if self.n_mels < 0 or self.lfr_m < 1 or self.lfr_n < 1:
            problems.append("n_mels >= 0, lfr_m >= 1 and lfr_n >= 1")
        if self.n_fft > MAX_FFT or self.n_mels > MAX_MELS or self.sample_rate > MAX_RATE:
            problems.append(f"n_fft <= {MAX_FFT}, n_mels <= {MAX_MELS}, sample_rate <= {MAX_RATE}")
        if max(self.lfr_m, self.lfr_n) > MAX_LFR:
            problems.append(f"lfr_m and lfr_n <= {MAX_LFR}")
        if self.n_mels and not 0 <= self.fmin < self.top_hz <= self.sample_rate / 2:
            problems.append(
                f"0 <= fmin < fmax <= sample_rate/2 (fmin {self.fmin}, fmax {self.fmax})"
            )
        if problems:
            raise ModelError(f"{where}: edgesal.audio: {'; '.join(problems)}")

    @property
    def top_hz(self) -> float:
        return self.fmax if self.fmax > 0 else self.sample_rate / 2

    @property
    def bins(self) -> int:
        """Features per frame before LFR stacking."""
        return self.n_mels or self.n_fft // 2 + 1

    @property
    def features(self) -> int:
        return self.bins * self.lfr_m

    def raw_frames(self, frames: int) -> int:
        """STFT frames needed for ``frames`` model frames (after LFR)."""
        return (frames - 1) * self.lfr_n + 1 if self.lfr_n > 1 or self.lfr_m > 1 else frames

    def window_samples(self, frames: int) -> int:
        """Samples of one model window of ``frames`` feature frames."""
        raw = self.raw_frames(frames)
        if self.center:
            return (raw - 1) * self.hop_length + 1
        return (raw - 1) * self.hop_length + self.win_length

    def stride_samples(self, frames: int) -> int:
        """Samples between the starts of consecutive stream windows."""
        if self.stride > 0:
            return max(1, round(self.stride * self.sample_rate))
        return self.window_samples(frames)


def _same_kind(value: object, default: object) -> bool:
    """JSON value fits the field: bools for bools, whole numbers for ints, numbers for floats."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, type(default))


def window_function(kind: str, length: int) -> np.ndarray:
    """Periodic window of ``length`` samples (float64): hann, hamming, povey, rect."""
    n = np.arange(length, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / length)
    if kind == "hann":
        return hann
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(2 * np.pi * n / length)
    if kind == "povey":
        return (0.5 - 0.5 * np.cos(2 * np.pi * n / (length - 1))) ** 0.85
    return np.ones(length)


def hz_to_mel(hz: np.ndarray | float, scale: str) -> np.ndarray:
    """HTK: ``2595 log10(1 + f/700)``; Slaney: ``3 f / 200`` below 1 kHz, ``15 + 27 ln(f/1000) /
    ln 6.4`` above (Slaney's Auditory Toolbox, as librosa's default)."""
    hz = np.asarray(hz, np.float64)
    if scale in ("htk", "kaldi"):
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz >= 1000.0, log_part, linear)


def mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, np.float64)
    if scale in ("htk", "kaldi"):
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    linear = mel * 200.0 / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0)
    return np.where(mel >= 15.0, log_part, linear)


def mel_filters(front: FrontEnd) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangles, peak 1 (or unit area with ``mel_norm`` slaney)."""
    freqs = np.arange(front.n_fft // 2 + 1) * front.sample_rate / front.n_fft
    low, high = hz_to_mel(front.fmin, front.mel_scale), hz_to_mel(front.top_hz, front.mel_scale)
    if front.mel_scale == "kaldi":
        return _kaldi_filters(hz_to_mel(freqs, "kaldi"), np.linspace(low, high, front.n_mels + 2))
    edges = mel_to_hz(np.linspace(low, high, front.n_mels + 2), front.mel_scale)
    rising = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if front.mel_norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def _kaldi_filters(mels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Kaldi's ``MelBanks``: triangles in the mel domain over bins 0 .. n_fft/2 - 1."""
    rising = (mels[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - mels[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[:, -1] = 0.0  # Kaldi leaves the Nyquist bin out
    return weights


def read_cmvn(path: Path, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) from a JSON or Kaldi ``am.mvn`` file; lengths must equal ``dims``."""
    if not path.is_file():
        raise ModelError(f"edgesal.audio cmvn: no such file {path}")
    if path.stat().st_size > MAX_CMVN_BYTES:
        raise ModelError(f"edgesal.audio cmvn {path}: larger than 16 MB")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        shift, scale = _cmvn_vectors(text)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelError(f"edgesal.audio cmvn {path}: not a CMVN file ({exc})") from None
    if shift.size != dims or scale.size != dims:
        raise ModelError(
            f"edgesal.audio cmvn {path}: {shift.size} shifts and {scale.size} scales for "
            f"{dims} features"
        )
    return shift, scale


def _cmvn_vectors(text: str) -> tuple[np.ndarray, np.ndarray]:
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        if "mean" in data:
            std = np.asarray(data["std"], np.float64)
            if np.any(std <= 0):
                raise ValueError("every std must be > 0")
            return -np.asarray(data["mean"], np.float64), 1.0 / std
        return np.asarray(data["shift"], np.float64), np.asarray(data["scale"], np.float64)
    vectors = {}
    for tag in ("AddShift", "Rescale"):
        match = re.search(rf"<{tag}>[^\[]*\[([^\]]*)\]", text)
        if match is None:
            raise ValueError(f"no <{tag}> vector")
        vectors[tag] = np.array(match.group(1).split(), np.float64)
    return vectors["AddShift"], vectors["Rescale"]


def lfr(features: np.ndarray, m: int, n: int) -> np.ndarray:
    """FunASR low frame rate: output frame i stacks input frames ``i n - (m-1)//2 ... + m - 1``
    (clamped to the first and last frame); ``ceil(T / n)`` output frames."""
    count = features.shape[0]
    out = math.ceil(count / n)
    index = np.arange(out)[:, None] * n + np.arange(m)[None, :] - (m - 1) // 2
    stacked = features[np.clip(index, 0, count - 1)]
    return stacked.reshape(out, m * features.shape[1])


class FeatureExtractor:
    """Callable: float samples in [-1, 1] (1-D) -> features [T, F] float32; constants cached."""

    def __init__(self, front: FrontEnd, base: Path | None = None):
        self.front = front
        self.window = window_function(front.window, front.win_length)
        self.filters = mel_filters(front).astype(np.float32) if front.n_mels else None
        self.cmvn = None
        if front.cmvn:
            path = Path(front.cmvn) if base is None else base / front.cmvn
            self.cmvn = tuple(v.astype(np.float32) for v in read_cmvn(path, front.features))

    def spectrum(self, samples: np.ndarray) -> np.ndarray:
        """|rfft|^power per frame: [frames, n_fft // 2 + 1] float64."""
        f = self.front
        x = np.asarray(samples, np.float64)
        if f.preemphasis and not f.frame_preemphasis:
            x = np.concatenate([x[:1] * (1 - f.preemphasis), x[1:] - f.preemphasis * x[:-1]])
        if f.center:
            x = np.pad(x, f.n_fft // 2, mode="reflect")
        if x.size < f.win_length:
            raise ModelError(f"audio window of {x.size} samples is shorter than one frame")
        frames = np.lib.stride_tricks.sliding_window_view(x, f.win_length)[:: f.hop_length]
        if f.remove_dc:
            frames = frames - frames.mean(axis=1, keepdims=True)
        if f.preemphasis and f.frame_preemphasis:
            first = frames[:, :1] * (1 - f.preemphasis)
            frames = np.concatenate([first, frames[:, 1:] - f.preemphasis * frames[:, :-1]], 1)
        magnitude = np.abs(np.fft.rfft(frames * self.window, n=f.n_fft, axis=1))
        return magnitude if f.power == 1 else magnitude**f.power

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        f = self.front
        spec = self.spectrum(samples).astype(np.float32)
        # einsum's own loops, not BLAS: a 100 x 257 x 40 product took 17 ms in OpenBLAS's
        # threads on a loaded 2-core machine and 2.4 ms this way
        x = np.einsum("tk,mk->tm", spec, self.filters) if self.filters is not None else spec
        x = _log(x, f)
        if f.lfr_m > 1 or f.lfr_n > 1:
            x = lfr(x, f.lfr_m, f.lfr_n)
        if self.cmvn is not None:
            x = (x + self.cmvn[0]) * self.cmvn[1]
        return np.ascontiguousarray(x, np.float32)


def _log(x: np.ndarray, f: FrontEnd) -> np.ndarray:
    if f.log == "none":
        return x
    x = np.maximum(x + np.float32(f.log_offset), np.float32(f.log_floor))
    if f.log == "ln":
        return np.log(x)
    return np.log10(x) * (10.0 if f.log == "db" else 1.0)


def input_layout(front: FrontEnd, rank: int, axes: str = "") -> str:
    """The model input's axes: ``edgesal.audio`` ``layout``, else the export's ``edgesal.axes``
    (``N,T,F`` ...) when it names time and frequency, else NTF (rank 3) or NCTF (rank 4)."""
    named = front.layout or axes.replace(",", "")
    if named in LAYOUTS:
        if len(named) != rank:
            raise ModelError(f"audio input layout {named} for a rank-{rank} input")
        return named
    if front.layout:
        raise ModelError(f"edgesal.audio layout {front.layout!r}: choose {', '.join(LAYOUTS)}")
    if rank not in (3, 4):
        raise ModelError(f"audio input of rank {rank}: expected [N, T, F] or [N, C, T, F]")
    return "NTF" if rank == 3 else "NCTF"


def to_input(features: np.ndarray, layout: str) -> np.ndarray:
    """[T, F] features -> the model's input tensor (batch of one) in ``layout``."""
    x = features if layout in ("NTF", "NCTF") else features.T
    return np.ascontiguousarray(x[None] if len(layout) == 3 else x[None, None])


def map_from_output(saliency: np.ndarray, layout: str) -> np.ndarray:
    """The model's map (input layout without batch and channel) -> [T, F]."""
    return saliency if layout in ("NTF", "NCTF") else saliency.T


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling ``rate`` -> ``target`` Hz by the FFT (``scipy.signal.resample``'s
    method: truncate or zero-pad the spectrum, the Nyquist bin split); float64 in and out."""
    count = round(samples.size * target / rate)
    if count == samples.size:
        return samples.astype(np.float64)
    spectrum = np.fft.rfft(samples.astype(np.float64))
    keep = min(spectrum.size, count // 2 + 1)
    out = np.zeros(count // 2 + 1, np.complex128)
    out[:keep] = spectrum[:keep]
    if count < samples.size and count % 2 == 0:
        out[count // 2] *= 2.0  # bins +/- f fold into the new Nyquist bin (irfft counts it once)
    if count > samples.size and samples.size % 2 == 0:
        out[samples.size // 2] *= 0.5  # split the old Nyquist bin between +/- frequencies
    return np.fft.irfft(out, n=count) * (count / samples.size)


def with_stride(front: FrontEnd, seconds: float | None) -> FrontEnd:
    """``front`` with a stream stride from ``--audio-stride`` when given."""
    if seconds is None:
        return front
    if seconds <= 0:
        raise ModelError(f"--audio-stride {seconds}: must be > 0 seconds")
    return replace(front, stride=seconds)
