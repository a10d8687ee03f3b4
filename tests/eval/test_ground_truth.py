"""A classifier whose decision depends only on a known region: every gradient method must find it.

Pointing game 1.0 for every registered method; deletion AUC far below a random map's and insertion
AUC far above (insertion on a zero canvas, where the region alone decides the class).
"""

from __future__ import annotations

import pytest

from edgesal.eval.audit import evaluate
from edgesal.eval.options import EvalOptions
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import METHODS, MethodOptions
from tests.eval.models import REGION, region_classifier, region_images


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    model = export_saliency(
        region_classifier(),
        ExportOptions(methods=list(METHODS), params=MethodOptions(steps=8, samples=4)),
    )
    images = region_images(4)
    options = EvalOptions(
        steps=10,
        insertion_canvas="zeros",
        road_fractions=(),  # imputation keeps the region bright: ROAD cannot tell here
        sensitivity_samples=0,
        sanity_images=0,
        tolerance=1.5,  # the 3x3 conv reaches one pixel outside the region
    )
    boxes = {name: list(REGION) for name in images}
    return evaluate(model, images, tmp_path_factory.mktemp("gt"), options, boxes=boxes)


def test_the_model_decides_class_one(report):
    assert all(image["class"] == 1 and image["prob"] > 0.99 for image in report["images"])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_pointing_game_is_perfect(report, method):
    pointing = report["summary"]["methods"][method]["pointing"]
    assert pointing == {"hits": 4, "scored": 4, "unscored": 0, "accuracy": 1.0}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_deletion_far_below_random_insertion_far_above(report, method):
    summary = report["summary"]
    mine, random = summary["methods"][method], summary["controls"]["random"]
    assert mine["deletion_auc"]["mean"] < 0.25 * random["deletion_auc"]["mean"]
    assert mine["insertion_auc"]["mean"] > random["insertion_auc"]["mean"] + 0.25


def test_curves_start_and_end_where_they_must(report):
    """Deletion starts at the image's probability; insertion ends at it (all pixels back)."""
    for image in report["images"]:
        for scores in image["methods"].values():
            assert scores["deletion"][0] == pytest.approx(image["target_prob"], abs=1e-5)
            assert scores["insertion"][-1] == pytest.approx(image["target_prob"], abs=1e-5)
            assert len(scores["deletion"]) == 11
