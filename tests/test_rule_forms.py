"""Every gradient rule's emitted graph through the two rewrites that recognize its idioms.

For each rule case of tests/rule_cases (the registry-driven cases of tests/test_rules.py), the
float32 gradient graph, with the cotangents as run-time inputs so nothing folds away, goes
through

- the runtime's wire rewrite (``edgesal.runtimes.backends.onnx_masks.nchwc_masks``): every mask
  of the idiom :mod:`edgesal.graph.idioms.masks` recognizes is replaced and the outputs stay
  bit-identical on onnxruntime;
- the TFLite lowering (``edgesal.converters.tflite``): the file equals onnxruntime, and the
  masks became float operators (no boolean kernels).

So adding an operator is its rule plus its case: this file needs no edit. Operators the TFLite
lowering does not cover are listed in ``TFLITE_GAPS`` with the reason, and only those may fail
there (docs/converters.md lists the lowerings).
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import tests.rule_cases  # noqa: F401  (registers the cases)
from edgesal.autodiff.engine import input_gradient
from edgesal.converters.errors import ConversionError, UnsupportedOpsError
from edgesal.converters.tflite.convert import to_tflite
from edgesal.converters.tflite.verify import relative_error
from edgesal.errors import EdgesalError
from edgesal.graph.builder import Builder
from edgesal.graph.idioms import masks
from edgesal.graph.info import TensorInfo
from edgesal.graph.optraits import with_trait
from edgesal.image_input import find_image_input
from edgesal.runtimes.backends.onnx_masks import nchwc_masks
from tests.converters.tflite_harness import interpreter, operator_names
from tests.gradcheck import CASES, Case, build_forward

# What the TFLite lowering does not cover (docs/converters.md), as its errors say it; a case may
# fail conversion only with one of these.
TFLITE_GAPS = (
    "no lowering for these operators",  # Elu, Selu, Erf, Softplus, LpPool, *Normalization, ...
    "only 2-D Conv is supported",
    "its weight 'w' must be a constant",
    "ConvTranspose with unequal strides",
    "only H and W of a 4-D tensor can be resized",
    "tf_crop_and_resize with a non-zero extrapolation_value",
    "keep_aspect_ratio_policy other than 'stretch'",
    "has no TFLite builtin",
    "1-D MatMul operands are not supported",
    "only 4-D is supported",
    "must be a constant",  # MaxPool's tie-splitting gradient pads with a computed value
    "must be constants",
    "only 2-D ConvTranspose is supported",
    "are not supported for pooling",
    "the Indices output of MaxPool is not supported",
    "is a constant; nothing computes it",  # an all-zero gradient (an empty Slice)
)
BOOLEAN_KERNELS = {"GREATER", "LESS", "LOGICAL_AND", "CAST"}


def _cases():
    for op_type in sorted(CASES):
        for i, generator in enumerate(CASES[op_type]):
            for case in generator(np.random.default_rng(zlib.crc32(op_type.encode()) + i)):
                if case.op_type == op_type:
                    for wrt in case.wrt:
                        yield pytest.param(case, wrt, id=f"{case.label()}-d{wrt}")


def gradient_graph(
    case: Case, wrt: str, mode: str = "vanilla"
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """float32 forward + vjp w.r.t. ``wrt``, the cotangents as graph inputs; and its feeds."""
    model = build_forward(case, np.float32)
    rng = np.random.default_rng(0)
    feeds = {
        k: np.asarray(v, np.float32)
        for k, v in case.inputs.items()
        if v is not None and v.dtype.kind == "f" and k not in case.constants
    }
    info = TensorInfo(model)
    seeds = {}
    for i, out in enumerate(list(model.graph.output)):
        name = f"cotangent{i}"
        shape = info.shape(out.name)
        model.graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
        feeds[name] = rng.standard_normal(shape).astype(np.float32)
        seeds[out.name] = name
    b = Builder(model.graph, case.opset)
    grad = input_gradient(model.graph, info, b, seeds, wrt, mode=mode)
    if grad in feeds:  # dx = dy (Add, Identity): an output distinct from the input it equals
        grad = b.Identity(grad)
    model.graph.output.append(
        helper.make_tensor_value_info(grad, onnx.TensorProto.FLOAT, info.shape(wrt))
    )
    onnx.checker.check_model(model, full_check=True)
    return model, feeds


def idiom_masks(model: onnx.ModelProto) -> int:
    """How many float Casts of the mask idiom (constant bounds) the graph holds."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return sum(
        1
        for n in model.graph.node
        if n.op_type == "Cast" and masks.interval(n.input[0], producer.get, consts.get) is not None
    )


def _tflite_feeds(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds with the input the converter stores NHWC transposed (decided by name, as the
    converter does: shapes alone are ambiguous when C == H == W)."""
    try:
        image = find_image_input(model, TensorInfo(model), None, None)
    except EdgesalError:
        return feeds
    if image.layout != "NCHW":
        return feeds
    return dict(
        feeds, **{image.name: np.ascontiguousarray(feeds[image.name].transpose(0, 2, 3, 1))}
    )


def _run(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize(("case", "wrt"), list(_cases()))
def test_runtime_rewrite_replaces_every_mask_bit_identically(case: Case, wrt: str):
    model, feeds = gradient_graph(case, wrt)
    raw = model.SerializeToString()
    rewritten = nchwc_masks(raw)
    assert idiom_masks(onnx.load_from_string(rewritten)) == 0, "a mask the rewrite missed"
    for want, got in zip(_run(raw, feeds), _run(rewritten, feeds), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("case", "wrt"), list(_cases()))
def test_tflite_lowering_of_the_emitted_form(case: Case, wrt: str):
    model, feeds = gradient_graph(case, wrt)
    try:
        data = to_tflite(model)
    except (UnsupportedOpsError, ConversionError) as exc:
        gap = next((g for g in TFLITE_GAPS if g in str(exc)), None)
        if gap is None:
            raise AssertionError(f"{case.label()}: the emitted form does not lower: {exc}") from exc
        pytest.xfail(f"TFLite lowering gap: {gap}")
    ops = operator_names(data)
    if idiom_masks(model):
        assert not BOOLEAN_KERNELS & set(ops), f"masks kept boolean kernels: {ops}"
    expected = _run(model.SerializeToString(), feeds)
    it = interpreter(data)
    got = it.get_signature_runner()(**_tflite_feeds(model, feeds))
    for out, want in zip(model.graph.output, expected, strict=True):
        assert got[out.name].shape == want.shape, out.name
        assert relative_error(got[out.name], want) <= 1e-5, f"{case.label()}: {out.name}"


def test_guided_trait_matches_the_rules():
    """The ops declared ``guided`` in edgesal/graph/optraits.py are exactly those whose gradient
    changes in guided mode on some case (every other rule is exact in both modes)."""
    changed, seen = set(), set()
    for param in _cases():
        case, wrt = param.values
        seen.add(case.op_type)
        model, feeds = gradient_graph(case, wrt)
        guided, _ = gradient_graph(case, wrt, mode="guided")
        if any(
            not np.array_equal(a, b)
            for a, b in zip(
                _run(model.SerializeToString(), feeds),
                _run(guided.SerializeToString(), feeds),
                strict=True,
            )
        ):
            changed.add(case.op_type)
    assert changed == with_trait("guided") & seen
