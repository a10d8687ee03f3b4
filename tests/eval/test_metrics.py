"""Unit tests of the metric building blocks against their definitions and reference libraries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from edgesal.errors import InputError
from edgesal.eval import perturb
from edgesal.eval.images import CropTransform
from edgesal.eval.pointing import distance_to_boxes, load_boxes, parse_boxes, pointing_hit
from edgesal.eval.road import impute, road_curves
from edgesal.eval.similarity import ranks, spearman, ssim, top_k_iou, unit_range
from edgesal.eval.stability import max_sensitivity
from edgesal.runtimes.contract import Preprocess, rgb_crop

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((30, 20))
    b = a + rng.random((30, 20))
    a[:5] = 0.0  # a block of ties
    b[:, :2] = 0.5
    b[b > 1.6] = 0.0  # scattered ties
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert list(ranks(np.array([3.0, 1.0, 3.0, 2.0]))) == [3.5, 1.0, 3.5, 2.0]


def test_spearman_of_constant_maps():
    flat = np.zeros((4, 4))
    assert spearman(flat, flat) == 1.0
    assert spearman(flat, np.arange(16.0).reshape(4, 4)) == 0.0


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 as scikit-image implements it, on the maps scaled to [0, 1]."""
    return structural_similarity(
        unit_range(a), unit_range(b), data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )  # fmt: skip


@pytest.mark.parametrize("shape", [(40, 50), (11, 64), (97, 33)])
def test_ssim_matches_scikit_image(shape):
    a = RNG.random(shape)
    b = 0.7 * a + 0.3 * RNG.random(shape)
    assert ssim(a, b) == pytest.approx(skimage_ssim(a, b), abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 5 * a + 2) == pytest.approx(1.0)  # each map is scaled to [0, 1] first
    assert ssim(a, b) != pytest.approx(ssim(a, RNG.random(shape)), abs=0.05)


def test_ssim_of_stacked_maps_is_the_mean_per_map():
    a, b = RNG.random((3, 24, 24)), RNG.random((3, 24, 24))
    want = np.mean([skimage_ssim(x, y) for x, y in zip(a, b, strict=True)])
    assert ssim(a, b) == pytest.approx(want, abs=1e-10)
    with pytest.raises(InputError, match="at least 11x11"):
        ssim(a[:, :10], b[:, :10])


def test_top_k_iou():
    a = np.arange(100, dtype=float).reshape(10, 10)
    assert top_k_iou(a, a, 0.1) == 1.0
    assert top_k_iou(a, -a, 0.1) == 0.0
    b = a.copy()
    b.flat[90:95] = -1  # half of a's top 10 moves out
    assert top_k_iou(a, b, 0.1) == pytest.approx(5 / 15)
    with pytest.raises(InputError, match="--top-k"):
        top_k_iou(a, a, 0.0)


def test_blends_move_pixels_in_saliency_order():
    start, end = np.zeros((2, 3, 1)), np.ones((2, 3, 1))
    saliency = np.array([[0.1, 0.9, 0.5], [0.3, 0.8, 0.0]])
    steps = perturb.blends(start, end, perturb.order(saliency), 3)
    assert steps.shape == (4, 2, 3, 1)
    assert steps[0].sum() == 0 and steps[-1].sum() == 6
    assert steps[1, :, :, 0].tolist() == [[0, 1, 0], [0, 1, 0]]  # the two largest first
    assert steps[2, :, :, 0].tolist() == [[0, 1, 1], [1, 1, 0]]


def test_deletion_and_auc_with_an_oracle_model():
    """p(class 0) = fraction of the image's brightness left: deletion of a map that ranks the
    bright half first must fall fast and end at 0; AUC by the trapezoid rule."""
    pixels = np.zeros((4, 4, 3), np.float32)
    pixels[:2] = 1.0

    def predict(batch):
        kept = batch.sum(axis=(1, 2, 3)) / pixels.sum()
        return np.stack([kept, 1 - kept], axis=1)

    saliency = pixels[..., 0] + 0.01 * np.arange(16).reshape(4, 4)
    curve = perturb.deletion(predict, pixels, saliency, 0, 4, "zeros")
    assert curve.tolist() == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert perturb.auc(curve) == pytest.approx((0.5 + 0.5 + 0.0 + 0.0) / 4 * 1.0 - 0.0 + 0.0)
    assert perturb.auc(np.ones(5)) == 1.0
    insertion = perturb.insertion(predict, pixels, saliency, 0, 4, "zeros")
    assert insertion.tolist() == [0.0, 0.5, 1.0, 1.0, 1.0]


def test_baselines():
    pixels = RNG.random((20, 20, 3)).astype(np.float32)
    assert perturb.baseline(pixels, "zeros").sum() == 0
    mean = perturb.baseline(pixels, "mean")
    assert np.allclose(mean[3, 4], pixels.mean(axis=(0, 1)))
    blurred = perturb.baseline(pixels, "blur")
    assert blurred.shape == pixels.shape and blurred.std() < pixels.std() / 2
    with pytest.raises(InputError, match="baseline 'black'"):
        perturb.baseline(pixels, "black")


def test_linear_imputation_solves_the_neighbour_equations():
    pixels = RNG.random((9, 11, 2))
    removed = np.zeros((9, 11), bool)
    removed[3:6, 2:8] = True
    removed[0, 0] = True  # a corner pixel has only 3 neighbours
    filled = impute(pixels, removed)
    assert np.array_equal(filled[~removed], pixels[~removed])
    for y, x in zip(*np.nonzero(removed), strict=True):
        total, weight = 0.0, 0.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if (dy, dx) != (0, 0) and 0 <= ny < 9 and 0 <= nx < 11:
                    w = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
                    total, weight = total + w * filled[ny, nx], weight + w
        assert np.allclose(filled[y, x], total / weight)


def test_road_curves_and_bad_fractions():
    pixels = RNG.random((12, 12, 3)).astype(np.float32)

    def predict(batch):
        score = batch[:, :6].mean(axis=(1, 2, 3))  # only the top half matters
        return np.stack([score, 1 - score], axis=1)

    saliency = np.zeros((12, 12))
    saliency[:6] = 1.0
    curves = road_curves(predict, pixels, saliency, 0, [0.25, 0.5], 0.0, [0])
    assert set(curves) == {"morf", "lerf"} and curves["morf"].shape == (2,)
    assert curves["lerf"][0] == pytest.approx(pixels[:6].mean(), abs=1e-6)  # bottom removed
    with pytest.raises(InputError, match="--road-fractions"):
        road_curves(predict, pixels, saliency, 0, [1.0], 0.0, [0])


def test_crop_transform_follows_the_device_crop():
    """A box drawn on a photo lands where the device's crop (rgb_crop) puts those pixels."""
    pre = Preprocess(size=[64, 64], resize_shorter=73)
    image = np.zeros((120, 200, 3), np.uint8)
    image[40:80, 90:130] = 255
    crop = rgb_crop(image, pre)
    ys, xs = np.nonzero(crop[..., 0] > 127)
    x0, y0, x1, y1 = CropTransform.of(image.shape[:2], pre).box((90, 40, 130, 80))
    assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1
    assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1


def test_boxes_files(tmp_path):
    coco = {
        "images": [{"id": 7, "file_name": "cat.jpg"}, {"id": 8, "file_name": "dog.jpg"}],
        "annotations": [
            {"image_id": 7, "bbox": [10, 20, 30, 40]},
            {"image_id": 7, "bbox": [0, 0, 5, 5]},
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    boxes = load_boxes(path)
    assert boxes == {"cat.jpg": [(10, 20, 40, 60), (0, 0, 5, 5)], "dog.jpg": []}
    assert parse_boxes({"a.png": [1, 2, 3, 4]}) == {"a.png": [(1, 2, 3, 4)]}
    assert parse_boxes({"a.png": [[1, 2, 3, 4], [0, 0, 1, 1]]})["a.png"][1] == (0, 0, 1, 1)
    with pytest.raises(InputError, match="x1 < x0"):
        parse_boxes({"a.png": [5, 0, 1, 4]})
    with pytest.raises(InputError, match="expected 4 numbers"):
        parse_boxes({"a.png": [1, 2, 3]})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json: not a readable JSON"):
        load_boxes(tmp_path / "bad.json")
    with pytest.raises(InputError, match="no such file"):
        load_boxes(tmp_path / "missing.json")


def test_pointing_game_with_tolerance():
    saliency = np.zeros((20, 20))
    saliency[10, 15] = 1.0  # centre (15.5, 10.5)
    box = (5.0, 5.0, 12.0, 12.0)
    assert pointing_hit(saliency, [box], tolerance=0) is False
    assert pointing_hit(saliency, [box], tolerance=3.5) is True
    assert pointing_hit(saliency, [box], tolerance=3.4) is False
    assert pointing_hit(saliency, [(30.0, 30.0, 40.0, 40.0)], 5) is None  # box off the map
    saliency[6, 6] = 1.0  # a tie inside the box counts
    assert pointing_hit(saliency, [box], tolerance=0) is True
    assert distance_to_boxes((4, 4), [(0, 0, 1, 1)])[3, 0] == pytest.approx(2.5)


def test_max_sensitivity():
    pixels = RNG.random((8, 8, 3)).astype(np.float32)
    reference = {"a": np.ones((8, 8))}

    def constant(_):
        return {"a": np.ones((8, 8))}

    def noisy(p):
        return {"a": 1.0 + p[..., 0] - pixels[..., 0]}

    rng = np.random.default_rng(0)
    assert max_sensitivity(constant, pixels, reference, 0.1, 3, rng) == {"a": 0.0}
    value = max_sensitivity(noisy, pixels, reference, 0.1, 3, rng)["a"]
    radius = 0.1 * np.ptp(pixels)
    assert 0 < value <= radius * 8 / 8  # ||d|| <= r sqrt(64), ||ref|| = 8
