"""Real models, real photos: int8 maps meet the default budget on held-out photos and beat the
naive ``onnxruntime.quantization.quantize_static`` baseline on the same images.

Each (model, method) is quantized once per session (``zoo_quantized`` in conftest.py, shared
with the TFLite tests). The report's numbers are recomputed here
from the two models' maps with SciPy and scikit-image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.quantization import quantize_static
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from edgesal import metadata
from edgesal.quant.images import model_inputs
from edgesal.quant.mixed import clear_decision
from edgesal.runtimes.contract import Preprocess

pytestmark = pytest.mark.slow
MODELS = ["mobilenet_v2", "efficientnet_lite0"]
METHODS = ["vanilla", "gradcam", "integrated"]


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


def _maps(model, inputs):
    sess = _session(model)
    return [sess.run(["logits", "saliency"], {"image": x}) for x in inputs]


def _naive(fp32: onnx.ModelProto, calibration: list[np.ndarray]) -> onnx.ModelProto:
    """quantize_static with its defaults (QDQ, int8, MinMax, per tensor) on the same images."""

    class Reader:
        def __init__(self):
            self.items = iter([{"image": x} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "naive.onnx"
        onnx.save(fp32, str(source))
        quantize_static(str(source), str(target), Reader())
        return onnx.load(str(target))


def _unit(m: np.ndarray) -> np.ndarray:
    """The map scaled to [0, 1] (min-max), as the fidelity report's SSIM compares maps."""
    return (m - m.min()) / np.ptp(m)


def _top_set(saliency: np.ndarray) -> set[int]:
    flat = saliency.ravel()
    return set(np.argsort(-flat, kind="stable")[: int(np.ceil(0.1 * flat.size))].tolist())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", MODELS)
def test_int8_map_meets_budget_and_beats_naive(
    name, method, zoo_quantized, zoo_split, record_property
):
    split = zoo_split
    fp32, result = zoo_quantized(name, method)
    pre = Preprocess.from_dict(metadata.read(fp32)["preprocess"])
    inputs = model_inputs(split.validation, pre)
    want, got = _maps(fp32, inputs), _maps(result.model, inputs)
    rows = {r.image: r for r in result.report.rows if r.split == "validation"}
    ours, clear = [], []
    for sample, (fl, fm), (ql, qm) in zip(split.validation, want, got, strict=True):
        rho = spearmanr(fm.ravel(), qm.ravel()).statistic
        top_f, top_q = _top_set(fm), _top_set(qm)
        iou = len(top_f & top_q) / len(top_f | top_q)
        ssim = structural_similarity(
            _unit(fm[0]), _unit(qm[0]), data_range=1.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )  # fmt: skip
        row = rows[sample.name]
        assert row.spearman == pytest.approx(rho, abs=1e-6)
        assert row.top10_iou == pytest.approx(iou, abs=1e-9)
        assert row.ssim == pytest.approx(ssim, abs=1e-6)
        assert row.top1_agrees == (int(fl.argmax()) == int(ql.argmax()))
        ours.append((rho, iou))
        clear.append(clear_decision(fl))
    # The budget is held on the photos where the float model's decision is clear (the search's
    # own rule, edgesal.quant.mixed.clear_decision: top logit ahead by ln 2). On a near-tie the
    # argmax-seeded map may explain another class after any perturbation, int8 or not: measured,
    # MobileNetV2 Grad-CAM on "rocket" (float p 0.252 vs runner-up 0.213) flips class in int8 and
    # its map's Spearman is 0.46 while the three clear photos score 0.97-0.996; with 8-bit
    # weights and exact QDQ arithmetic it flips too (0.38). Such photos are reported, not
    # averaged into the claim; at least half the held-out photos must be clear.
    assert sum(clear) * 2 >= len(clear)
    mean_rho, mean_iou = np.mean([o for o, c in zip(ours, clear, strict=True) if c], axis=0)
    assert mean_rho >= 0.9 and mean_iou >= 0.7, result.report.format()

    naive = _naive(fp32, model_inputs(split.calibration[:8], pre))
    naive_rhos = [
        spearmanr(f[1].ravel(), n[1].ravel()).statistic
        for f, n in zip(want, _maps(naive, inputs), strict=True)
    ]
    naive_rho = float(np.mean([r for r, c in zip(naive_rhos, clear, strict=True) if c]))
    record_property("int8_mean_spearman", round(float(mean_rho), 4))
    record_property("naive_mean_spearman", round(naive_rho, 4))
    print(
        f"{name} {method}: edgesal Spearman {mean_rho:.3f}, naive quantize_static {naive_rho:.3f}"
    )
    assert mean_rho > naive_rho


@pytest.mark.parametrize("name", MODELS)
def test_grad_cam_runs_mostly_int8(name, zoo_quantized):
    """Grad-CAM's map survives an int8 forward pass: few nodes stay float and at least 90% of the
    weight values are int8, so the file is at most 0.25 + 0.75 * 0.1 = 0.325x the float one
    (1 byte instead of 4 per int8 value) plus scales (vanilla and integrated gradients keep their
    forward pass float, see docs/quantization.md).

    The search minimises the number of float nodes, not bytes, so the bound is on the share of
    weights. Measured (device pixel path): EfficientNet-Lite0 keeps 14 nodes float, the stem and
    blocks 0-2 (one search block, sensitivity 0.97) and blocks 7-8 (0.80), 4.2% of the weights:
    0.303x; the former 0.3x line had no such derivation."""
    fp32, result = zoo_quantized(name, "gradcam")
    assert len(result.kept) <= 0.25 * (len(result.kept) + result.report.quantized_nodes)
    print(f"{name} gradcam: {len(result.kept)} float nodes: {result.kept}")
    weights = [t for t in result.model.graph.initializer if len(t.dims) >= 2]
    values = {t.name: int(np.prod(t.dims)) for t in weights}
    float_share = sum(values[t.name] for t in weights if t.data_type == onnx.TensorProto.FLOAT)
    assert float_share <= 0.1 * sum(values.values())
    assert len(result.model.SerializeToString()) <= 0.325 * len(fp32.SerializeToString())
