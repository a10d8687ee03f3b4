"""Graph cleanup passes: Identity/Dropout removal, BatchNormalization and bias Adds folded into
the Conv before them, Transpose chains merged and NHWC<->NCHW pairs cancelled.

Each pass edits the model in place and returns how many nodes it removed. A rewrite only
happens where the intermediate tensor has a single consumer and is not a graph output.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgesal.graph.fold import remove_unused_initializers
from edgesal.graph.optraits import with_trait

# elementwise ops that commute with a Transpose of their only run-time input
UNARY = with_trait("commutes_with_transpose")  # declared in edgesal/graph/optraits.py


class Graph:
    """Producer/consumer indexes over a model's nodes (rebuilt by each pass)."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.inits = {t.name: t for t in model.graph.initializer}
        self.outputs = {o.name for o in model.graph.output}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in model.graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def value(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def set_init(self, name: str, value: np.ndarray) -> None:
        self.inits[name].CopyFrom(numpy_helper.from_array(value, name))

    def rename_input(self, old: str, new: str) -> None:
        for node in self.consumers.get(old, []):
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new

    def remove(self, nodes: list[onnx.NodeProto]) -> int:
        gone = {id(n) for n in nodes}
        kept = [n for n in self.model.graph.node if id(n) not in gone]
        del self.model.graph.node[:]
        self.model.graph.node.extend(kept)
        remove_unused_initializers(self.model)
        return len(gone)


def remove_identities(model: onnx.ModelProto) -> int:
    """Identity and Dropout (inference) nodes: consumers read the input directly.

    An Identity whose output is a graph output stays unless its producer can be renamed.
    """
    g = Graph(model)
    dead = []
    for node in list(model.graph.node):
        if node.op_type not in ("Identity", "Dropout") or (len(node.output) > 1 and node.output[1]):
            continue
        src, dst = node.input[0], node.output[0]
        if dst in g.outputs:
            producer = g.producer.get(src)
            if producer is None or src in g.outputs or len(g.consumers[src]) != 1:
                continue
            producer.output[list(producer.output).index(src)] = dst
        else:
            g.rename_input(dst, src)
        dead.append(node)
    return g.remove(dead)


def fold_batchnorm(model: onnx.ModelProto) -> int:
    """Conv -> BatchNormalization becomes one Conv: w' = w * s, b' = (b - mean) * s + beta with
    s = gamma / sqrt(var + eps), per output channel."""
    g = Graph(model)
    dead = []
    for bn in list(model.graph.node):
        if bn.op_type != "BatchNormalization" or len(bn.output) > 1 and any(bn.output[1:]):
            continue
        conv = g.producer.get(bn.input[0])
        params = [g.value(n) for n in bn.input[1:5]]
        if conv is None or conv.op_type != "Conv" or g.only_consumer(bn.input[0]) is not bn:
            continue
        weight = g.value(conv.input[1])
        if weight is None or any(p is None for p in params) or len(g.consumers[conv.input[1]]) != 1:
            continue
        gamma, beta, mean, var = (p.astype(np.float64) for p in params)
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        bias = (
            _conv_bias(g, conv, weight.shape[0]) if len(conv.input) > 2 and conv.input[2] else 0.0
        )
        new_w = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
        new_b = (bias - mean) * scale + beta
        g.set_init(conv.input[1], new_w.astype(weight.dtype))
        _set_conv_bias(model, g, conv, new_b.astype(weight.dtype))
        conv.output[0] = bn.output[0]
        dead.append(bn)
    return g.remove(dead)


def fold_bias_add(model: onnx.ModelProto) -> int:
    """Conv -> Add(constant per-channel [C] / [1,C,1,1]) becomes the Conv's bias."""
    g = Graph(model)
    dead = []
    for add in list(model.graph.node):
        if add.op_type != "Add":
            continue
        for i in (0, 1):
            conv, const = g.producer.get(add.input[i]), g.value(add.input[1 - i])
            if conv is None or conv.op_type != "Conv" or const is None:
                continue
            weight = g.value(conv.input[1])
            if weight is None or g.only_consumer(add.input[i]) is not add:
                continue
            channels = weight.shape[0]
            shape = tuple(const.shape)
            if (
                shape
                not in (
                    (channels,) + (1,) * (weight.ndim - 2),
                    (1, channels) + (1,) * (weight.ndim - 2),
                )
                or const.size != channels
            ):
                continue
            bias = _conv_bias(g, conv, channels) if len(conv.input) > 2 and conv.input[2] else 0.0
            _set_conv_bias(model, g, conv, (bias + const.reshape(-1)).astype(weight.dtype))
            conv.output[0] = add.output[0]
            dead.append(add)
            break
    return g.remove(dead)


def fold_scale_mul(model: onnx.ModelProto) -> int:
    """Conv -> Mul(constant per-channel [C] / [C,1,1] / [1,C,1,1]) becomes one Conv: w' = w * s,
    b' = b * s (an inference BatchNormalization that a converter split into Mul and bias)."""
    g = Graph(model)
    dead = []
    for mul in list(model.graph.node):
        if mul.op_type != "Mul":
            continue
        for i in (0, 1):
            conv, scale = g.producer.get(mul.input[i]), g.value(mul.input[1 - i])
            if conv is None or conv.op_type != "Conv" or scale is None:
                continue
            weight = g.value(conv.input[1])
            if weight is None or g.only_consumer(mul.input[i]) is not mul:
                continue
            if len(g.consumers[conv.input[1]]) != 1 or scale.dtype != weight.dtype:
                continue
            if _per_channel(scale, weight) is None:
                continue
            s = _per_channel(scale, weight).astype(np.float64)
            new_w = weight.astype(np.float64) * s.reshape(-1, *([1] * (weight.ndim - 1)))
            g.set_init(conv.input[1], new_w.astype(weight.dtype))
            if len(conv.input) > 2 and conv.input[2]:
                bias = _conv_bias(g, conv, weight.shape[0])
                _set_conv_bias(model, g, conv, (bias * s).astype(weight.dtype))
            conv.output[0] = mul.output[0]
            dead.append(mul)
            break
    return g.remove(dead)


def _per_channel(const: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    """``const`` as one value per output channel of ``weight`` when it broadcasts that way."""
    channels, spatial = weight.shape[0], weight.ndim - 2
    shapes = ((channels,) + (1,) * spatial, (1, channels) + (1,) * spatial)
    return const.reshape(-1) if tuple(const.shape) in shapes and const.size == channels else None


def fold_pad_into_conv(model: onnx.ModelProto) -> int:
    """Pad(constant 0, spatial axes only) -> Conv becomes the Conv's own pads (Keras writes
    'same' padding of strided convs as ZeroPadding2D + a 'valid' Conv)."""
    g = Graph(model)
    dead = []
    for pad in list(model.graph.node):
        conv = g.only_consumer(pad.output[0]) if pad.op_type == "Pad" else None
        if conv is None or conv.op_type != "Conv" or conv.input[0] != pad.output[0]:
            continue
        pads = _constant_pads(g, pad)
        conv_attrs = {a.name: a for a in conv.attribute}
        auto = conv_attrs.get("auto_pad")
        if pads is None or (auto is not None and auto.s not in (b"NOTSET", b"VALID")):
            continue
        rank = len(pads) // 2
        if any(pads[i] or pads[rank + i] for i in (0, 1)):
            continue  # batch or channel padding
        spatial = rank - 2
        old = list(conv_attrs["pads"].ints) if "pads" in conv_attrs else [0] * (2 * spatial)
        new = [old[i] + pads[2 + i] for i in range(spatial)]
        new += [old[spatial + i] + pads[rank + 2 + i] for i in range(spatial)]
        for name in ("pads", "auto_pad"):
            if name in conv_attrs:
                conv.attribute.remove(conv_attrs[name])
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        dead.append(pad)
    return g.remove(dead)


def _constant_pads(g: Graph, pad: onnx.NodeProto) -> list[int] | None:
    """The non-negative pads of a constant-zero Pad (opset >= 11 inputs), else None."""
    mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(pad.input) < 2 or any(n for n in pad.input[3:]):
        return None
    pads = g.value(pad.input[1])
    value = g.value(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
    if pads is None or value is None or np.any(value != 0) or np.any(pads < 0):
        return None
    return [int(p) for p in pads]


def _conv_bias(g: Graph, conv: onnx.NodeProto, channels: int) -> np.ndarray:
    value = g.value(conv.input[2])
    return np.zeros(channels) if value is None else value.astype(np.float64)


def _set_conv_bias(model, g: Graph, conv: onnx.NodeProto, bias: np.ndarray) -> None:
    if (
        len(conv.input) > 2
        and conv.input[2]
        and conv.input[2] in g.inits
        and len(g.consumers[conv.input[2]]) == 1
    ):
        g.set_init(conv.input[2], bias)
        return
    name = f"{conv.name or conv.output[0]}/folded_bias"
    model.graph.initializer.append(numpy_helper.from_array(bias, name))
    g.inits[name] = model.graph.initializer[-1]
    if len(conv.input) > 2:
        conv.input[2] = name
    else:
        conv.input.append(name)


def _perm(node: onnx.NodeProto, rank: int | None = None) -> list[int] | None:
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return list(reversed(range(rank))) if rank is not None else None


def merge_transposes(model: onnx.ModelProto) -> int:
    """Transpose(Transpose(x, p), q) -> Transpose(x, p[q]); identity perms disappear; a
    Transpose that only feeds UNARY chains ending in its inverse Transpose is cancelled."""
    removed = 0
    while True:
        step = _merge_once(model)
        if not step:
            return removed
        removed += step


def _merge_once(model: onnx.ModelProto) -> int:
    g = Graph(model)
    for node in model.graph.node:
        if node.op_type != "Transpose" or _perm(node) is None:
            continue
        perm = _perm(node)
        if perm == list(range(len(perm))) and node.output[0] not in g.outputs:
            g.rename_input(node.output[0], node.input[0])
            return g.remove([node])
        nxt = g.only_consumer(node.output[0])
        if nxt is not None and nxt.op_type == "Transpose" and _perm(nxt) is not None:
            merged = [perm[i] for i in _perm(nxt)]
            nxt.input[0] = node.input[0]
            for a in nxt.attribute:
                if a.name == "perm":
                    a.CopyFrom(helper.make_attribute("perm", merged))
            return g.remove([node])
        if nxt is not None and nxt.op_type in UNARY and _unary_ok(g, nxt):
            chain_end = nxt
            while True:
                after = g.only_consumer(chain_end.output[0])
                if after is None or after.op_type not in UNARY or not _unary_ok(g, after):
                    break
                chain_end = after
            closing = g.only_consumer(chain_end.output[0])
            if closing is not None and closing.op_type == "Transpose" and _perm(closing):
                if [perm[i] for i in _perm(closing)] == list(range(len(perm))):
                    # x -T-> u -...-> v -T^-1-> y   ==>   x -> u' -...-> y
                    nxt.input[0] = node.input[0]
                    chain_end.output[0] = closing.output[0]
                    return g.remove([node, closing])
    return 0


def _unary_ok(g: Graph, node: onnx.NodeProto) -> bool:
    """Only the first input is a run-time tensor (Clip's bounds must be constant scalars)."""
    return all(name in g.inits or not name for name in node.input[1:])
