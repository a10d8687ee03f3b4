"""Range choice for forward and gradient tensors, and the seed rescale."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnxruntime.quantization.calibrate import HistogramCollector

from edgesal.errors import InputError
from edgesal.quant import calibrate, seed
from edgesal.quant.calibrate import (
    TensorRange,
    forward_range,
    gradient_range,
    quantization_error,
    weighted_sample,
)
from edgesal.quant.graph import describe
from edgesal.quant.prepare import prepare
from tests.quant.conftest import SIZE


def _statistics(values: np.ndarray):
    collector = HistogramCollector("entropy", False, calibrate.HISTOGRAM_BINS, 128, 100.0, "same")
    collector.collect_value({"g": values})
    rng = np.random.default_rng(0)
    return collector.histogram_dict["g"], [weighted_sample(values, rng)]


def test_weighted_sample_keeps_the_largest_values_and_the_total_weight():
    values = np.random.default_rng(1).standard_t(2, 100_000).astype(np.float32)
    sample, weights = weighted_sample(values, np.random.default_rng(0))
    assert np.abs(values).max() in np.abs(sample)
    assert weights.sum() == pytest.approx(values.size)


def test_heavy_tailed_gradients_are_clipped_below_their_maximum():
    values = (np.random.default_rng(2).standard_t(2, 200_000) * 1e-3).astype(np.float32)
    entry, sample = _statistics(values)
    low, high = float(values.min()), float(values.max())
    chosen = gradient_range(entry, sample, low, high, "auto")
    minmax = gradient_range(entry, sample, low, high, "minmax")
    assert chosen.backward and chosen.low == -chosen.high  # symmetric around zero
    assert chosen.high < 0.6 * minmax.high
    v, w = sample[0]
    assert quantization_error(v, w, chosen.low, chosen.high) < 0.5 * quantization_error(
        v, w, minmax.low, minmax.high
    )
    assert gradient_range(entry, sample, low, high, "percentile").method.startswith("percentile")
    assert gradient_range(entry, sample, low, high, "entropy").method == "entropy"


def test_forward_ranges_keep_relu6_and_shrink_heavy_tails():
    rng = np.random.default_rng(3)
    relu6 = np.clip(rng.normal(2.0, 2.0, 50_000), 0, 6).astype(np.float32)
    r = forward_range([weighted_sample(relu6, rng)], 0.0, 6.0)
    assert (r.low, r.high) == (0.0, 6.0) and not r.backward
    tailed = rng.standard_t(2, 200_000).astype(np.float32)
    low, high = float(tailed.min()), float(tailed.max())
    r = forward_range([weighted_sample(tailed, rng)], low, high)
    assert r.method == "mse" and low < r.low < 0.0 < r.high < high
    assert r.low / low == pytest.approx(r.high / high)  # both ends shrunk by one factor


def test_quantization_error_is_zero_on_the_grid():
    grid = np.linspace(-1.0, 1.0, 256)
    assert quantization_error(grid, np.ones_like(grid), -1.0, 1.0) == pytest.approx(0.0, abs=1e-20)


def test_widen_and_tie():
    ranges = {"y": TensorRange(0.0, 4.0, "mse", False), "g": TensorRange(-1.0, 1.0, "mse", True)}
    ranges["m"] = TensorRange(-0.5, 0.5, "mse", True)
    calibrate.widen(ranges, {"y": [0.0, 6.0]})
    calibrate.tie(ranges, {"m": "g"})
    assert (ranges["y"].low, ranges["y"].high) == (0.0, 6.0)
    assert (ranges["m"].low, ranges["m"].high) == (-1.0, 1.0) and "tied" in ranges["m"].method


def test_unknown_gradient_method(tiny_saliency):
    model = prepare(tiny_saliency["vanilla"])
    graph = describe(model)
    x = np.zeros((1, 3, SIZE, SIZE), np.float32)
    stats = calibrate.collect(model, graph, [{"image": x}])
    with pytest.raises(InputError, match="--grad-range"):
        calibrate.choose_ranges(stats, graph, "median")


def _maps(model, xs):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [sess.run(None, {"image": x}) for x in xs]


@pytest.mark.parametrize("normalize", ["max", "none"])
def test_seed_rescale_is_exact_and_undone(normalize):
    from edgesal.export import ExportOptions, export_saliency
    from tests.quant.conftest import tiny_classifier

    model = export_saliency(tiny_classifier(), ExportOptions(normalize=normalize))
    graph = describe(model)
    xs = [
        np.random.default_rng(k).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
        for k in range(3)
    ]
    from edgesal import metadata

    scale = seed.choose(graph, {n: 1e-3 for n in graph.backward}, metadata.read(model))
    assert scale.factor == 1024.0  # 2^round(-log2(1e-3))
    assert scale.undo == ("normalization" if normalize == "max" else "output multiply")
    scaled = prepare(model)
    seed.apply(scaled, describe(scaled), scale)
    for (logits, want), (logits2, got) in zip(_maps(model, xs), _maps(scaled, xs), strict=True):
        np.testing.assert_array_equal(logits, logits2)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_grad_cam_plus_plus_is_not_rescaled(tiny_saliency):
    graph = describe(tiny_saliency["gradcam"])
    plus = type(graph)(**{**graph.__dict__, "method": "gradcampp"})
    assert seed.choose(plus, {n: 1e-3 for n in graph.backward}, {}).factor == 1.0
