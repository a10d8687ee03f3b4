"""Sanity checks on the ONNX graph: layers, randomization, re-export, verdicts, controls."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesal.errors import InputError
from edgesal.eval import sanity
from edgesal.eval.audit import evaluate
from edgesal.eval.model import inspect
from edgesal.eval.options import EvalOptions
from edgesal.export import ExportOptions, export_saliency
from edgesal.methods import MethodOptions
from tests.eval.models import onnx_twin, smooth_images, torch_net
from tests.models import nchw_cnn


def _weights(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_parametric_layers_in_graph_order():
    layers = sanity.parametric_layers(nchw_cnn())
    assert [layer.op_type for layer in layers] == [
        "Conv",
        "BatchNormalization",
        "Conv",
        "Conv",
        "Gemm",
    ]
    assert layers[0].weights == ("w1", "b1")
    assert layers[1].weights == ("bn_s", "bn_b")  # not the running statistics
    assert [layer.index for layer in layers] == list(range(5))


def test_checkpoint_counts():
    assert sanity.checkpoint_counts(53) == [1, 2, 4, 8, 16, 32, 53]
    assert sanity.checkpoint_counts(4) == [1, 2, 4]
    assert sanity.checkpoint_counts(3, "every") == [1, 2, 3]
    assert sanity.checkpoint_counts(10, "1,3,all") == [1, 3, 10]
    assert [list(g) for g in sanity.groups([1, 2, 4])] == [[0], [1], [2, 3]]
    with pytest.raises(InputError, match="--sanity-steps 0,2: counts must be in 1..5"):
        sanity.checkpoint_counts(5, "0,2")
    with pytest.raises(InputError, match="--sanity-steps x"):
        sanity.checkpoint_counts(5, "x")


def test_randomization_touches_only_the_chosen_layers_and_is_reproducible():
    model = nchw_cnn()
    layers = sanity.parametric_layers(model)
    draw = sanity.default_randomizer(seed=3)
    top_two = sanity.top_layers(layers, 2)
    assert top_two == [3, 4]
    cascade = _weights(sanity.randomized(model, layers, top_two, draw))
    alone = _weights(sanity.randomized(model, layers, [4], draw))
    original = _weights(model)
    for name in ("w1", "b1", "bn_s", "bn_m", "bn_v", "dw"):
        assert np.array_equal(cascade[name], original[name])
    for name in ("pw", "fc", "fcb"):
        assert not np.allclose(cascade[name], original[name])
    assert np.array_equal(alone["fc"], cascade["fc"])  # same layer, same values in both modes
    assert np.array_equal(alone["pw"], original["pw"])
    assert cascade["fc"].std() == pytest.approx(original["fc"].std(), rel=0.5)


def test_forward_recovered_and_export_options_round_trip():
    params = MethodOptions(steps=5, samples=3)
    exported = export_saliency(
        nchw_cnn(), ExportOptions(methods=["vanilla", "integrated"], params=params, reduce="l2")
    )
    spec = inspect(exported)
    forward = sanity.forward_of(exported, spec)
    assert [o.name for o in forward.graph.output] == ["logits"]
    assert len(forward.graph.node) == len(nchw_cnn().graph.node)
    options = sanity.export_options(exported, spec)
    assert options.method_names() == ["vanilla", "integrated"]
    assert options.target == "input" and options.reduce == "l2"
    assert options.params.steps == 5 and options.params.samples == 3


def test_no_parametric_layers_is_an_error():
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["out"])], "g", [image], [out])
    with pytest.raises(InputError, match="no parametric layers"):
        sanity.parametric_layers(helper.make_model(graph))


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """Vanilla, integrated gradients and Grad-CAM on the small torch-twin network, 3 images."""
    model = export_saliency(
        onnx_twin(torch_net()),
        ExportOptions(methods=["vanilla", "integrated", "gradcam"], params=MethodOptions(steps=8)),
    )
    options = EvalOptions(
        steps=4,
        road_fractions=(),
        sensitivity_samples=0,
        controls=(),
        sanity_images=3,
        sanity_steps="every",
    )
    return evaluate(model, smooth_images(3), tmp_path_factory.mktemp("sanity"), options)


def test_reexport_reproduces_the_models_own_maps(checked):
    for per_image in checked["sanity"]["pipeline_spearman"]:
        assert all(v == pytest.approx(1.0, abs=1e-6) for v in per_image.values())


def test_gradient_methods_pass_and_the_sobel_control_is_flagged(checked):
    section = checked["sanity"]
    verdicts = section["verdicts"]
    for method in ("vanilla", "integrated", "gradcam"):
        assert verdicts[method]["passed"], (method, verdicts[method])
        assert not verdicts[method]["flagged"]
    sobel = verdicts["sobel"]
    assert sobel["control"] and sobel["flagged"] and not sobel["passed"]
    assert sobel["final_spearman"] == pytest.approx(1.0)
    assert "flagged as expected" in sobel["note"]
    cascade = section["cascading"]["methods"]["vanilla"]["mean_spearman"]
    # Fully randomized, the maps no longer rank pixels like the trained model's.
    assert cascade[-1] < section["threshold"], cascade
    for mode in ("cascading", "independent"):
        steps = section[mode]["steps"]
        assert len(steps) == 3 and section[mode]["methods"]["sobel"]["mean_ssim"] == [1.0] * 3


def test_random_logit_check(checked):
    logit = checked["sanity"]["random_logit"]
    targets = checked["sanity"]["targets"]
    assert all(c != t for c, t in zip(logit["classes"], targets, strict=True))
    assert logit["methods"]["sobel"]["flagged"]  # the Sobel map ignores the class
    assert logit["methods"]["gradcam"]["mean_ssim"] < 1.0
