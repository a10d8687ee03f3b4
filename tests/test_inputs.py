"""Non-image inputs (issue 13 part 3): series [N,C,T] / [N,T,C], tabular [N,F], audio [N,T,F] with
a streaming cache. Gradients against torch autograd on the same weights and float64 central
differences of the ONNX forward; map shapes, per-sample normalization, metadata, bad flags."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from edgesal import metadata
from edgesal.cli import main
from edgesal.converters import to_tflite
from edgesal.errors import InputError
from edgesal.export import ExportOptions, export_saliency
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.model import MethodChain
from tests.converters.tflite_harness import interpreter
from tests.input_models import build, torch_gradient
from tests.models import to_float64

CASES = {  # kind -> (explained input, modality, expected axes)
    "nct": ("x", "series", "N,C,T"),
    "ntc": ("x", "series", "N,T,C"),
    "tabular": ("x", "tabular", "N,F"),
    "audio": ("speech", "audio", "N,T,F"),
}


def _run(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))


def _options(kind: str, **changes) -> ExportOptions:
    name, modality, _ = CASES[kind]
    return ExportOptions(input=name, modality=modality if kind == "audio" else None, **changes)


def _central_difference(model64, feeds, wrt, cls, t, eps=1e-5) -> float:
    ref = ReferenceEvaluator(model64)

    def score(x):
        return float(ref.run(["logits"], {**feeds, wrt: x})[0][0, cls])

    x = feeds[wrt]
    return (score(x + eps * t) - score(x - eps * t)) / (2 * eps)


@pytest.mark.parametrize("kind", list(CASES))
def test_raw_gradient_matches_torch_and_finite_differences(kind):
    net, model, feeds = build(kind)
    wrt = CASES[kind][0]
    exported = export_saliency(model, _options(kind, reduce="none", normalize="none"))
    got = _run(exported, feeds)
    grad = got["saliency"]
    assert grad.shape == feeds[wrt].shape
    np.testing.assert_allclose(grad, torch_gradient(net, feeds, wrt), rtol=1e-4, atol=1e-6)
    cls = int(np.argmax(got["logits"][0]))
    feeds64 = {k: v.astype(np.float64) for k, v in feeds.items()}
    rng = np.random.default_rng(1)
    for _ in range(3):
        t = rng.standard_normal(grad.shape)
        numeric = _central_difference(to_float64(model), feeds64, wrt, cls, t)
        assert abs(numeric - float(np.sum(grad * t))) <= 1e-4 * max(1.0, abs(numeric))


@pytest.mark.parametrize("kind", list(CASES))
def test_map_keeps_the_input_shape_and_metadata_names_modality_and_axes(kind):
    net, model, feeds = build(kind)
    name, modality, axes = CASES[kind]
    exported = export_saliency(model, _options(kind))
    saliency = _run(exported, feeds)["saliency"]
    expected = np.abs(torch_gradient(net, feeds, name))
    np.testing.assert_allclose(saliency, expected / expected.max(), rtol=1e-4, atol=1e-6)
    meta = metadata.read(exported)
    assert (meta["input"], meta["modality"], meta["axes"]) == (name, modality, axes)
    assert meta["map_axes"] == axes and "layout" not in meta


def test_cache_input_stays_an_input_and_its_output_is_unchanged():
    _, model, feeds = build("audio")
    exported = export_saliency(model, _options("audio"))
    assert [i.name for i in exported.graph.input] == ["speech", "cache"]
    got, plain = _run(exported, feeds), _run(model, feeds)
    np.testing.assert_array_equal(got["next_cache"], plain["next_cache"])
    np.testing.assert_array_equal(got["logits"], plain["logits"])


@pytest.mark.parametrize(("kind", "axis", "how"), [("nct", 1, np.max), ("ntc", -1, np.sum)])
def test_channel_axis_reduces_to_a_time_map(kind, axis, how):
    net, model, feeds = build(kind)
    reduce = "absmax" if how is np.max else "abssum"
    exported = export_saliency(model, _options(kind, channel_axis=axis, reduce=reduce))
    saliency = _run(exported, feeds)["saliency"]
    expected = how(np.abs(torch_gradient(net, feeds, "x")), axis=axis)
    assert saliency.shape == (1, 32)
    np.testing.assert_allclose(saliency, expected / expected.max(), rtol=1e-4, atol=1e-6)
    assert metadata.read(exported)["map_axes"] == "N,T"


def test_normalization_is_per_sample():
    net, model, feeds = build("tabular")
    x = np.random.default_rng(3).standard_normal((3, 12)).astype(np.float32) * [[1], [10], [0.1]]
    exported = export_saliency(model, _options("tabular", batch=3, normalize="max"))
    saliency = _run(exported, {"x": x.astype(np.float32)})["saliency"]
    grads = np.abs(torch_gradient(net, {"x": x.astype(np.float32)}, "x"))
    np.testing.assert_allclose(saliency, grads / grads.max(axis=1, keepdims=True), rtol=1e-4)
    np.testing.assert_allclose(saliency.max(axis=1), 1.0, rtol=1e-6)


def test_integrated_gradients_completeness_on_a_series():
    """IG with a zeros baseline sums to f(x) - f(0) (Sundararajan et al. 2017) on [N, C, T]."""
    _, model, feeds = build("nct")
    options = _options("nct", method="integrated", reduce="none", normalize="none")
    options.params.steps = 256
    got = _run(export_saliency(model, options), feeds)
    cls = int(np.argmax(got["logits"][0]))
    zero = _run(model, {"x": np.zeros_like(feeds["x"])})["logits"][0, cls]
    np.testing.assert_allclose(got["saliency"].sum(), got["logits"][0, cls] - zero, rtol=2e-3)


def test_guess_and_override_of_modality_and_axes():
    _, model, _ = build("audio")
    guessed = metadata.read(export_saliency(model, ExportOptions(input="speech")))
    assert (guessed["modality"], guessed["axes"]) == ("series", "N,T,C")
    named = metadata.read(export_saliency(model, ExportOptions(input="speech", axes="N,T,F")))
    assert named["axes"] == "N,T,F"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input": "nosuch"}, r"--input nosuch: the model has no such input \(inputs: x float"),
        ({"input_shape": (1, 4, 16)}, r"--input-shape 1,4,16: input 'x' has shape \[\?, 4, 32\]"),
        ({"input_shape": (1, 4)}, r"--input-shape 1,4: input 'x' has rank 3"),
        ({"channel_axis": 3}, r"--channel-axis 3: out of range .*valid: 1..2"),
        ({"channel_axis": 0}, r"--channel-axis 0: out of range .*axis 0 is the batch"),
        ({"method": "gradcam"}, r"--method gradcam: Grad-CAM needs an image input"),
        ({"layout": "NCHW"}, r"--layout NCHW: only for image inputs"),
        ({"modality": "image"}, r"--modality image: input 'x' has shape \(1, 4, 32\)"),
        ({"modality": "speech"}, r"--modality speech: choose one of image, audio"),
        ({"axes": "T,C,N"}, r"--axes T,C,N: name each of the 3 axes"),
        ({"roi": (0, 0, 4, 4)}, r"--roi: only for image inputs"),
    ],
)
def test_bad_input_flags_are_named(changes, message):
    _, model, _ = build("nct")
    with pytest.raises(InputError, match=message):
        export_saliency(model, ExportOptions(**changes))


def test_cli_exports_an_audio_model(tmp_path, capsys):
    _, model, feeds = build("audio")
    source, target = tmp_path / "kws.onnx", tmp_path / "kws_sal.onnx"
    onnx.save(model, str(source))
    argv = ["export", str(source), "-o", str(target), "--input", "speech", "--modality", "audio"]
    assert main(argv) == 0
    exported = onnx.load(str(target))
    assert metadata.read(exported)["axes"] == "N,T,F"
    assert _run(exported, feeds)["saliency"].shape == (1, 20, 10)
    assert main([*argv, "--channel-axis", "5"]) != 0
    assert "--channel-axis 5: out of range" in capsys.readouterr().err


def test_device_runtime_returns_the_map_of_a_numpy_array(tmp_path):
    """edgesal.runtimes loads a non-image export and, fed a numpy array through the Python API,
    returns the map in the input's per-sample shape; the cache input is fed or left zero."""
    _, model, feeds = build("audio")
    path = tmp_path / "kws.onnx"
    onnx.save(export_saliency(model, _options("audio")), str(path))
    variant = MethodChain.load([str(path)])[0]
    got = variant.run(feeds["speech"], None, extra={"cache": feeds["cache"]})
    direct = _run(onnx.load(str(path)), feeds)
    np.testing.assert_allclose(got.saliency, direct["saliency"][0], rtol=1e-6)
    assert got.top1 == int(np.argmax(direct["logits"][0]))
    empty = variant.run(feeds["speech"], None)  # no cache given: an empty (zero) cache
    zeros = _run(onnx.load(str(path)), {**feeds, "cache": np.zeros_like(feeds["cache"])})
    np.testing.assert_allclose(empty.saliency, zeros["saliency"][0], rtol=1e-6)
    with pytest.raises(ModelError, match=r"no inputs named \['mask'\]"):
        variant.run(feeds["speech"], None, extra={"mask": feeds["cache"]})


def test_device_runtime_refuses_an_array_of_another_shape(tmp_path):
    _, model, feeds = build("audio")
    path = tmp_path / "kws.onnx"
    onnx.save(export_saliency(model, _options("audio")), str(path))
    variant = MethodChain.load([str(path)])[0]
    with pytest.raises(
        ModelError, match=r"input 'speech' takes \[1, 20, 10\]; got .*\[1, 30, 10\]"
    ):
        variant.run(np.zeros((1, 30, 10), np.float32), None)


def test_every_gradient_method_on_a_series():
    """One export, several methods sharing the forward: gradxinput = x * torch's gradient,
    SmoothGrad with no noise = vanilla, guided and IG give maps of the input's shape."""
    net, model, feeds = build("ntc")
    options = _options("ntc", reduce="none", normalize="none")
    options.methods = ["vanilla", "gradxinput", "smoothgrad", "guided", "integrated"]
    options.params.sigma, options.params.samples, options.params.steps = 0.0, 2, 4
    got = _run(export_saliency(model, options), feeds)
    grad = torch_gradient(net, feeds, "x")
    np.testing.assert_allclose(got["saliency_vanilla"], grad, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["saliency_gradxinput"], feeds["x"] * grad, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["saliency_smoothgrad"], grad, rtol=1e-4, atol=1e-6)
    assert got["saliency_guided"].shape == got["saliency_integrated"].shape == feeds["x"].shape


@pytest.mark.parametrize("kind", list(CASES))
def test_tflite_export_of_non_image_models_matches_onnx(kind):
    """1-D convs and pools (and their gradients) are lifted to 2-D for TFLite: the LiteRT map
    equals the ONNX map, other inputs (the cache) included."""
    _, model, feeds = build(kind)
    exported = export_saliency(model, _options(kind))
    expected = _run(exported, feeds)["saliency"]
    runner = interpreter(to_tflite(exported)).get_signature_runner()
    np.testing.assert_allclose(runner(**feeds)["saliency"], expected, atol=1e-5)


def _symbolic_cache(param: str) -> tuple:
    net, model, feeds = build("audio")
    cache = next(i for i in model.graph.input if i.name == "cache")
    cache.type.tensor_type.shape.dim[1].Clear()
    cache.type.tensor_type.shape.dim[1].dim_param = param
    return net, model, feeds


def test_other_inputs_with_symbolic_dims_take_shape_or_batch():
    """A cache whose length is symbolic needs --shape; a symbolic dim named like one of the
    explained input's dims (here its batch, N) takes that dim's size."""
    net, model, feeds = _symbolic_cache("K")
    with pytest.raises(InputError, match=r"input 'cache' \(not explained\) has symbolic dims at "
                       r"axes \[1\]; fix them with --shape cache="):  # fmt: skip
        export_saliency(model, _options("audio"))
    exported = export_saliency(model, _options("audio", shapes={"cache": (1, 2, 10)}))
    dims = [d.dim_value for d in exported.graph.input[1].type.tensor_type.shape.dim]
    assert dims == [1, 2, 10]
    raw = _options("audio", reduce="none", normalize="none", shapes={"cache": (1, 2, 10)})
    grad = _run(export_saliency(model, raw), feeds)["saliency"]
    np.testing.assert_allclose(grad, torch_gradient(net, feeds, "speech"), rtol=1e-4, atol=1e-6)
    _, batch_named, _ = _symbolic_cache("N")
    exported = export_saliency(batch_named, _options("audio"))
    assert [d.dim_value for d in exported.graph.input[1].type.tensor_type.shape.dim] == [1, 1, 10]


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"nosuch": (1,)}, r"--shape nosuch=...: no other input of that name"),
        ({"cache": (1, 2)}, r"--shape cache=1,2: input 'cache' has rank 3"),
        ({"cache": (1, 2, 9)}, r"--shape cache=1,2,9: input 'cache' has shape \[\?, \?, 10\]"),
    ],
)
def test_bad_shape_flags_are_named(shapes, message):
    _, model, _ = _symbolic_cache("K")
    with pytest.raises(InputError, match=message):
        export_saliency(model, _options("audio", shapes=shapes))


def test_cli_shape_flag_fixes_another_input(tmp_path, capsys):
    _, model, feeds = _symbolic_cache("K")
    source, target = tmp_path / "kws.onnx", tmp_path / "kws_sal.onnx"
    onnx.save(model, str(source))
    argv = ["export", str(source), "-o", str(target), "--input", "speech"]
    assert main(argv) == 2
    assert "--shape cache=D0,D1,..." in capsys.readouterr().err
    assert main([*argv, "--shape", "cache=1,2,10"]) == 0
    assert _run(onnx.load(str(target)), feeds)["saliency"].shape == (1, 20, 10)
    with pytest.raises(SystemExit):
        main([*argv, "--shape", "cache"])
