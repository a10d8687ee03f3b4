"""One small graph per ONNX operator lowering (and per tricky attribute), TFLite vs onnxruntime.

A lowering with no case here fails :func:`test_every_lowering_has_a_case`.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edgesal.converters.errors import ConversionError, UnsupportedOpsError
from edgesal.converters.tflite.convert import to_tflite
from edgesal.converters.tflite.ops import LOWERINGS
from tests.converters.tflite_harness import Graph, check_graph

rng = np.random.default_rng(0)
make = helper.make_node


def f32(*shape, low=-1.0, high=1.0) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(np.float32)


def i64(*values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def one(op, x, consts=None, id="", tol=1e-5, extra_inputs=None, n_out=1, **attrs) -> Graph:
    """Graph of one node over run-time input x (and named constants)."""
    consts = consts or {}
    names = ["x", *(extra_inputs or {}), *consts]
    outs = [f"y{i}" for i in range(n_out)]
    node = make(op, names, outs, **attrs)
    inputs = {"x": x, **(extra_inputs or {})}
    return Graph([node], inputs, outs, consts, id=id or op, tol=tol)


def cases() -> list[Graph]:
    image = f32(1, 3, 9, 10)
    wide = f32(1, 8, 9, 10)
    c = []
    # --- convolutions
    c.append(
        one("Conv", image, {"w": f32(4, 3, 3, 3), "b": f32(4)}, "Conv-same", pads=[1, 1, 1, 1])
    )
    c.append(
        one(
            "Conv", image, {"w": f32(4, 3, 3, 3)}, "Conv-s2-asym", strides=[2, 2], pads=[0, 1, 1, 0]
        )
    )
    c.append(one("Conv", image, {"w": f32(5, 3, 3, 2)}, "Conv-dilated", dilations=[2, 1]))
    c.append(
        one("Conv", wide, {"w": f32(8, 1, 3, 3)}, "Conv-depthwise", group=8, pads=[1, 1, 1, 1])
    )
    c.append(
        one(
            "Conv",
            wide,
            {"w": f32(16, 1, 3, 3)},
            "Conv-depthwise-x2",
            group=8,
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        )
    )
    c.append(one("Conv", wide, {"w": f32(6, 4, 1, 1)}, "Conv-grouped", group=2))
    c.append(
        one(
            "Conv",
            image,
            {"w": f32(4, 3, 3, 3)},
            "Conv-auto",
            auto_pad="SAME_UPPER",
            strides=[2, 2],
        )
    )
    c.append(
        one(
            "ConvTranspose",
            wide,
            {"w": f32(8, 3, 3, 3), "b": f32(3)},
            "ConvTranspose-s2",
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
        )
    )
    c.append(
        one("ConvTranspose", wide, {"w": f32(8, 3, 3, 3)}, "ConvTranspose-s1", pads=[1, 0, 0, 1])
    )
    c.append(
        one(
            "ConvTranspose",
            wide,
            {"w": np.ones((8, 1, 1, 1), np.float32)},
            "ConvTranspose-zero-insert",
            group=8,
            strides=[2, 2],
        )
    )
    c.append(
        one(
            "ConvTranspose",
            wide,
            {"w": f32(8, 2, 3, 3)},
            "ConvTranspose-depthwise",
            group=8,
            strides=[2, 2],
            pads=[1, 1, 0, 0],
        )
    )
    c.append(
        one(
            "ConvTranspose", wide, {"w": f32(8, 2, 3, 3)}, "ConvTranspose-dilated", dilations=[2, 2]
        )
    )
    c.append(one("DepthToSpace", wide, id="DepthToSpace-DCR", blocksize=2, mode="DCR"))
    c.append(one("DepthToSpace", wide, id="DepthToSpace-CRD", blocksize=2, mode="CRD"))
    c.append(one("SpaceToDepth", f32(1, 2, 8, 6), blocksize=2))
    c.append(
        one(
            "ConvTranspose",
            wide,
            {"w": f32(8, 3, 3, 3), "b": f32(3)},
            "ConvTranspose-unequal-strides",
            strides=[2, 1],
            pads=[0, 1, 1, 0],
        )
    )
    c.append(
        one("ConvTranspose", image, {"w": f32(3, 4, 4, 4)}, "ConvTranspose-s3", strides=[3, 3])
    )
    c.append(
        one(
            "ConvTranspose",
            image,
            {"w": f32(3, 4, 4, 4), "b": f32(4)},
            "ConvTranspose-s2-k4-twice",  # output exactly twice the input: SAME phases
            strides=[2, 2],
            pads=[1, 2, 1, 0],
        )
    )
    c.append(
        one(
            "ConvTranspose",
            image,
            {"w": f32(3, 4, 3, 3)},
            "ConvTranspose-s2-twice-shifted",  # taps at offsets -1, 0: PAD (1, 0), then VALID
            strides=[2, 2],
            pads=[0, 0, 1, 1],
        )
    )
    # --- pooling
    c.append(
        one(
            "MaxPool",
            wide,
            id="MaxPool-pads",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        )
    )
    c.append(
        one("MaxPool", wide, id="MaxPool-ceil", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    )
    c.append(one("AveragePool", wide, id="AveragePool-valid", kernel_shape=[2, 2], strides=[2, 2]))
    c.append(
        one(
            "AveragePool",
            wide,
            id="AveragePool-include-pad",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            count_include_pad=1,
        )
    )
    c.append(
        one(
            "AveragePool",
            wide,
            id="AveragePool-exclude-pad",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[0, 0, 1, 1],
        )
    )
    c.append(
        one(
            "AveragePool",
            wide,
            id="AveragePool-ceil",
            kernel_shape=[2, 2],
            strides=[2, 2],
            ceil_mode=1,
        )
    )
    c.append(one("GlobalAveragePool", wide))
    c.append(one("GlobalMaxPool", wide))
    # --- elementwise
    for op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "PRelu"):
        c.append(one(op, wide, {"c": f32(8, 1, 1, low=0.5, high=2)}, f"{op}-broadcast"))
    c.append(
        Graph(
            [make("Add", ["a", "b"], ["y"])],
            {"a": wide, "b": f32(10)},
            ["y"],
            id="Add-runtime-lowrank",
        )
    )
    c.append(
        one("Pow", f32(2, 5, low=0.5, high=2), {"e": np.asarray(2.0, np.float32)}, "Pow-square")
    )
    c.append(
        one("Pow", f32(2, 5, low=0.5, high=2), {"e": np.asarray(1.5, np.float32)}, "Pow-general")
    )
    for op in (
        "Relu",
        "Sigmoid",
        "Tanh",
        "Exp",
        "Abs",
        "Neg",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Sin",
        "Cos",
        "HardSwish",
        "Reciprocal",
    ):
        c.append(one(op, wide * 3))
    for op in ("Log", "Sqrt"):
        c.append(one(op, f32(2, 3, 4, low=0.1, high=3)))
    c.append(one("LeakyRelu", wide, alpha=0.2))
    c.append(one("HardSigmoid", wide * 4, alpha=0.3, beta=0.4))
    c.append(one("Clip", wide * 8, {"lo": np.float32(0), "hi": np.float32(6)}, "Clip-relu6"))
    c.append(one("Clip", wide * 2, {"lo": np.float32(-1), "hi": np.float32(1)}, "Clip-n1-1"))
    c.append(one("Clip", wide * 4, {"lo": np.float32(-0.5), "hi": np.float32(2)}, "Clip-general"))
    c.append(
        Graph(
            [make("Clip", ["x", "", "hi"], ["y"])],
            {"x": wide * 4},
            ["y"],
            {"hi": np.float32(0.5)},
            id="Clip-max-only",
        )
    )
    c.append(
        Graph(
            [make("Clip", ["x", "lo"], ["y"])],
            {"x": wide * 4},
            ["y"],
            {"lo": np.float32(0)},
            id="Clip-relu",
        )
    )
    for op in ("Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual"):
        c.append(one(op, np.round(wide * 2), {"c": np.float32(1)}, f"{op}-scalar"))
    a, b = rng.random((3, 4)) > 0.5, rng.random((3, 4)) > 0.5
    for op in ("And", "Or", "Xor"):
        c.append(Graph([make(op, ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"], id=op))
    c.append(Graph([make("Not", ["a"], ["y"])], {"a": a}, ["y"], id="Not"))
    c.append(
        Graph(
            [make("Where", ["a", "x", "z"], ["y"])],
            {"a": a, "x": f32(3, 4), "z": f32(4)},
            ["y"],
            id="Where",
        )
    )
    c.append(one("Cast", wide, id="Cast-int", to=6))
    c.append(Graph([make("Cast", ["a"], ["y"], to=1)], {"a": a}, ["y"], id="Cast-bool"))
    c.append(one("Identity", wide))
    c.append(one("Dropout", wide))
    bn = {"s": f32(8, low=0.5, high=2), "bb": f32(8), "m": f32(8), "v": f32(8, low=0.5, high=2)}
    c.append(one("BatchNormalization", wide, bn, epsilon=1e-3))
    # masks as the gradient rules write them: Cast(And(Greater, Less)) on a Clip output
    clip_mask = [
        make("Clip", ["x", "lo", "hi"], ["act"]),
        make("Greater", ["act", "lo"], ["above"]),
        make("Less", ["act", "hi"], ["below"]),
        make("And", ["above", "below"], ["inside"]),
        make("Cast", ["inside"], ["mask"], to=1),
        make("Mul", ["d", "mask"], ["y"]),
    ]
    # edge values: 0 and 6 exactly, the smallest normal float, tiny and near-6 values on both
    # sides (XNNPACK flushes subnormals to zero, so those are left out)
    edges = np.asarray(
        [0, 2.0**-126, 1e-30, 1e-7, 0.5, 5.9999995, np.nextafter(6, 7), 6, -(2.0**-126), -1e-7],
        np.float32,
    )
    x = np.concatenate(
        [
            wide * 8,
            np.zeros((1, 8, 9, 10), np.float32),
            np.full((1, 8, 9, 10), 6, np.float32),
            np.resize(edges, (1, 8, 9, 10)),
        ],
        1,
    )
    c.append(
        Graph(
            clip_mask,
            {"x": x, "d": f32(*x.shape)},
            ["y", "mask"],
            {"lo": np.float32(0), "hi": np.float32(6)},
            id="mask-clip",
        )
    )
    relu_mask = [make("Greater", ["x", "t"], ["g"]), make("Cast", ["g"], ["y"], to=1)]
    c.append(
        Graph(
            relu_mask, {"x": np.round(wide * 3)}, ["y"], {"t": np.float32(1)}, id="mask-unbounded"
        )
    )
    # --- data movement
    c.append(one("Reshape", wide, {"s": i64(1, 8, 90)}))
    c.append(one("Flatten", wide, axis=2))
    c.append(one("Squeeze", f32(1, 8, 1, 5), {"a": i64(2)}))
    c.append(one("Unsqueeze", f32(8, 5), {"a": i64(0, 3)}))
    c.append(one("Transpose", wide, perm=[0, 2, 3, 1]))
    c.append(
        Graph(
            [make("Concat", ["a", "b"], ["y"], axis=1)],
            {"a": wide, "b": f32(1, 3, 9, 10)},
            ["y"],
            id="Concat",
        )
    )
    c.append(one("Split", wide, {"s": i64(3, 5)}, "Split-uneven", n_out=2, axis=1))
    c.append(one("Split", wide, {"s": i64(5, 5)}, "Split-even", n_out=2, axis=3))
    c.append(one("Slice", wide, {"s": i64(1, 2), "e": i64(7, 9), "a": i64(1, 3)}, "Slice-unit"))
    c.append(
        one(
            "Slice",
            wide,
            {"s": i64(-1, 8), "e": i64(-100, 0), "a": i64(2, 3), "st": i64(-1, -2)},
            "Slice-negative",
        )
    )
    c.append(one("Pad", wide, {"p": i64(0, 0, 1, 2, 0, 1, 0, 1)}, "Pad-zeros"))
    c.append(
        one(
            "Pad",
            wide,
            {"p": i64(0, 0, 1, -2, 0, 1, -1, 1), "v": np.float32(0.5)},
            "Pad-value-crop",
        )
    )
    c.append(one("Pad", wide, {"p": i64(0, 0, 2, 1, 0, 0, 1, 2)}, "Pad-reflect", mode="reflect"))
    c.append(one("Expand", f32(8, 1, 1), {"s": i64(1, 8, 9, 10)}))
    c.append(one("Expand", np.arange(6).reshape(2, 3, 1), {"s": i64(2, 3, 4)}, "Expand-int"))
    c.append(one("Tile", wide, {"r": i64(1, 2, 1, 3)}))
    c.append(one("Gather", wide, {"i": i64(2, 0, 5)}, "Gather-axis1", axis=1))
    c.append(one("Gather", wide, {"i": np.asarray(-1, np.int64)}, "Gather-scalar", axis=3))
    c.append(
        Graph(
            [
                make(
                    "ConstantOfShape", ["s"], ["z"], value=helper.make_tensor("v", 1, [1], [0.25])
                ),
                make("Add", ["x", "z"], ["y"]),
            ],
            {"x": f32(300, 300)},
            ["y"],
            {"s": i64(300, 300)},
            id="ConstantOfShape",
        )
    )
    c.append(
        Graph(
            [make("Div", ["a", "b"], ["y"])],
            {"a": np.asarray([7, 9, 30, 5], np.int64)},
            ["y"],
            {"b": np.asarray([2, 4, 7, 5], np.int64)},
            id="Div-int64",
        )
    )
    window = [  # a window placed at run time, as edgesal's --roi-size graphs do
        make("Add", ["s", "k"], ["e"]),
        make("Slice", ["x", "s", "e", "ax"], ["y"]),
        make("Sub", ["tot", "s"], ["after"]),
        make("Concat", ["z2", "s", "z2", "after"], ["p"], axis=0),
        make("Pad", ["y", "p"], ["z"]),
    ]
    c.append(
        Graph(
            window,
            {"x": wide, "s": np.asarray([2, 3], np.int64)},
            ["z"],
            {"k": i64(4, 5), "ax": i64(2, 3), "tot": i64(5, 5), "z2": i64(0, 0)},
            id="Slice-Pad-runtime",
        )
    )
    # --- reductions
    for op in (
        "ReduceSum",
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceSumSquare",
        "ReduceLogSumExp",
    ):
        axes = {"axes": i64(1)} if op == "ReduceSum" else {}
        attrs = {} if op == "ReduceSum" else {"axes": [1]}
        c.append(one(op, wide, axes, keepdims=0, **attrs))
    c.append(one("ReduceMean", wide, id="ReduceMean-keep", axes=[2, 3], keepdims=1))
    c.append(one("ArgMax", wide, id="ArgMax-keep", axis=1, keepdims=1))
    c.append(one("ArgMin", f32(2, 7), axis=1, keepdims=0))
    c.append(one("TopK", f32(2, 3, 7), {"k": i64(3)}, n_out=2))
    c.append(one("TopK", f32(2, 7, 3), {"k": i64(2)}, "TopK-smallest", n_out=2, axis=1, largest=0))
    c.append(one("Softmax", wide, axis=1))
    c.append(one("LogSoftmax", f32(2, 7)))
    # --- linear algebra
    c.append(
        one(
            "Gemm",
            f32(2, 6),
            {"w": f32(5, 6), "b": f32(5)},
            "Gemm-fc",
            transB=1,
            alpha=0.5,
            beta=2.0,
        )
    )
    c.append(
        Graph(
            [make("Gemm", ["a", "x"], ["y"], transA=1)],
            {"x": f32(6, 5)},
            ["y"],
            {"a": f32(6, 2)},
            id="Gemm-const-lhs",
        )
    )
    c.append(
        Graph(
            [make("Gemm", ["x", "z", "c"], ["y"])],
            {"x": f32(2, 6), "z": f32(6, 5)},
            ["y"],
            {"c": f32(2, 5)},
            id="Gemm-runtime",
        )
    )
    c.append(one("MatMul", f32(2, 3, 6), {"w": f32(6, 4)}, "MatMul-const-rhs"))
    c.append(
        Graph(
            [make("MatMul", ["m", "x"], ["y"])],
            {"x": f32(2, 6, 4)},
            ["y"],
            {"m": f32(5, 6)},
            id="MatMul-const-lhs",
        )
    )
    c.append(
        Graph(
            [make("MatMul", ["x", "z"], ["y"])],
            {"x": f32(2, 3, 6), "z": f32(2, 6, 4)},
            ["y"],
            id="MatMul-batched",
        )
    )
    oh = [
        make("ArgMax", ["x"], ["i"], axis=1, keepdims=0),
        make("OneHot", ["i", "d", "v"], ["y"], axis=-1),
    ]
    c.append(
        Graph(
            oh,
            {"x": f32(2, 7)},
            ["y"],
            {"d": i64(7), "v": np.asarray([0, 1], np.float32)},
            id="OneHot",
        )
    )
    for trans_b, w in ((0, f32(7, 5)), (1, f32(5, 7))):
        picked = [
            *oh,
            make("Reshape", ["y", "s"], ["r"]),
            make("Gemm", ["r", "w", "c"], ["z"], transB=trans_b, alpha=0.5),
        ]
        consts = {"d": i64(7), "v": np.asarray([0, 1], np.float32), "s": i64(2, 7)}
        consts |= {"w": w, "c": f32(5)}
        c.append(Graph(picked, {"x": f32(2, 7)}, ["z"], consts, id=f"Gemm-one-hot-{trans_b}"))
    # --- resize
    sizes = lambda *s: {"r": np.zeros(0, np.float32), "sc": np.zeros(0, np.float32), "sz": i64(*s)}  # noqa: E731
    c.append(one("Resize", wide, sizes(1, 8, 18, 20), "Resize-bilinear", mode="linear"))
    c.append(
        one(
            "Resize",
            wide,
            sizes(1, 8, 18, 25),
            "Resize-align",
            mode="linear",
            coordinate_transformation_mode="align_corners",
        )
    )
    c.append(
        one(
            "Resize",
            wide,
            sizes(1, 8, 5, 7),
            "Resize-down-asymmetric",
            mode="linear",
            coordinate_transformation_mode="asymmetric",
        )
    )
    c.append(one("Resize", wide, sizes(1, 8, 18, 30), "Resize-nearest", mode="nearest"))
    c.append(one("Resize", wide, sizes(1, 8, 14, 13), "Resize-cubic", mode="cubic", tol=1e-4))
    c.append(one("Erf", f32(2, 3, 40, low=-4.0, high=4.0), id="Erf", tol=1e-6))
    norm = {"scale": f32(2, 6), "bias": f32(2, 6)}
    c.append(one("LayerNormalization", f32(2, 5, 2, 6), norm, "LayerNormalization-axis2", axis=2))
    c.append(
        one("LayerNormalization", f32(2, 5, 6), {"scale": f32(6)}, "LayerNormalization-no-bias")
    )
    return c


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_lowering_matches_onnxruntime(case: Graph):
    check_graph(case)


def test_every_lowering_has_a_case():
    covered = {n.op_type for case in CASES for n in case.nodes}
    assert sorted(set(LOWERINGS) - covered) == []


def test_mask_uses_float_ops_only():
    """The Clip gradient mask runs on XNNPACK float kernels: no boolean operator survives."""
    case = next(c for c in CASES if c.id == "mask-clip")
    ops = check_graph(case)
    assert not {"GREATER", "LESS", "LOGICAL_AND", "CAST"} & set(ops), ops
    assert "CEIL" in ops


def test_transpose_is_free_and_convs_stay_nhwc():
    """NCHW Conv -> Relu -> Conv lowers without a single TRANSPOSE."""
    nodes = [
        make("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        make("Relu", ["a"], ["r"]),
        make("Conv", ["r", "w2"], ["y"]),
    ]
    case = Graph(
        nodes,
        {"x": f32(1, 3, 16, 16)},
        ["y"],
        {"w1": f32(8, 3, 3, 3), "w2": f32(4, 8, 1, 1)},
        id="chain",
    )
    ops = check_graph(case)
    assert "TRANSPOSE" not in ops[:-1], ops  # only the output may be moved back to NCHW


@pytest.mark.parametrize(
    ("kernel", "pads", "exact"),
    [
        (3, [1, 1, 1, 1], None),
        (3, [2, 0, 1, 2], None),
        (3, [0, 0, 0, 0], None),
        (3, [1, 1, 2, 2], 0),  # the gradient of a 3x3 stride-2 pad-1 conv on even sizes
        (3, [2, 0, 1, 3], 2),  # windows at offsets (-1, 0) along H: two phases padded
        (5, [2, 2, 3, 3], 0),  # 5x5 stride 2 pad 2
        (5, [1, 3, 4, 2], 3),
        (1, [0, 0, 1, 1], 0),  # phases without taps
    ],
)
def test_depthwise_gradient_without_zeros(kernel: int, pads: list[int], exact: int | None):
    """A depthwise Conv over a zero insertion (the strided depthwise gradient) is computed by
    phases: four small depthwise convs, no zero insertion before them; when the output is twice
    the input, SAME phases with neither PAD nor SLICE."""
    dy = f32(1, 6, 7, 5)
    nodes = [
        make("ConvTranspose", ["x", "ones"], ["z"], group=6, strides=[2, 2]),
        make("Conv", ["z", "w", "b"], ["y"], group=6, pads=pads),
    ]
    consts = {
        "ones": np.ones((6, 1, 1, 1), np.float32),
        "w": f32(6, 1, kernel, kernel),
        "b": f32(6),
    }
    ops = check_graph(Graph(nodes, {"x": dy}, ["y"], consts, id=f"dw-grad-{kernel}-{pads}"))
    assert ops.count("DEPTHWISE_CONV_2D") == 4, ops
    assert "PAD" not in ops[ops.index("DEPTH_TO_SPACE") - 2 :], ops
    if exact is not None:  # no crop; a PAD only right before a phase whose window is not SAME's
        assert "SLICE" not in ops and ops.count("PAD") == exact, ops
        assert all(ops[i + 1] == "DEPTHWISE_CONV_2D" for i, op in enumerate(ops) if op == "PAD")


@pytest.mark.parametrize(
    ("id", "expected"),
    [
        ("ConvTranspose-s2", ["CONV_2D", "DEPTH_TO_SPACE", "TRANSPOSE"]),
        ("ConvTranspose-s2-k4-twice", ["CONV_2D", "DEPTH_TO_SPACE", "TRANSPOSE"]),
        ("ConvTranspose-s2-twice-shifted", ["PAD", "CONV_2D", "DEPTH_TO_SPACE", "TRANSPOSE"]),
    ],
)
def test_transposed_conv_to_twice_the_size_needs_no_crop(id: str, expected: list[str]):
    """A stride-2 ConvTranspose whose output is exactly twice its input (the gradient of a
    stride-2 conv on even sizes) is one CONV_2D of the exact window and a DEPTH_TO_SPACE: no
    crop, and a PAD (fused into the conv by XNNPACK) only where the window is not SAME's."""
    assert check_graph(next(c for c in CASES if c.id == id)) == expected


def test_one_hot_argmax_gemm_is_a_row_lookup():
    """The classifier gradient at the top class, Gemm(OneHot(ArgMax)) with a constant, reads one
    row of the weights (GATHER) instead of multiplying by the whole matrix."""
    for trans_b in (0, 1):
        ops = check_graph(next(c for c in CASES if c.id == f"Gemm-one-hot-{trans_b}"))
        assert "GATHER" in ops and not {"FULLY_CONNECTED", "ONE_HOT"} & set(ops), ops


def test_data_dependent_shape_is_refused():
    nodes = [make("Pad", ["x", "p"], ["y"])]
    case = Graph(nodes, {"x": f32(2, 3), "p": i64(0, 1, 1, 0)}, ["y"], id="pad-runtime")
    with pytest.raises(ConversionError, match="'y' changes shape with the input data"):
        check_graph(case)


def test_operator_without_lowering_is_refused():
    """Every operator with no TFLite lowering is named with its node, all at once, before any
    lowering starts."""
    nodes = [
        make("Relu", ["x"], ["r"], name="relu"),
        make("LRN", ["r"], ["n"], name="norm1", size=3),
        make("Softplus", ["n"], ["y"], name="soft"),
    ]
    model = Graph(nodes, {"x": f32(1, 3, 9, 10)}, ["y"], id="no-lowering").model()
    with pytest.raises(UnsupportedOpsError) as info:
        to_tflite(model)
    assert info.value.nodes == [("LRN", "norm1"), ("Softplus", "soft")]
    message = str(info.value)
    assert message.startswith("cannot convert to TFLite builtins; no lowering for these operators")
    assert "  - LRN (node 'norm1')\n  - Softplus (node 'soft')\n" in message
