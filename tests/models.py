"""Small synthetic ONNX models for tests: an NCHW CNN and an NHWC TFLite-converter-style CNN."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, weights: dict[str, np.ndarray], opset: int = 17):
    inits = [
        numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k)
        for k, v in weights.items()
    ]
    graph = helper.make_graph(nodes, "test", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def nchw_cnn(seed: int = 0, batch: int | str = 1, classes: int = 5) -> onnx.ModelProto:
    """Conv-BN-ReLU6 / depthwise stride 2 / residual Add / GAP / Gemm, like a tiny MobileNet."""
    rng = np.random.default_rng(seed)
    w = {
        "w1": rng.standard_normal((8, 3, 3, 3)) * 0.4,
        "b1": rng.standard_normal(8) * 0.1,
        "dw": rng.standard_normal((8, 1, 3, 3)) * 0.4,
        "pw": rng.standard_normal((8, 8, 1, 1)) * 0.4,
        "bn_s": rng.uniform(0.5, 1.5, 8),
        "bn_b": rng.standard_normal(8) * 0.1,
        "bn_m": rng.standard_normal(8) * 0.1,
        "bn_v": rng.uniform(0.5, 1.5, 8),
        "fc": rng.standard_normal((classes, 8)) * 0.5,
        "fcb": rng.standard_normal(classes) * 0.1,
        "lo": np.array(0.0),
        "hi": np.array(6.0),
        "shape": np.array([0, -1], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"]),
        helper.make_node("Clip", ["n1", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "dw"], ["d1"], group=8, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d1"], ["r2"]),
        helper.make_node("Conv", ["r2", "pw"], ["p1"]),
        helper.make_node("Add", ["p1", "r2"], ["a1"]),
        helper.make_node("GlobalAveragePool", ["a1"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
    ]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 16, 16])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])]
    return _model(nodes, inputs, outputs, w)


def nhwc_tflite_style(seed: int = 0, classes: int = 4) -> onnx.ModelProto:
    """NHWC input with the Transpose/Pad/Conv/PRelu/MaxPool/Resize pattern converters emit."""
    rng = np.random.default_rng(seed)
    w = {
        "w1": rng.standard_normal((6, 3, 3, 3)) * 0.4,
        "b1": rng.standard_normal(6) * 0.1,
        "slope": rng.uniform(0.05, 0.3, (1, 6, 1, 1)),
        "w2": rng.standard_normal((6, 6, 3, 3)) * 0.3,
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64),
        "scales": np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32),
        "fc": rng.standard_normal((6, classes)) * 0.5,
        "axes": np.array([1, 2], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Transpose", ["image"], ["t0"], perm=[0, 3, 1, 2]),
        helper.make_node("Pad", ["t0", "pads"], ["p0"]),
        helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"]),
        helper.make_node("PRelu", ["c1", "slope"], ["a1"]),
        helper.make_node(
            "MaxPool", ["a1"], ["m1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Resize", ["m1", "", "scales"], ["u1"], mode="nearest"),
        helper.make_node("Conv", ["u1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "Resize",
            ["c2", "", "scales"],
            ["u2"],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Transpose", ["u2"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["t1", "axes"], ["g"], keepdims=0),
        helper.make_node("MatMul", ["g", "fc"], ["logits"]),
    ]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 12, 12, 3])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])]
    return _model(nodes, inputs, outputs, w, opset=18)


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model computing in float64 (for the reference evaluator's finite differences)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name)
            )
    for value in list(model.graph.input) + list(model.graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    del model.graph.value_info[:]
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.DOUBLE
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(
                    numpy_helper.from_array(
                        numpy_helper.to_array(attr.t).astype(np.float64), attr.t.name
                    )
                )
    return model
