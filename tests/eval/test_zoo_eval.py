"""End to end on the zoo's real ImageNet models and real photos (slow: two networks).

Integrated gradients and SmoothGrad must beat a random map (insertion higher, deletion lower).
Under cascading randomization the gradient maps (vanilla, SmoothGrad) fall below Spearman 0.5
once the top blocks (at most 8 layers) are randomized; integrated gradients, a gradient times the
input, keeps part of the image's structure (Adebayo et al. note the same) and must be below 0.5
after the whole cascade. The Sobel edge-detector control stays correlated and is flagged.
"""

from __future__ import annotations

import pytest

from edgesal import zoo
from edgesal.eval.audit import evaluate
from edgesal.eval.engines import LocalEngine
from edgesal.eval.options import EvalOptions
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import MethodOptions

pytestmark = pytest.mark.slow
METHODS = ("integrated", "smoothgrad")
GRADIENTS = ("vanilla", "smoothgrad")


@pytest.fixture(scope="module", params=["mobilenet_v2", "efficientnet_lite0"])
def report(request, tmp_path_factory):
    model = export_saliency(
        zoo.build(request.param, progress=False),
        ExportOptions(methods=[*METHODS, "vanilla"], params=MethodOptions(steps=8, samples=4)),
    )
    options = EvalOptions(
        steps=10,
        road_fractions=(),
        sensitivity_samples=0,
        controls=("random",),  # the sanity check's Sobel control is always there
        sanity_images=2,
        sanity_steps="1,2,4,8,all",
        sanity_modes=("cascading",),
        random_logit=False,
        overlays=2,
    )
    out = tmp_path_factory.mktemp(request.param)
    return evaluate(model, zoo.photos(), out, options, engine=LocalEngine(2))


@pytest.mark.parametrize("method", METHODS)
def test_beats_a_random_map(report, method):
    summary = report["summary"]
    mine, random = summary["methods"][method], summary["controls"]["random"]
    assert mine["insertion_auc"]["mean"] > random["insertion_auc"]["mean"]
    assert mine["deletion_auc"]["mean"] < random["deletion_auc"]["mean"]


@pytest.mark.parametrize("method", GRADIENTS)
def test_gradient_maps_decorrelate_after_the_top_blocks(report, method):
    verdict = report["sanity"]["verdicts"][method]
    assert verdict["passed"] and verdict["final_spearman"] < 0.5
    assert verdict["first_below"] is not None and verdict["first_below"] <= 8


def test_integrated_gradients_decorrelate_after_the_cascade(report):
    verdict = report["sanity"]["verdicts"]["integrated"]
    assert verdict["passed"] and verdict["final_spearman"] < 0.5
    means = report["sanity"]["cascading"]["methods"]["integrated"]["mean_spearman"]
    assert means[-1] < means[0]


def test_sobel_control_stays_correlated_and_is_flagged(report):
    sobel = report["sanity"]["verdicts"]["sobel"]
    assert sobel["flagged"] and sobel["final_spearman"] > 0.99
    assert report["sanity"]["pipeline_spearman"][0]["integrated"] == pytest.approx(1.0, abs=1e-5)
