"""Hand-built non-image models with a known answer, for the series/tabular evaluation tests.

``bump_detector``: [N, T, C] -> (none, bump): a 5-tap bump filter over channel 0, ReLU, the
strongest response over time; class 1 wins when a bump is present. ``sparse_tabular``: [N, F] ->
4 classes from features 2 and 7 only, through a tanh layer. Both are exported by edgesal with
``--modality``; the faithful map of a bump sits on the bump, the tabular one on features 2 and 7.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgesal.export import ExportOptions, export_saliency

T, C, F = 64, 2, 12


def _model(nodes, name, shape, weights) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", None])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def bump_detector(layout: str = "NTC") -> onnx.ModelProto:
    """[N, T, C] (``layout`` NCT: [N, C, T]) -> (none, bump) logits."""
    bump = np.array([0.25, 0.75, 1.0, 0.75, 0.25], np.float32)
    kernel = np.zeros((1, C, 5), np.float32)
    kernel[0, 0] = bump
    weights = {"k": kernel, "w": np.array([[-3.0], [3.0]], np.float32),
               "b": np.array([3.0, -3.0], np.float32)}  # fmt: skip
    first = "xt" if layout == "NTC" else "x"
    nodes = (
        [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1])] if layout == "NTC" else []
    )
    nodes += [
        helper.make_node("Conv", [first, "k"], ["r"], pads=[2, 2]),
        helper.make_node("Relu", ["r"], ["rr"]),
        helper.make_node("ReduceMax", ["rr"], ["m"], axes=[2], keepdims=0),
        helper.make_node("Gemm", ["m", "w", "b"], ["logits"], transB=1),
    ]
    return _model(nodes, "bump", [T, C] if layout == "NTC" else [C, T], weights)


def sparse_tabular() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    hidden = np.zeros((F, 6), np.float32)
    hidden[[2, 7]] = rng.standard_normal((2, 6)) * 1.5
    weights = {"h": hidden, "hb": np.zeros(6, np.float32),
               "o": rng.standard_normal((6, 4)).astype(np.float32) * 2,
               "ob": np.zeros(4, np.float32)}  # fmt: skip
    nodes = [
        helper.make_node("Gemm", ["x", "h", "hb"], ["a"]),
        helper.make_node("Tanh", ["a"], ["t"]),
        helper.make_node("Gemm", ["t", "o", "ob"], ["logits"]),
    ]
    return _model(nodes, "tabular", [F], weights)


def bump_samples(count: int, seed: int = 0) -> np.ndarray:
    """[count, T, C]: noise, each with a bump of height 2 at a random time in channel 0."""
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.standard_normal((count, T, C)).astype(np.float32)
    for i, centre in enumerate(rng.integers(8, T - 8, count)):
        x[i, centre - 2 : centre + 3, 0] += 2 * np.array([0.3, 0.8, 1.0, 0.8, 0.3])
    return x


def exported(kind: str, method: str = "gradxinput") -> onnx.ModelProto:
    """``series``: [N, T, C], channel reduced (map [T]); ``series_nct``: [N, C, T], map kept
    per channel ([C, T]); ``tabular``: [N, F]."""
    if kind == "series_nct":
        options = ExportOptions(method=method, input="x", modality="series", axes="N,C,T")
        return export_saliency(bump_detector("NCT"), options)
    if kind == "series":
        options = ExportOptions(method=method, input="x", modality="series", axes="N,T,C",
                                channel_axis=2)  # fmt: skip
        return export_saliency(bump_detector(), options)
    options = ExportOptions(method=method, input="x", modality="tabular")
    return export_saliency(sparse_tabular(), options)
