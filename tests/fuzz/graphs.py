"""Small CNNs drawn from fuzz bytes, for the ``onnx_graph`` target: valid enough to pass the
ONNX checker most of the time, varied enough to reach the gradient rules' attribute handling."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = 3
LAYERS = ("Conv", "MaxPool", "AveragePool", "Act", "BatchNormalization", "Const", "Pad")
LAYERS += ("Transpose", "Resize", "Concat", "Slice")
ACTIVATIONS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Softplus", "Elu", "Clip")


class Draw:
    """Choices drawn from fuzz bytes, in order; 0 once they run out."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def int(self, n: int) -> int:
        """A number in [0, n)."""
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value % n


def _out(size: int, pads: int, kernel: int, stride: int, dilation: int = 1, ceil=0) -> int:
    span = size + pads - dilation * (kernel - 1) - 1
    return (math.ceil(span / stride) if ceil else span // stride) + 1


class _Builder:
    def __init__(self, draw: Draw):
        self.draw, self.nodes, self.inits = draw, [], []
        self.name, self.count = "image", 0

    def weight(self, value: np.ndarray) -> str:
        name = f"w{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, op: str, inputs: list[str], **attrs) -> str:
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, [self.name, *inputs], [out], **attrs))
        self.name = out
        return out


def draw_cnn(draw: Draw) -> onnx.ModelProto:
    """[1, C, H, W] image -> up to 6 drawn layers -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(draw.int(256))
    c, h, w = (1, 3, 4)[draw.int(3)], 4 + draw.int(17), 4 + draw.int(17)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, c, h, w])
    b = _Builder(draw)
    for _ in range(1 + draw.int(6)):
        layer = LAYERS[draw.int(len(LAYERS))]
        if layer == "Conv":
            depthwise = draw.int(3) == 0
            out = c if depthwise else 1 + draw.int(6)
            k, s, d = (1, 2, 3, 5)[draw.int(4)], 1 + draw.int(3), 1 + draw.int(2)
            pads = [draw.int(3) for _ in range(4)]
            nh, nw = _out(h, pads[0] + pads[2], k, s, d), _out(w, pads[1] + pads[3], k, s, d)
            if nh < 1 or nw < 1:
                continue
            shape = (out, 1 if depthwise else c, k, k)
            b.add(
                "Conv",
                [b.weight(rng.standard_normal(shape).astype(np.float32) * 0.3)],
                kernel_shape=[k, k],
                strides=[s, s],
                dilations=[d, d],
                pads=pads,
                group=c if depthwise else 1,
            )
            c, h, w = out, nh, nw
        elif layer in ("MaxPool", "AveragePool"):
            k, s, ceil = 1 + draw.int(3), 1 + draw.int(2), draw.int(2)
            p = [min(draw.int(2), k - 1) for _ in range(4)]
            nh, nw = _out(h, p[0] + p[2], k, s, 1, ceil), _out(w, p[1] + p[3], k, s, 1, ceil)
            if nh < 1 or nw < 1:
                continue
            extra = {"count_include_pad": draw.int(2)} if layer == "AveragePool" else {}
            b.add(layer, [], kernel_shape=[k, k], strides=[s, s], pads=p, ceil_mode=ceil, **extra)
            h, w = nh, nw
        elif layer == "Act":
            op = ACTIVATIONS[draw.int(len(ACTIVATIONS))]
            if op == "Clip":
                b.add(op, [b.weight(np.float32(0)), b.weight(np.float32(6))])
            elif op == "LeakyRelu":
                b.add(op, [], alpha=0.01 * (1 + draw.int(50)))
            else:
                b.add(op, [])
        elif layer == "BatchNormalization":
            stats = [rng.uniform(0.5, 1.5, c), rng.standard_normal(c) * 0.1]
            stats += [rng.standard_normal(c) * 0.1, rng.uniform(0.5, 1.5, c)]
            b.add(layer, [b.weight(v.astype(np.float32)) for v in stats])
        elif layer == "Const":
            op = ("Add", "Mul", "Sub", "Div")[draw.int(4)]
            value = rng.uniform(0.5, 1.5, (1, c, 1, 1)).astype(np.float32)
            b.add(op, [b.weight(value)])
        elif layer == "Pad":
            pads = [0, 0, draw.int(3), draw.int(3), 0, 0, draw.int(3), draw.int(3)]
            mode = ("constant", "reflect", "edge")[draw.int(3)]
            if mode == "reflect" and max(pads) >= min(h, w):
                mode = "constant"
            b.add("Pad", [b.weight(np.array(pads, np.int64))], mode=mode)
            h, w = h + pads[2] + pads[6], w + pads[3] + pads[7]
        elif layer == "Transpose":
            b.add("Transpose", [], perm=[0, 1, 3, 2])
            h, w = w, h
        elif layer == "Resize" and h * w <= 400:
            mode = ("nearest", "linear")[draw.int(2)]
            scales = np.array([1, 1, 2, 2], np.float32)
            b.add("Resize", ["", b.weight(scales)], mode=mode)
            h, w = 2 * h, 2 * w
        elif layer == "Concat":
            b.add("Concat", [b.name], axis=1)
            c *= 2
        elif layer == "Slice" and h > 2 and w > 2:
            start, end = draw.int(h // 2), h - draw.int(h // 2)
            starts, ends = np.array([start, 0], np.int64), np.array([end, w], np.int64)
            b.add("Slice", [b.weight(starts), b.weight(ends), b.weight(np.array([2, 3], np.int64))])
            h = end - start
    b.add("GlobalAveragePool", [])
    b.add("Flatten", [])
    fc = b.weight(rng.standard_normal((CLASSES, c)).astype(np.float32))
    b.add("Gemm", [fc, b.weight(np.zeros(CLASSES, np.float32))], transB=1)
    if draw.int(2):
        b.add("Softmax", [], axis=1)
    graph = helper.make_graph(
        b.nodes,
        "drawn",
        [image],
        [helper.make_tensor_value_info(b.name, TensorProto.FLOAT, [1, CLASSES])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
