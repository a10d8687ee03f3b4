"""The int8 fidelity row and the map-error budget (the metrics are eval's, one module)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from edgesal.errors import InputError
from edgesal.eval.similarity import spearman, ssim, top_k_iou, unit_range
from edgesal.quant.fidelity import compare
from edgesal.quant.options import Budget
from tests.quant.conftest import random_maps


@pytest.mark.parametrize("seed", [0, 3])
def test_fidelity_row_holds_the_eval_metrics(seed):
    """quantize and eval compare report the same numbers for the same pair of maps (one
    metrics module; its definitions are tested against SciPy and scikit-image in
    tests/eval/test_metrics.py)."""
    a, b = random_maps(seed, (48, 40))
    row = compare("x", "validation", a, b, np.array([0.1, 0.9]), np.array([0.2, 0.8]))
    assert row.spearman == spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0])
    assert row.top10_iou == top_k_iou(a, b, 0.1)
    assert row.ssim == ssim(a, b)
    expected = structural_similarity(
        unit_range(a), unit_range(b), data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip
    assert row.ssim == pytest.approx(expected, abs=1e-9)


def test_compare_reports_class_agreement():
    a, b = random_maps(4)
    row = compare("x", "validation", a, b, np.array([0.1, 0.9]), np.array([0.8, 0.2]))
    assert (row.top1_agrees, row.float_class, row.int8_class) == (False, 1, 0)


def test_budget_parsing():
    assert Budget.parse("0.1") == Budget(spearman=pytest.approx(0.9), iou=0.7)
    assert Budget.parse("spearman=0.8,iou=0.5") == Budget(0.8, 0.5)
    assert Budget().met(0.9, 0.7) and not Budget().met(0.95, 0.69)
    for bad in ("x", "1.5", "rho=0.9"):
        with pytest.raises(InputError, match="--max-map-error"):
            Budget.parse(bad)
