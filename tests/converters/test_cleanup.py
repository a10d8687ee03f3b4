"""Cleanup passes on small graphs: fewer nodes, same outputs on onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from edgesal.converters.cleanup import clean
from edgesal.converters.cleanup.fold import fold_constants
from edgesal.converters.cleanup.passes import (
    fold_batchnorm,
    fold_bias_add,
    fold_pad_into_conv,
    fold_scale_mul,
    merge_transposes,
    remove_identities,
)

rng = np.random.default_rng(0)
make = helper.make_node


def model(nodes, consts, x_shape=(1, 3, 8, 8), outputs=("y",)) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x_shape))]
    inits = [
        numpy_helper.from_array(
            np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v), k
        )
        for k, v in consts.items()
    ]
    graph = helper.make_graph(nodes, "g", inputs, [], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    typed = {v.name: v for v in inferred.graph.value_info}
    m.graph.output.extend(typed[o] for o in outputs)
    return m


def outputs(m: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def check_pass(m: onnx.ModelProto, cleanup, removed: int) -> onnx.ModelProto:
    x = rng.uniform(-1, 1, [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim])
    x = x.astype(np.float32)
    before = outputs(m, x)
    cleaned = onnx.ModelProto()
    cleaned.CopyFrom(m)
    assert cleanup(cleaned) == removed
    onnx.checker.check_model(cleaned, full_check=True)
    for a, b in zip(before, outputs(cleaned, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return cleaned


def test_batchnorm_folds_into_conv():
    bn = {
        "s": rng.uniform(0.5, 2, 4),
        "b": rng.uniform(-1, 1, 4),
        "m": rng.uniform(-1, 1, 4),
        "v": rng.uniform(0.5, 2, 4),
    }
    m = model(
        [
            make("Conv", ["x", "w", "cb"], ["c"]),
            make("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], epsilon=1e-3),
        ],
        {"w": rng.standard_normal((4, 3, 3, 3)), "cb": rng.standard_normal(4), **bn},
    )
    cleaned = check_pass(m, fold_batchnorm, 1)
    assert [n.op_type for n in cleaned.graph.node] == ["Conv"]


def test_bias_add_folds_into_conv():
    m = model(
        [make("Conv", ["x", "w"], ["c"]), make("Add", ["bias", "c"], ["y"])],
        {"w": rng.standard_normal((4, 3, 1, 1)), "bias": rng.standard_normal((1, 4, 1, 1))},
    )
    cleaned = check_pass(m, fold_bias_add, 1)
    assert [n.op_type for n in cleaned.graph.node] == ["Conv"]


def test_per_channel_scale_folds_into_depthwise_conv():
    m = model(
        [make("Conv", ["x", "w", "cb"], ["c"], group=3), make("Mul", ["c", "s"], ["y"])],
        {
            "w": rng.standard_normal((3, 1, 3, 3)),
            "cb": rng.standard_normal(3),
            "s": rng.uniform(0.5, 2, (3, 1, 1)),
        },
    )
    cleaned = check_pass(m, fold_scale_mul, 1)
    assert [n.op_type for n in cleaned.graph.node] == ["Conv"]


def test_scale_that_varies_in_space_stays():
    m = model(
        [make("Conv", ["x", "w"], ["c"]), make("Mul", ["c", "s"], ["y"])],
        {"w": rng.standard_normal((4, 3, 1, 1)), "s": rng.uniform(0.5, 2, (1, 4, 8, 8))},
    )
    check_pass(m, fold_scale_mul, 0)


def test_zero_pad_folds_into_strided_conv():
    """Keras 'same' on a stride-2 conv: ZeroPadding2D((0, 1), (0, 1)) + a 'valid' Conv."""
    m = model(
        [
            make("Pad", ["x", "pads"], ["p"]),
            make("Conv", ["p", "w"], ["y"], strides=[2, 2], pads=[1, 0, 0, 0]),
        ],
        {"w": rng.standard_normal((3, 1, 3, 3)), "pads": np.array([0, 0, 0, 0, 0, 0, 1, 1])},
    )
    m.graph.node[1].attribute.append(helper.make_attribute("group", 3))
    cleaned = check_pass(m, fold_pad_into_conv, 1)
    (conv,) = cleaned.graph.node
    assert next(a.ints for a in conv.attribute if a.name == "pads") == [1, 0, 1, 1]


def test_channel_or_nonzero_pads_stay():
    channels = model(
        [make("Pad", ["x", "pads"], ["p"]), make("Conv", ["p", "w"], ["y"])],
        {"w": rng.standard_normal((2, 5, 1, 1)), "pads": np.array([0, 1, 0, 0, 0, 1, 0, 0])},
    )
    check_pass(channels, fold_pad_into_conv, 0)
    filled = model(
        [make("Pad", ["x", "pads", "v"], ["p"]), make("Conv", ["p", "w"], ["y"])],
        {
            "w": rng.standard_normal((2, 3, 3, 3)),
            "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1]),
            "v": np.array(1.0),
        },
    )
    check_pass(filled, fold_pad_into_conv, 0)


def test_identities_removed_graph_output_kept():
    m = model(
        [make("Identity", ["x"], ["a"]), make("Relu", ["a"], ["r"]), make("Dropout", ["r"], ["y"])],
        {},
    )
    cleaned = check_pass(m, remove_identities, 2)
    assert [n.op_type for n in cleaned.graph.node] == ["Relu"]
    assert cleaned.graph.node[0].output[0] == "y"


def test_transpose_pairs_cancel_across_unary_chains():
    nchw, nhwc = [0, 3, 1, 2], [0, 2, 3, 1]
    m = model(
        [
            make("Transpose", ["x"], ["t1"], perm=nhwc),
            make("Transpose", ["t1"], ["t2"], perm=nchw),  # pair: cancels
            make("Transpose", ["t2"], ["t3"], perm=nhwc),
            make("Relu", ["t3"], ["r"]),
            make("Clip", ["r", "lo", "hi"], ["c"]),
            make("Transpose", ["c"], ["y"], perm=nchw),  # inverse after a unary chain
        ],
        {"lo": np.float32(0), "hi": np.float32(0.5)},
    )
    cleaned = check_pass(m, merge_transposes, 4)
    assert [n.op_type for n in cleaned.graph.node] == ["Relu", "Clip"]


def test_constant_subgraphs_fold():
    m = model(
        [
            make("Transpose", ["w"], ["wt"], perm=[1, 0, 2, 3]),
            make("Slice", ["wt", "st", "en", "ax", "sp"], ["wf"]),
            make("Conv", ["x", "wf"], ["y"]),
        ],
        {
            "w": rng.standard_normal((3, 4, 3, 3)),
            "st": np.asarray([2, 2], np.int64),
            "en": np.asarray([-10, -10], np.int64),
            "ax": np.asarray([2, 3], np.int64),
            "sp": np.asarray([-1, -1], np.int64),
        },
    )
    cleaned = check_pass(m, fold_constants, 2)
    assert [n.op_type for n in cleaned.graph.node] == ["Conv"]


def test_clean_runs_all_passes():
    m = model(
        [
            make("Identity", ["x"], ["a"]),
            make("Conv", ["a", "w"], ["c"]),
            make("Add", ["c", "bias"], ["y"]),
        ],
        {"w": rng.standard_normal((4, 3, 3, 3)), "bias": rng.standard_normal((4, 1, 1))},
    )
    removed = clean(m)
    assert removed["remove_identities"] == 1 and removed["fold_bias_add"] == 1
    assert [n.op_type for n in m.graph.node] == ["Conv"]
