"""Map-fidelity measures against independent implementations (SciPy, scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from edgesal.errors import InputError
from edgesal.quant.fidelity import Budget, compare, ranks, spearman, ssim, top_indices, top_iou
from tests.quant.conftest import random_maps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_matches_scipy_with_ties(seed):
    a, b = random_maps(seed)
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)


def test_ranks_average_ties():
    assert ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_spearman_of_constant_maps():
    flat = np.zeros((4, 4))
    assert spearman(flat, flat) == 1.0
    assert spearman(flat, np.arange(16.0).reshape(4, 4)) == 0.0


@pytest.mark.parametrize("seed", [0, 3])
def test_ssim_matches_scikit_image(seed):
    a, b = random_maps(seed, (48, 40))
    expected = structural_similarity(
        a, b, data_range=float(np.ptp(a)), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_top_iou_counts_top_ten_percent():
    a = np.arange(100.0)
    assert top_iou(a, a) == 1.0
    assert top_iou(a, -a) == 0.0
    shifted = np.r_[a[5:], a[:5]]  # top-10 of a: 90..99; of shifted: indices 85..94
    assert sorted(top_indices(shifted).tolist()) == list(range(85, 95))
    assert top_iou(a, shifted) == pytest.approx(5 / 15)


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
