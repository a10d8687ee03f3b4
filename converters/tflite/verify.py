"""Checking a TFLite conversion against onnxruntime, kinks included.

Two float32 runtimes never agree bit for bit, so at a ReLU6 kink one may see 6 - 1e-7 where the
other sees 6: the masks differ there and the backward pass carries the difference up to the
input. A synced comparison removes that: the TFLite model also returns every tensor a gradient
decision reads (comparison and ArgMax inputs); onnxruntime then runs the ONNX model with those
tensors fed in, so both take the same branch at every kink and the rest must agree to float
rounding. The forward tensors themselves are compared as well, so a wrong forward still fails.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from edgesal.converters.cleanup.fold import fold_constants

DECISIONS = {"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "ArgMax", "ArgMin"}


def decision_tensors(model: onnx.ModelProto) -> list[str]:
    """Run-time tensors read by comparisons and ArgMax (graph inputs excluded)."""
    constants = {t.name for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type in DECISIONS:
            for name in node.input:
                if name and name not in constants | inputs and name not in names:
                    names.append(name)
    return names


def probed(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """(``model`` folded, with its decision tensors as extra outputs; their names)."""
    model = copy.deepcopy(model)
    fold_constants(model)
    names = decision_tensors(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    typed = {v.name: v for v in inferred.graph.value_info}
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(typed[n] for n in names if n not in outputs)
    return model, names


def cut_at(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """``model`` with tensors ``names`` turned into graph inputs (their producers disconnected)."""
    model = copy.deepcopy(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    typed = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    cut = set(names)
    for node in model.graph.node:
        for i, out in enumerate(node.output):
            if out in cut:
                node.output[i] = f"{out}/cut"
    model.graph.input.extend(typed[n] for n in names)
    return model


@dataclass
class Comparison:
    """Max |difference| / range of each output, synced and raw, and the tensors compared."""

    synced: dict[str, float]
    raw: dict[str, float]
    forward: dict[str, float]
    flipped: int  # elements where a comparison or ArgMax decided differently in TFLite

    def worst(self) -> float:
        return max(list(self.synced.values()) + list(self.forward.values()))


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| over the range of ``expected`` (its max |value| when constant)."""
    expected = np.asarray(expected, np.float64)
    got = np.asarray(got, np.float64)
    if got.shape != expected.shape:
        raise AssertionError(f"shape {got.shape} != {expected.shape}")
    scale = float(np.ptp(expected)) or float(np.abs(expected).max()) or 1.0
    return float(np.abs(got - expected).max()) / scale


def onnx_layout(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A TFLite output or probe back in the ONNX layout (NHWC -> NCHW when shapes say so)."""
    if value.shape == tuple(shape):
        return value
    if value.ndim == 4 and value.transpose(0, 3, 1, 2).shape == tuple(shape):
        return value.transpose(0, 3, 1, 2)
    raise AssertionError(f"cannot map a TFLite tensor of shape {value.shape} to {shape}")


def compare(
    model: onnx.ModelProto,
    names: list[str],
    feeds: dict[str, np.ndarray],
    tflite_outputs: dict[str, np.ndarray],
) -> Comparison:
    """Compare the probed TFLite outputs with onnxruntime, raw and synced at ``names``."""
    import onnxruntime as ort

    shapes = _shapes(model)
    outputs = [o.name for o in model.graph.output if o.name not in names]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2

    def run(m: onnx.ModelProto, extra: dict) -> dict[str, np.ndarray]:
        session = ort.InferenceSession(m.SerializeToString(), options, ["CPUExecutionProvider"])
        wanted = [o.name for o in m.graph.output]
        return dict(zip(wanted, session.run(wanted, {**feeds, **extra}), strict=True))

    raw = run(model, {})
    probes = {n: onnx_layout(tflite_outputs[n], shapes[n]) for n in names}
    synced = run(cut_at(model, names), probes)
    got = {o: onnx_layout(tflite_outputs[o], shapes[o]) for o in outputs}
    flipped = decision_flips(model, raw, probes)
    return Comparison(
        synced={o: relative_error(got[o], synced[o]) for o in outputs},
        raw={o: relative_error(got[o], raw[o]) for o in outputs},
        forward={n: relative_error(probes[n], raw[n]) for n in names},
        flipped=flipped,
    )


_COMPARE = {
    "Greater": np.greater,
    "Less": np.less,
    "GreaterOrEqual": np.greater_equal,
    "LessOrEqual": np.less_equal,
    "Equal": np.equal,
}


def decision_flips(model: onnx.ModelProto, raw: dict, probes: dict) -> int:
    """How many comparison / ArgMax results differ between onnxruntime's and TFLite's values."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    flips = 0
    for node in model.graph.node:
        if node.op_type not in DECISIONS:
            continue
        ours = [probes.get(n, constants.get(n)) for n in node.input]
        theirs = [raw.get(n, constants.get(n)) for n in node.input]
        if any(v is None for v in ours + theirs):
            continue
        if node.op_type in _COMPARE:
            fn = _COMPARE[node.op_type]
            flips += int(np.count_nonzero(fn(*ours) != fn(*theirs)))
        else:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            fn = np.argmax if node.op_type == "ArgMax" else np.argmin
            flips += int(np.count_nonzero(fn(ours[0], axis) != fn(theirs[0], axis)))
    return flips


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.output)
    return {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in values}


def tflite_feeds(details: list[dict], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ONNX feeds laid out as the TFLite signature wants them (NCHW images -> NHWC)."""
    result = {}
    for d in details:
        value = feeds[d["name"]]
        want = tuple(int(x) for x in d["shape"])
        if value.shape != want and value.ndim == 4:
            value = value.transpose(0, 2, 3, 1)
        result[d["name"]] = np.array(value, dtype=d["dtype"], order="C")
    return result
