"""Non-image inputs on the device: how a window of a source becomes the model's input, how its
map is read back, masked for the self-check, drawn and recorded.

- :class:`AudioInput`: samples -> log-mel (or other) features [T, F] by the front end of
  :mod:`edgesal.runtimes.audio`; map [T, F]; drawn as the spectrogram (time right, frequency up)
  with the map blended over it; records kind ``time_frequency``.
- :class:`SeriesInput`: rows of a table -> a series window [T, C] (any axis order the export
  names: ``N,T,C``, ``N,C,T``, ``N,T``) or one tabular row [F]; map [T] or [T, C] (the export may
  have reduced the channel axis) or [F]; drawn as the channels' lines with the map as a colour
  band (series) or as bars coloured by the map (tabular); records kinds ``series``/``tabular``.

``values`` is the model's input without the batch axis in display order ([T, F], [T, C], [F]).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edgesal.runtimes.audio import (
    META_KEY,
    FeatureExtractor,
    FrontEnd,
    hz_to_mel,
    input_layout,
    map_from_output,
    mel_to_hz,
    to_input,
)
from edgesal.runtimes.audio_sources import Windowing
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.model import Variant
from edgesal.runtimes.overlay import COLORMAPS

SIGNALS = ("audio", "series", "tabular")
BAND = 0.12  # share of the picture's height the map band takes
SERIES_COLOURS = [(255, 128, 0), (0, 160, 255), (0, 200, 0), (200, 0, 200), (0, 0, 220)]


def modality(variant: Variant) -> str:
    """``audio`` for a model with a front end (``edgesal.audio``), else ``edgesal.modality``."""
    extra = variant.contract.extra
    return "audio" if META_KEY in extra else str(extra.get("modality", "image"))


def input_for(variant: Variant, stride: float | None = None):
    """The adapter of ``variant``'s input (:class:`AudioInput` or :class:`SeriesInput`)."""
    kind = modality(variant)
    if kind == "audio":
        return AudioInput.of(variant, stride)
    return SeriesInput.of(variant, kind, stride)


def mean_fill(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values`` with the cells under ``mask`` (same shape) set to the mean of the others."""
    out = values.copy()
    out[mask] = values[~mask].mean() if (~mask).any() else values.mean()
    return out


@dataclass
class AudioInput:
    """How one model's input is made from samples: front end, axes, frames per window."""

    front: FrontEnd
    extractor: FeatureExtractor
    layout: str
    frames: int
    kind: str = "time_frequency"

    @classmethod
    def of(cls, variant: Variant, stride: float | None = None) -> AudioInput:
        where = variant.path
        front = FrontEnd.from_meta(variant.contract.extra.get(META_KEY), where)
        if stride is not None:
            front = replace(front, stride=stride)
        shape, _ = variant.backend.inputs[variant.contract.input]
        layout = input_layout(front, len(shape), str(variant.contract.extra.get("axes", "")))
        dims = dict(zip(layout, shape, strict=True))
        frames, features = dims["T"], dims["F"]
        if not (isinstance(frames, int) and frames > 0):
            raise ModelError(f"{where}: audio input {list(shape)} needs a fixed time axis")
        if features != front.features:
            raise ModelError(
                f"{where}: audio input {list(shape)} ({layout}) has {features} features per "
                f"frame but edgesal.audio makes {front.features}"
            )
        return cls(front, FeatureExtractor(front, Path(where).parent), layout, frames)

    def windowing(self) -> Windowing:
        f = self.front
        return Windowing(
            f.sample_rate, f.window_samples(self.frames), f.stride_samples(self.frames)
        )

    def values(self, samples: np.ndarray) -> np.ndarray:
        """[T, F] for one window (trimmed or edge-padded to the model's T, which LFR rounding
        can miss by one frame)."""
        x = self.extractor(samples)
        if x.shape[0] >= self.frames:
            return x[: self.frames]
        return np.pad(x, ((0, self.frames - x.shape[0]), (0, 0)), mode="edge")

    def empty(self) -> np.ndarray:
        return np.zeros((self.frames, self.front.features), np.float32)

    def tensor(self, values: np.ndarray) -> np.ndarray:
        return to_input(values, self.layout)

    def to_map(self, saliency: np.ndarray, where: str) -> np.ndarray:
        out = map_from_output(saliency, self.layout)
        if out.shape != (self.frames, self.front.features):
            raise ModelError(
                f"{where}: map {out.shape} does not match the features "
                f"{(self.frames, self.front.features)}; export without --reduce over time or "
                "frequency"
            )
        return out

    def masked(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return mean_fill(values, mask)

    def picture(self, values, saliency, size) -> tuple[np.ndarray, np.ndarray | None]:
        image = spectrogram_image(values, size, self.front.log == "none")
        return image, None if saliency is None else np.flipud(saliency.T)

    def annotate(self, image: np.ndarray) -> None:
        """Frequency ticks on the finished picture (stacked LFR features have none)."""
        if self.front.lfr_m == 1:
            frequency_ticks(image, feature_hz(self.front))

    def span(self, index: int) -> str:
        w = self.windowing()
        start = index * w.stride / w.rate
        return f"{start:.2f}-{start + w.window / w.rate:.2f} s"

    def map_meta(self, index: int) -> dict:
        f, w = self.front, self.windowing()
        return {
            "kind": self.kind,
            "axes": ["time", "frequency"],
            "start": index * w.stride / w.rate,
            "frame_seconds": f.hop_length * f.lfr_n / f.sample_rate,
            "window_seconds": w.window / w.rate,
        }

    def header(self) -> dict:
        w = self.windowing()
        front = {**self.front.__dict__, "window_samples": w.window, "stride_samples": w.stride}
        return {
            "modality": "audio",
            "audio": front,
            "input_size": [self.frames, self.front.features],
        }


@dataclass
class SeriesInput:
    """A series window [T, C] (or [T]) or a tabular row [F] from rows of a table."""

    kind: str  # series | tabular
    axes: tuple[str, ...]  # without N, e.g. ("T", "C")
    map_axes: tuple[str, ...]
    shape: tuple[int, ...]  # without N
    stride: int

    @classmethod
    def of(cls, variant: Variant, kind: str, stride: float | None = None) -> SeriesInput:
        where, extra = variant.path, variant.contract.extra
        if kind not in ("series", "tabular"):
            raise ModelError(f"{where}: a {kind} input is not a series, tabular or audio input")
        shape, _ = variant.backend.inputs[variant.contract.input]
        axes = tuple(str(extra.get("axes", "")).split(",")[1:])
        map_axes = tuple(str(extra.get("map_axes", extra.get("axes", ""))).split(",")[1:])
        dims = tuple(shape[1:])
        if len(axes) != len(dims) or not all(isinstance(d, int) and d > 0 for d in dims):
            raise ModelError(
                f"{where}: {kind} input {list(shape)} with axes {axes} needs fixed dims"
            )
        rows = dims[axes.index("T")] if kind == "series" else 1
        step = rows if stride is None else int(stride)
        if stride is not None and (stride != step or step < 1):
            raise ModelError(
                f"--window-stride {stride}: a table's stride is a whole number of rows"
            )
        return cls(kind, axes, map_axes, dims, step)

    @property
    def rows(self) -> int:
        return self.shape[self.axes.index("T")] if self.kind == "series" else 1

    @property
    def columns(self) -> int:
        return int(np.prod(self.shape)) // self.rows

    def windowing(self) -> Windowing:
        return Windowing(1, self.rows, self.stride)

    def values(self, rows: np.ndarray) -> np.ndarray:
        """[T, C] window (series) or [F] row (tabular) from [rows, columns] of the table."""
        return rows.reshape(self.columns) if self.kind == "tabular" else rows

    def empty(self) -> np.ndarray:
        return np.zeros((self.rows, self.columns) if self.kind == "series" else self.columns)

    def _order(self, axes: tuple[str, ...]) -> list[int]:
        """Permutation from display order (T first) to ``axes``."""
        display = ["T", *[a for a in axes if a != "T"]]
        return [display.index(a) for a in axes]

    def tensor(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "tabular":
            return values.reshape(self.shape)[None].astype(np.float32)
        x = values.reshape(self.rows, -1) if len(self.axes) > 1 else values.reshape(self.rows)
        return np.ascontiguousarray(np.transpose(x, self._order(self.axes)))[None].astype(
            np.float32
        )

    def to_map(self, saliency: np.ndarray, where: str) -> np.ndarray:
        expected = tuple(self.shape[self.axes.index(a)] for a in self.map_axes)
        value = saliency.reshape(expected) if saliency.size == np.prod(expected) else saliency
        if value.shape != expected:
            raise ModelError(
                f"{where}: map {saliency.shape}, expected {expected} ({self.map_axes})"
            )
        if self.kind == "tabular" or len(self.map_axes) == 1:
            return value
        return np.transpose(value, np.argsort(self._order(self.map_axes)))

    def masked(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Series: masked cells (whole time steps when the map has no channel axis) get their
        channel's mean over its other steps; tabular: masked features get the mean of the row's
        other values."""
        if self.kind == "tabular":
            return mean_fill(values, mask)
        cells = mask if mask.shape == values.shape else np.broadcast_to(mask[:, None], values.shape)
        out = values.copy()
        for channel in range(values.shape[1]):
            out[:, channel] = mean_fill(values[:, channel], cells[:, channel])
        return out

    def picture(self, values, saliency, size) -> tuple[np.ndarray, np.ndarray | None]:
        draw = tabular_image if self.kind == "tabular" else series_image
        return draw(values, saliency, size), None

    def annotate(self, image: np.ndarray) -> None:
        """Nothing beyond the lines and the band."""

    def span(self, index: int) -> str:
        start = index * self.stride
        return f"row {start}" if self.kind == "tabular" else f"rows {start}-{start + self.rows}"

    def map_meta(self, index: int) -> dict:
        names = {"T": "time", "C": "channel", "F": "feature"}
        shown = self.map_axes  # a series map is shown (and stored) time first
        if self.kind == "series":
            shown = ("T", *[a for a in self.map_axes if a != "T"])
        return {
            "kind": self.kind,
            "axes": [names.get(a, a) for a in shown],
            "start_row": index * self.stride,
        }

    def header(self) -> dict:
        return {"modality": self.kind, "input_size": list(self.shape), "axes": list(self.axes)}


def spectrogram_image(features: np.ndarray, size: tuple[int, int], linear: bool) -> np.ndarray:
    """[T, F] features as a BGR picture of ``size`` (W, H): time to the right, frequency up,
    grey levels spanning the window's 1st..99th percentile (of ``log(1e-6 + x)`` for ``linear``
    features, which would otherwise show only their loudest cells)."""
    if linear:
        features = np.log(np.maximum(features, 0) + 1e-6)
    low, high = np.percentile(features, [1, 99]) if features.size else (0.0, 1.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    grey = np.clip((features.T[::-1] - low) * scale, 0, 255).astype(np.uint8)
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def feature_hz(front: FrontEnd) -> np.ndarray:
    """Centre frequency of each feature: mel filter centres, or FFT bin frequencies."""
    if front.n_mels:
        low = hz_to_mel(front.fmin, front.mel_scale)
        high = hz_to_mel(front.top_hz, front.mel_scale)
        return mel_to_hz(np.linspace(low, high, front.n_mels + 2), front.mel_scale)[1:-1]
    return np.arange(front.n_fft // 2 + 1) * front.sample_rate / front.n_fft


def frequency_ticks(image: np.ndarray, hz: np.ndarray, ticks: int = 4) -> None:
    """Label ``ticks`` feature rows of a spectrogram picture (frequency up) with their Hz."""
    height = image.shape[0]
    for index in np.linspace(0, hz.size - 1, ticks + 2)[1:-1].round().astype(int):
        y = int(height - (index + 0.5) * height / hz.size)
        text = f"{hz[index] / 1000:.1f} kHz" if hz[index] >= 1000 else f"{hz[index]:.0f} Hz"
        cv2.line(image, (0, y), (6, y), (255, 255, 255), 1)
        cv2.putText(image, text, (9, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values, np.float64)


def series_image(values: np.ndarray, saliency: np.ndarray | None, size) -> np.ndarray:
    """Lines of each channel (time to the right) on white, the map as a colour band along the
    bottom and as a light shading behind the lines (its largest value over channels)."""
    width, height = size
    band_h = int(height * BAND)
    image = np.full((height, width, 3), 255, np.uint8)
    series = values.reshape(values.shape[0], -1)
    if saliency is not None:
        per_step = saliency if saliency.ndim == 1 else saliency.max(axis=1)
        levels = (np.clip(_unit(per_step), 0, 1) * 255).astype(np.uint8)[None]
        band = cv2.applyColorMap(cv2.resize(levels, (width, 1)), COLORMAPS["hot"])
        image[height - band_h :] = band
        shade = cv2.resize(levels, (width, height - band_h), interpolation=cv2.INTER_NEAREST)
        tint = (255 - (shade.astype(np.float32) * 0.35)).astype(np.uint8)
        image[: height - band_h, :, 1] = tint
        image[: height - band_h, :, 0] = tint
    scaled = _unit(series)
    xs = np.linspace(0, width - 1, series.shape[0])
    for c in range(min(series.shape[1], 8)):
        ys = (1 - scaled[:, c]) * (height - band_h - 20) + 10
        points = np.stack([xs, ys], axis=1).astype(np.int32)
        colour = SERIES_COLOURS[c % len(SERIES_COLOURS)]
        cv2.polylines(image, [points], False, colour, 2, cv2.LINE_AA)
    return image


def tabular_image(values: np.ndarray, saliency: np.ndarray | None, size) -> np.ndarray:
    """One bar per feature (height: the value, min-max scaled over the row), coloured by the
    map (jet: blue for none, red for the most salient), on white."""
    width, height = size
    image = np.full((height, width, 3), 255, np.uint8)
    count = values.size
    heights = _unit(values.reshape(-1)) * (height - 40) + 4
    levels = None if saliency is None else (_unit(saliency.reshape(-1)) * 255).astype(np.uint8)
    colours = cv2.applyColorMap(levels[None], COLORMAPS["jet"])[0] if levels is not None else None
    step = width / count
    for i in range(count):
        colour = (128, 128, 128) if colours is None else tuple(int(v) for v in colours[i])
        x0, x1 = int(i * step + step * 0.15), int((i + 1) * step - step * 0.15)
        cv2.rectangle(image, (x0, height - 8 - int(heights[i])), (x1, height - 8), colour, -1)
        cv2.rectangle(image, (x0, height - 8 - int(heights[i])), (x1, height - 8), (0, 0, 0), 1)
    return image
