"""Calibration: forward activations and gradient tensors each get ranges from their own statistics.

Statistics are collected by adding graph outputs and running the real runtime image by image
(onnxruntime's calibrators do the same; everything is merged after every image, so memory stays
bounded): min/max of every tensor, a weighted sample of its values (each image's largest values
with weight 1, a uniform random subset of the rest weighted up, so both the bulk, which decides
the map's ranks, and the tail, which decides clipping, are represented), and for gradient tensors
onnxruntime's ``HistogramCollector`` value histograms.

A range is chosen among candidates by the mean squared error its 8-bit grid gives on the sample
(rounding inside, clipping outside):

- forward tensors: [min, max] and the same interval shrunk by a geometric grid of factors (keeps
  a ReLU6 output's [0, 6], clips the rare outliers of a linear bottleneck);
- gradient tensors, which are heavy-tailed and centred on zero with ranges that differ by orders
  of magnitude between layers: symmetric [-c, c] with c from percentiles of |g| (99.9, 99.99,
  99.999), onnxruntime's KL-divergence (entropy) threshold and a geometric grid below max |g|.
  ``--grad-range percentile|entropy|minmax`` restricts the candidates.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization.calibrate import (
    CalibrationMethod,
    HistogramCollector,
    TensorData,
    TensorsData,
)

from edgesal.errors import InputError
from edgesal.quant.graph import SaliencyGraph, float_tensors
from edgesal.quant.options import GRADIENT_METHODS

PERCENTILES = (99.9, 99.99, 99.999)
HISTOGRAM_BINS = 2048
ENTROPY_BINS = 256  # re-binned for the KL search, which is quadratic in the bin count
LEVELS = 255  # int8 steps
SAMPLE_RANDOM = 2048  # random values kept per tensor and image
SAMPLE_TOP = 16  # largest |values| kept per tensor and image
HISTOGRAM_VALUES = 1 << 18  # values per tensor and image that go into the histograms
GRID = 2.0 ** (-np.arange(0, 41) / 4.0)  # candidate thresholds as fractions of the maximum


@dataclass(frozen=True)
class TensorRange:
    """The real interval [low, high] one tensor is quantized over, and how it was chosen."""

    low: float
    high: float
    method: str  # "minmax", "percentile:99.99", "entropy", ...
    backward: bool

    def scale(self) -> float:
        """Quantization step of an 8-bit grid over the range."""
        return (self.high - self.low) / LEVELS


@dataclass
class Statistics:
    """What calibration observed, per tensor."""

    low: dict[str, float]
    high: dict[str, float]
    histograms: dict[str, tuple]  # onnxruntime HistogramCollector entries of gradient tensors
    samples: dict[str, list[tuple[np.ndarray, np.ndarray]]]  # values and their weights
    images: int


def collect(
    model: onnx.ModelProto,
    graph: SaliencyGraph,
    feeds: Iterable[dict[str, np.ndarray]],
    detailed: bool = True,
) -> Statistics:
    """Run ``model`` on each feed with every float tensor exposed: min/max and samples of all,
    histograms of gradient tensors (``detailed=False``: min/max only)."""
    names = _calibrated_tensors(model)
    session = _exposing_session(model, names)
    outputs = [o.name for o in session.get_outputs()]
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    collector = HistogramCollector("entropy", False, HISTOGRAM_BINS, 128, 100.0, "same")
    samples: dict[str, list] = {n: [] for n in names}
    rng = np.random.default_rng(0)
    count = 0
    for feed in feeds:
        values = dict(zip(outputs, session.run(None, feed), strict=True)) | feed
        for name in names:
            value = values[name]
            low[name] = min(low.get(name, np.inf), float(np.min(value)))
            high[name] = max(high.get(name, -np.inf), float(np.max(value)))
        if detailed:
            gradients = {n: _subsample(values[n], rng) for n in names if graph.is_backward(n)}
            collector.collect_value(gradients)
            for name in samples:
                samples[name].append(weighted_sample(values[name], rng))
        del values
        count += 1
    if not count:
        raise InputError("calibration needs at least one image; none were given")
    return Statistics(low, high, collector.histogram_dict, samples, count)


def weighted_sample(value: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The largest |values| (weight 1) and uniform draws from all values (weight n / k)."""
    flat = np.asarray(value, dtype=np.float32).ravel()
    if flat.size <= SAMPLE_RANDOM + SAMPLE_TOP:
        return flat, np.ones(flat.size, np.float32)
    top = _largest(np.abs(flat), SAMPLE_TOP)
    drawn = rng.integers(0, flat.size, SAMPLE_RANDOM)
    weights = np.r_[
        np.ones(SAMPLE_TOP), np.full(SAMPLE_RANDOM, (flat.size - SAMPLE_TOP) / SAMPLE_RANDOM)
    ]
    return np.r_[flat[top], flat[drawn]], weights.astype(np.float32)


def _largest(values: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """Indices of the ``k`` largest values: the winners lie in the ``k`` chunks with the largest
    maxima, so only those are partitioned (argpartition over everything is the slow part)."""
    chunks = values.size // chunk
    if chunks <= k:
        return np.argpartition(values, -k)[-k:]
    maxima = values[: chunks * chunk].reshape(chunks, chunk).max(axis=1)
    best = np.argpartition(maxima, -k)[-k:]
    candidates = np.r_[(best[:, None] * chunk + np.arange(chunk)).ravel(),
                       np.arange(chunks * chunk, values.size)]  # fmt: skip
    return candidates[np.argpartition(values[candidates], -k)[-k:]]


def _subsample(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At most HISTOGRAM_VALUES uniform draws of ``value`` plus its extremes (so the histogram
    range still spans the tensor)."""
    flat = np.asarray(value).ravel()
    if flat.size <= HISTOGRAM_VALUES:
        return flat
    drawn = flat[rng.integers(0, flat.size, HISTOGRAM_VALUES)]
    return np.r_[drawn, flat.min(), flat.max()]


def _calibrated_tensors(model: onnx.ModelProto) -> list[str]:
    floats = float_tensors(model)
    inputs = [
        i.name
        for i in model.graph.input
        if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        and i.name not in {t.name for t in model.graph.initializer}
    ]
    return inputs + [n for n in floats if n not in inputs]


def _exposing_session(model: onnx.ModelProto, names: list[str]) -> ort.InferenceSession:
    """A session whose outputs include ``names`` (onnxruntime does not fuse away a node whose
    output is a graph output, so full optimization is safe)."""
    exposed = copy.deepcopy(model)
    present = {o.name for o in exposed.graph.output} | {i.name for i in exposed.graph.input}
    for name in names:
        if name not in present:
            exposed.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # every tensor is an output: nothing to reuse, free it
    options.log_severity_level = 3  # not a warning per initializer these graphs leave unread
    return ort.InferenceSession(exposed.SerializeToString(), options, ["CPUExecutionProvider"])


def choose_ranges(
    stats: Statistics, graph: SaliencyGraph, gradient_method: str = "auto"
) -> dict[str, TensorRange]:
    """One range per calibrated tensor (see the module docstring)."""
    if gradient_method not in GRADIENT_METHODS:
        raise InputError(
            f"--grad-range {gradient_method}: choose one of {', '.join(GRADIENT_METHODS)}"
        )
    ranges = {}
    for name in stats.low:
        low, high = stats.low[name], stats.high[name]
        if graph.is_backward(name):
            ranges[name] = gradient_range(
                stats.histograms[name], stats.samples[name], low, high, gradient_method
            )
        else:
            ranges[name] = forward_range(stats.samples[name], low, high)
    return ranges


def tie(ranges: dict[str, TensorRange], pairs: dict[str, str]) -> None:
    """Give each ``follower`` of ``pairs`` (``{follower: leader}``) its leader's range, in place."""
    for follower, leader in pairs.items():
        if follower in ranges and leader in ranges:
            r = ranges[leader]
            ranges[follower] = TensorRange(r.low, r.high, f"tied to {leader}", r.backward)


def forward_range(sample: list, low: float, high: float) -> TensorRange:
    """[min, max] (always containing 0) or a shrunk copy of it: the lowest sample error."""
    low, high = min(low, 0.0), max(high, 0.0)
    if low == high:
        return TensorRange(0.0, 0.0, "zero", False)
    candidates = {"minmax": (low, high)} | {f"mse:{f:.4g}": (low * f, high * f) for f in GRID[1:]}
    best = _lowest_error(sample, candidates)
    lo, hi = candidates[best]
    return TensorRange(lo, hi, "mse" if best.startswith("mse:") else best, False)


def widen(ranges: dict[str, TensorRange], bounds: dict[str, list[float]]) -> None:
    """Stretch each range in ``bounds`` to contain its values, in place."""
    for name, values in bounds.items():
        if name in ranges:
            r = ranges[name]
            low, high = min(r.low, *values), max(r.high, *values)
            if (low, high) != (r.low, r.high):
                ranges[name] = TensorRange(low, high, f"{r.method}, widened to bounds", r.backward)


def gradient_range(entry: tuple, sample: list, low: float, high: float, method: str) -> TensorRange:
    """Symmetric range [-c, c] (or [0, c] for a non-negative tensor) for a gradient tensor."""
    hist, edges = np.asarray(entry[0], np.float64), np.asarray(entry[1], np.float64)
    amax = max(abs(low), abs(high))
    if amax == 0.0 or hist.sum() == 0:
        return TensorRange(0.0, 0.0, "zero", True)
    thresholds: dict[str, float] = {"minmax": amax} if method in ("auto", "minmax") else {}
    if method in ("auto", "percentile"):
        for p in PERCENTILES:
            thresholds[f"percentile:{p}"] = min(abs_percentile(hist, edges, p), amax)
    if method in ("auto", "entropy"):
        thresholds["entropy"] = min(entropy_threshold(hist, edges, low, high), amax)
    if method == "auto":
        thresholds |= {f"mse:{f:.4g}": amax * f for f in GRID[1:]}
    signed = low < 0.0
    candidates = {k: (-c if signed else 0.0, c) for k, c in thresholds.items() if c > 0}
    best = _lowest_error(sample, candidates) if candidates else "minmax"
    lo, hi = candidates.get(best, (-amax if signed else 0.0, amax))
    return TensorRange(lo, hi, "mse" if best.startswith("mse:") else best, True)


def _lowest_error(sample: list, candidates: dict[str, tuple[float, float]]) -> str:
    """The candidate range whose 8-bit grid has the smallest error on the weighted sample."""
    values = np.concatenate([v for v, _ in sample]).astype(np.float64)
    weights = np.concatenate([w for _, w in sample]).astype(np.float64)
    errors = {k: quantization_error(values, weights, lo, hi) for k, (lo, hi) in candidates.items()}
    return min(errors, key=errors.get)


def abs_percentile(hist: np.ndarray, edges: np.ndarray, p: float) -> float:
    """The p-th percentile of |value| read from a value histogram (upper bin edge)."""
    centers = np.abs(0.5 * (edges[1:] + edges[:-1]))
    uppers = np.maximum(np.abs(edges[1:]), np.abs(edges[:-1]))
    order = np.argsort(centers, kind="stable")
    cdf = np.cumsum(hist[order]) / hist.sum()
    index = min(int(np.searchsorted(cdf, p / 100.0)), len(cdf) - 1)
    return float(uppers[order][index])


def entropy_threshold(hist: np.ndarray, edges: np.ndarray, low: float, high: float) -> float:
    """onnxruntime's KL-divergence threshold (TensorRT's method) on a re-binned histogram."""
    factor = max(1, len(hist) // ENTROPY_BINS)
    usable = len(hist) // factor * factor
    start = (len(hist) - usable) // 2
    coarse = hist[start : start + usable].reshape(-1, factor).sum(axis=1).astype(np.int64)
    coarse_edges = edges[start : start + usable + 1 : factor].astype(np.float32)
    entry = (coarse, coarse_edges, np.float32(low), np.float32(high), None)
    collector = HistogramCollector("entropy", False, len(coarse), 128, 100.0, "same")
    lo, hi = collector.get_entropy_threshold(entry, 128)
    return float(max(abs(lo), abs(hi)))


def quantization_error(values: np.ndarray, weights: np.ndarray, low: float, high: float) -> float:
    """Weighted mean squared error of rounding ``values`` to 255 steps over [low, high],
    clipping included."""
    step = (high - low) / LEVELS
    grid = np.clip(np.round((values - low) / step), 0, LEVELS) * step + low
    return float(np.average((grid - values) ** 2, weights=weights))


def tensors_data(ranges: dict[str, TensorRange]) -> TensorsData:
    """The ranges in the form onnxruntime's quantizers take."""
    return TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(lowest=np.float32(r.low), highest=np.float32(r.high))
            for name, r in ranges.items()
        },
    )
