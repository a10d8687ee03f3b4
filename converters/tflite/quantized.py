"""ONNX QDQ model (``edgesal quantize``) -> int8 TFLite, builtins only, same quantization.

The QDQ model marks every quantized tensor t as ``Q(t; s, z)`` and every reader as
``DQ(q; s, z)``: real = s * (q - z). The lowering keeps those decisions:

- a node whose run-time inputs are all ``DQ`` of quantized tensors (weights: ``DQ`` of int8
  constants) and whose only reader is one ``Q`` becomes one int8 TFLite operator reading and
  writing int8 tensors with the same scales and zero points (:data:`FUSED`: CONV_2D,
  DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, RELU/RELU6, MEAN, RESHAPE, MAX_POOL_2D);
- any other node (those the sensitivity search kept float, and operators without an int8
  kernel here) runs in float through the float lowering, between a DEQUANTIZE and a QUANTIZE
  (mixed int8);
- uint8 activations (onnxruntime's x86 choice) become int8: q - 128 with zero point z - 128;
  conv weights are int8 symmetric per output channel (TFLite's quantized_dimension), biases
  int32 with scale s_in * s_w per channel.

Layout (NCHW -> NHWC) comes from the float lowering: an int8 tensor is held in a perm like any
other, and the RESHAPE / TRANSPOSE / PAD / SLICE the shared helpers insert around it inherit
its quantization.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgesal.converters.tflite import layout
from edgesal.converters.tflite.context import Lowering
from edgesal.converters.tflite.convert import to_tflite
from edgesal.converters.tflite.ops.conv import conv_geometry, zero_insert
from edgesal.converters.tflite.ops.elementwise import broadcast_perm
from edgesal.converters.tflite.ops.masks import float_mask
from edgesal.converters.tflite.ops.registry import attrs, inputs
from edgesal.converters.tflite.ops.spatial import (
    onnx_pads,
    pad_nhwc,
    same_pads,
    spatial_attrs,
    tflite_padding,
)
from edgesal.converters.tflite.schema import Quantization
from edgesal.graph.idioms import zero_insertion
from edgesal.onnx_io import load_model

# operators that only move or select int8 values: their output inherits the input's parameters
_MOVERS = {
    "RESHAPE", "TRANSPOSE", "PAD", "SLICE", "STRIDED_SLICE", "GATHER", "SQUEEZE",
    "DEPTH_TO_SPACE",
}  # fmt: skip


@dataclass(frozen=True)
class QParams:
    """real = scale * (q - zero_point) in the int8 domain; ``axis`` for per-channel values."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1

    def schema(self, axis: int = 0) -> Quantization:
        return Quantization(
            tuple(float(s) for s in self.scale.ravel()),
            tuple(int(z) for z in self.zero_point.ravel()),
            axis,
        )

    def same(self, other: QParams) -> bool:
        return (
            self.per_tensor
            and other.per_tensor
            and np.allclose(self.scale, other.scale, rtol=1e-6, atol=0)
            and np.array_equal(self.zero_point, other.zero_point)
        )


def int8_domain(q: np.ndarray, zero_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (q, z) -> int8 (q - 128, z - 128), the same real values; int8 stays."""
    q, z = np.asarray(q), np.asarray(zero_point)
    if z.dtype == np.uint8:
        return (
            (q.astype(np.int16) - 128).astype(np.int8),
            z.astype(np.int64) - 128,
        )
    if z.dtype != np.int8:
        raise ValueError(f"zero point of type {z.dtype}: only uint8 and int8 are lowered")
    return q.astype(np.int8), z.astype(np.int64)


def qdq_to_tflite(model: onnx.ModelProto | str | Path) -> bytes:
    """The mixed/full int8 TFLite flatbuffer of a QDQ model (float input and outputs)."""
    model = load_model(model) if isinstance(model, str | Path) else copy.deepcopy(model)
    return to_tflite(model, QdqLowering(model))


class QdqLowering:
    """The :class:`~edgesal.converters.tflite.convert.NodeHook` that lowers Q/DQ and fuses int8
    groups."""

    op_types = ("QuantizeLinear", "DequantizeLinear")

    def __init__(self, model: onnx.ModelProto):
        known = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.weights: dict[str, tuple[np.ndarray, QParams]] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            if node.op_type == "DequantizeLinear" and node.input[0] in known:
                self.weights[node.output[0]] = _constant_dq(node, known)
        self.outputs = {o.name for o in model.graph.output}
        self.int8: dict[str, QParams] = {}  # ONNX name -> parameters of its int8 TFLite tensor
        self.done: set[str] = set()  # Q outputs already written by a fused operator

    def __call__(self, ctx: Lowering, node: onnx.NodeProto) -> bool:
        if node.op_type == "QuantizeLinear":
            self._quantize(ctx, node)
            return True
        if node.op_type == "DequantizeLinear":
            self._dequantize(ctx, node)
            return True
        fuse = FUSED.get(node.op_type)
        if fuse is None:
            return False
        target = self._single_q(ctx, node)
        if target is None:
            return False
        start = len(ctx.flat.operators)
        fused = fuse(self, ctx, node, *target)
        if fused:
            self.done.add(target[0])
            self.int8[target[0]] = target[1]
            inherit(ctx, start)
        return fused

    # -- Q and DQ -------------------------------------------------------------------------------

    def _params(self, ctx: Lowering, node: onnx.NodeProto) -> QParams:
        scale = ctx.value(node.input[1])
        zero = ctx.value(node.input[2]) if len(inputs(node)) > 2 else np.zeros((), np.uint8)
        if scale is None or zero is None:
            raise ctx.fail("scale and zero point must be constants")
        _, z = int8_domain(np.zeros((), zero.dtype), zero)
        axis = int(attrs(node).get("axis", 1))
        return QParams(np.asarray(scale, np.float64).ravel(), z.ravel(), axis)

    def _quantize(self, ctx: Lowering, node: onnx.NodeProto) -> None:
        """QUANTIZE float -> int8 (int8 -> int8 when the input is a DQ: a requantization)."""
        out = node.output[0]
        if out in self.done:
            return
        params = self._params(ctx, node)
        if not params.per_tensor:
            raise ctx.fail("per-channel QuantizeLinear of a run-time tensor is not lowered")
        source = self.int8_source(ctx, node.input[0])
        name = source or node.input[0]
        if source is not None and self.int8[source].same(params):
            ctx.alias(out, source)
        else:
            perm = ctx.perm(name)
            x = self.view(ctx, name, perm)
            ctx.emit("QUANTIZE", [x], [self.output(ctx, out, params, perm)])
        self.int8[out] = params

    def _dequantize(self, ctx: Lowering, node: onnx.NodeProto) -> None:
        """DEQUANTIZE of an int8 tensor; a DQ of another integer tensor (0/1 masks cast to uint8)
        becomes the float mask of ``masks.float_mask`` when it is an interval test, else CAST,
        SUB z, MUL s in float."""
        x, out = node.input[0], node.output[0]
        params = self._params(ctx, node)
        if not params.per_tensor:
            raise ctx.fail("per-channel DequantizeLinear of a run-time tensor is not lowered")
        perm = ctx.perm(x)
        if x in self.int8:
            ctx.emit("DEQUANTIZE", [self.view(ctx, x, perm)], [ctx.output(out, perm)])
            return
        zero = ctx.value(node.input[2]) if len(inputs(node)) > 2 else np.zeros(())
        cast = ctx.producer(x)
        plain = not np.any(zero) and np.all(params.scale == 1)
        if plain and cast is not None and cast.op_type == "Cast":
            if float_mask(ctx, cast.input[0], out):  # XNNPACK float ops, no boolean kernels
                return
        shape = layout.physical(ctx.shape(out), perm)
        y = ctx.op("CAST", [ctx.tensor(x)], shape, np.float32)
        if np.any(zero):
            y = ctx.op("SUB", [y, ctx.const(np.float32(zero))], shape, np.float32)
        if not np.all(params.scale == 1):
            y = ctx.op("MUL", [y, ctx.const(np.float32(params.scale[0]))], shape, np.float32)
        ctx.hold(out, y, perm)

    # -- helpers for the fused lowerings --------------------------------------------------------

    def _single_q(self, ctx: Lowering, node: onnx.NodeProto) -> tuple[str, QParams] | None:
        """(Q output, its parameters) when the node's one output is read by one per-tensor Q."""
        y = node.output[0]
        readers = self.consumers.get(y, [])
        if len(node.output) != 1 or y in self.outputs or len(readers) != 1:
            return None
        q = readers[0]
        if q.op_type != "QuantizeLinear" or q.output[0] in self.outputs:
            return None
        params = self._params(ctx, q)
        return (q.output[0], params) if params.per_tensor else None

    def int8_source(self, ctx: Lowering, name: str) -> str | None:
        """The int8 tensor ``name`` is a DQ of (None when it is not one)."""
        producer = ctx.producer(name)
        if producer is None or producer.op_type != "DequantizeLinear":
            return None
        source = producer.input[0]
        return source if source in self.int8 else None

    def view(self, ctx: Lowering, name: str, perm, rank: int | None = None) -> int:
        """``ctx.tensor`` for an int8 tensor: layout ops it inserts inherit the quantization."""
        start = len(ctx.flat.operators)
        index = ctx.tensor(name, perm, rank)
        inherit(ctx, start)
        return index

    def output(self, ctx: Lowering, name: str, params: QParams, perm) -> int:
        index = ctx.output(name, perm, np.int8)
        ctx.flat.tensors[index].quantization = params.schema()
        return index


def _constant_dq(node: onnx.NodeProto, known: dict) -> tuple[np.ndarray, QParams]:
    data = known[node.input[0]]
    scale = np.asarray(known[node.input[1]], np.float64)
    zero = known.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero is None:
        zero = np.zeros(scale.shape, data.dtype)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if data.dtype in (np.uint8, np.int8):
        data, z = int8_domain(data, zero)
    else:
        z = np.asarray(zero, np.int64)
    return data, QParams(scale.ravel(), np.asarray(z).ravel(), int(axis))


def inherit(ctx: Lowering, start: int) -> None:
    """Give the outputs of layout operators emitted since ``start`` on int8 tensors the
    quantization of their input."""
    tensors = ctx.flat.tensors
    for op in ctx.flat.operators[start:]:
        if op.code not in _MOVERS:
            continue
        source = tensors[op.inputs[0]]
        for o in op.outputs:
            if tensors[o].quantization is None and tensors[o].dtype == np.int8:
                tensors[o].quantization = source.quantization


def quantized_const(
    ctx: Lowering, data: np.ndarray, quant: Quantization, hint: str = "weight"
) -> int:
    """A constant int8/int32 tensor with its quantization (not shared: parameters differ)."""
    data = np.ascontiguousarray(data)
    index = ctx.temp(data.shape, data.dtype, hint)
    ctx.flat.tensors[index].data = data
    ctx.flat.tensors[index].quantization = quant
    return index


Fused = Callable[[QdqLowering, Lowering, onnx.NodeProto, str, QParams], bool]
FUSED: dict[str, Fused] = {}


def fuses(*op_types: str):
    """Register the decorated function as the int8 lowering of ``op_types``; it returns False
    when the node does not fit (the node then runs in float)."""

    def register(fn: Fused) -> Fused:
        for op_type in op_types:
            FUSED[op_type] = fn
        return fn

    return register


def _int32_bias(bias: np.ndarray, scale: np.ndarray) -> np.ndarray:
    limit = np.iinfo(np.int32)
    return np.clip(np.round(bias / scale), limit.min, limit.max).astype(np.int32)


def _float_bias(ctx: Lowering, name: str | None, channels: int) -> np.ndarray | None:
    """The folded float bias as ``channels`` values (zeros when absent, None when not const)."""
    if not name:
        return np.zeros(channels)
    value = ctx.value(name)
    if value is None or np.asarray(value).size not in (1, channels):
        return None
    return np.broadcast_to(np.asarray(value, np.float64).ravel(), (channels,))


def _int8_weight(q: QdqLowering, name: str) -> tuple[np.ndarray, QParams] | None:
    """A symmetric int8 constant (the DQ's input) and its parameters, else None."""
    weight = q.weights.get(name)
    if weight is None or weight[0].dtype != np.int8 or np.any(weight[1].zero_point != 0):
        return None
    return weight


@fuses("Conv")
def conv(q: QdqLowering, ctx: Lowering, node, out: str, params: QParams) -> bool:
    """CONV_2D (group 1) or DEPTHWISE_CONV_2D on int8: filter per output channel (axis 0 of
    [O, kh, kw, I], axis 3 of the depthwise [1, kh, kw, O]), bias int32 with s_in * s_w."""
    names = inputs(node)
    source = q.int8_source(ctx, names[0])
    weight = _int8_weight(q, names[1])
    if source is None or weight is None or len(ctx.shape(names[0])) != 4:
        return False
    wq, wp = weight
    o, ig, kh, kw = wq.shape
    if not (wp.per_tensor or wp.axis == 0):
        return False
    a = attrs(node)
    group, channels = int(a.get("group", 1)), ctx.shape(names[0])[1]
    depthwise = group > 1 and group == channels and ig == 1
    bias = _float_bias(ctx, names[2] if len(names) > 2 else None, o)
    if (group != 1 and not depthwise) or bias is None:
        return False
    strides, dilations = spatial_attrs(ctx, node, a, (kh, kw))
    x = q.view(ctx, source, layout.NHWC)
    pads = onnx_pads(ctx, a, ctx.physical_shape(x)[1:3], (kh, kw), strides, dilations)
    start = len(ctx.flat.operators)
    x, padding = tflite_padding(ctx, x, pads, (kh, kw), strides, dilations)
    inherit(ctx, start)
    s_w = np.broadcast_to(wp.scale, (o,))
    s_b = q.int8[source].scale[0] * s_w
    b = quantized_const(ctx, _int32_bias(bias, s_b), Quantization(tuple(s_b), (0,) * o), "bias")
    y = q.output(ctx, out, params, layout.NHWC)
    geometry = conv_geometry(padding, strides, dilations)
    if depthwise:
        filt = quantized_const(ctx, wq.transpose(1, 2, 3, 0), Quantization(tuple(s_w), (0,) * o, 3))
        ctx.emit(
            "DEPTHWISE_CONV_2D",
            [x, filt, b],
            [y],
            "DepthwiseConv2DOptions",
            depth_multiplier=o // channels,
            **geometry,
        )
    else:
        filt = quantized_const(ctx, wq.transpose(0, 2, 3, 1), Quantization(tuple(s_w), (0,) * o, 0))
        ctx.emit("CONV_2D", [x, filt, b], [y], "Conv2DOptions", **geometry)
    return True


@fuses("Gemm")
def gemm(q: QdqLowering, ctx: Lowering, node, out: str, params: QParams) -> bool:
    """FULLY_CONNECTED on int8 for A' B + beta C with a per-tensor int8 constant B (alpha 1)."""
    names = inputs(node)
    a = attrs(node)
    source = q.int8_source(ctx, names[0])
    weight = _int8_weight(q, names[1])
    if source is None or weight is None or a.get("transA", 0) or float(a.get("alpha", 1)) != 1:
        return False
    wq, wp = weight
    if not wp.per_tensor:
        return False
    w = wq if a.get("transB", 0) else wq.T  # [N, K]
    n = w.shape[0]
    bias = _float_bias(ctx, names[2] if len(names) > 2 else None, n)
    if bias is None:
        return False
    bias = float(a.get("beta", 1.0)) * bias
    s_b = q.int8[source].scale[0] * wp.scale[0]
    x = q.view(ctx, source, (0, 1))
    filt = quantized_const(ctx, w, wp.schema())
    b = quantized_const(ctx, _int32_bias(bias, s_b), Quantization((float(s_b),), (0,)), "bias")
    ctx.emit(
        "FULLY_CONNECTED",
        [x, filt, b],
        [q.output(ctx, out, params, (0, 1))],
        "FullyConnectedOptions",
        fused_activation_function="NONE",
        weights_format=0,
        keep_num_dims=False,
    )
    return True


@fuses("Add", "Mul")
def binary(q: QdqLowering, ctx: Lowering, node, out: str, params: QParams) -> bool:
    """ADD / MUL on int8 (TFLite rescales each operand); operands are int8 tensors, int8
    constants, or 0/1 masks (a DQ of a uint8 Cast, zero point 0) quantized from their float
    form."""
    names = list(node.input)
    kinds = [_operand(q, ctx, n) for n in names]
    if None in kinds:
        return False
    perm, rank = broadcast_perm(ctx, names)
    tensors = []
    for name, (kind, ref) in zip(names, kinds, strict=True):
        if kind == "int8":
            tensors.append(q.view(ctx, ref, perm, rank))
        elif kind == "const":
            data, qp = q.weights[name]
            tensors.append(quantized_const(ctx, _stored(data, perm, rank), qp.schema(), "const"))
        else:  # the float mask the DQ lowered to, quantized exactly (0 or 1 step)
            mask = ctx.tensor(name, perm, rank)
            scale = ctx.value(ctx.producer(name).input[1])
            index = ctx.op("QUANTIZE", [mask], ctx.physical_shape(mask), np.int8)
            ctx.flat.tensors[index].quantization = Quantization((float(scale),), (0,))
            tensors.append(index)
    code = {"Add": "ADD", "Mul": "MUL"}[node.op_type]
    ctx.emit(code, tensors, [q.output(ctx, out, params, perm)])
    return True


def _operand(q: QdqLowering, ctx: Lowering, name: str) -> tuple[str, str] | None:
    source = q.int8_source(ctx, name)
    if source is not None:
        return "int8", source
    weight = q.weights.get(name)
    if weight is not None:
        ok = weight[0].dtype == np.int8 and weight[1].per_tensor
        return ("const", name) if ok else None
    producer = ctx.producer(name)
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    raw = producer.input[0]
    zero = ctx.value(producer.input[2]) if len(inputs(producer)) > 2 else np.zeros(())
    scale = ctx.value(producer.input[1])
    if ctx.dtype(raw) != np.uint8 or zero is None or np.any(zero) or np.size(scale) != 1:
        return None
    return "mask", raw


def _stored(data: np.ndarray, perm, rank: int) -> np.ndarray:
    """A constant operand stored as ``Lowering.tensor`` stores it for a broadcasting op."""
    full = data.reshape((1,) * (rank - data.ndim) + data.shape)
    stored = np.transpose(full, perm)
    while stored.ndim > data.ndim and stored.shape[0] == 1:
        stored = stored[0]
    return stored


_CLIPS = {(0.0, 6.0): "RELU6", (0.0, None): "RELU", (-1.0, 1.0): "RELU_N1_TO_1"}


@fuses("Relu", "Clip")
def relu(q: QdqLowering, ctx: Lowering, node, out: str, params: QParams) -> bool:
    """RELU / RELU6 / RELU_N1_TO_1 on int8 (output rescaled by TFLite)."""
    names = inputs(node)
    source = q.int8_source(ctx, names[0])
    if source is None:
        return False
    bounds: tuple[float | None, float | None] = (0.0, None)
    if node.op_type == "Clip":
        values = [ctx.value(n) if n else None for n in (names + ["", ""])[1:3]]
        if any(v is None for v, n in zip(values, (names + ["", ""])[1:3], strict=True) if n):
            return False
        bounds = tuple(None if v is None else float(v) for v in values)
    code = _CLIPS.get(bounds)
    if code is None:
        return False
    perm = ctx.perm(source)
    ctx.emit(code, [q.view(ctx, source, perm)], [q.output(ctx, out, params, perm)])
    return True


@fuses("GlobalAveragePool")
def global_average(q: QdqLowering, ctx: Lowering, node, out: str, params: QParams) -> bool:
    """MEAN over H and W (keep_dims) on int8."""
    source = q.int8_source(ctx, node.input[0])
    if source is None or len(ctx.shape(source)) != 4:
        return False
    x = q.view(ctx, source, layout.NHWC)
    y = q.output(ctx, out, params, layout.NHWC)
    ctx.emit("MEAN", [x, ctx.ints([1, 2])], [y], "ReducerOptions", keep_dims=True)
    return True


@fuses("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(q: QdqLowering, ctx: Lowering, node, out: str, params: QParams) -> bool:
    """RESHAPE of the int8 tensor (same parameters in and out, as the QDQ model has them)."""
    source = q.int8_source(ctx, node.input[0])
    if source is None or not q.int8[source].same(params):
        return False
    shape = ctx.shape(out)
    x = q.view(ctx, source, layout.identity(len(ctx.shape(source))))
    y = q.output(ctx, out, params, layout.identity(len(shape)))
    ctx.emit("RESHAPE", [x, ctx.ints(shape)], [y])
    return True


@fuses("MaxPool")
def max_pool(q: QdqLowering, ctx: Lowering, node, out: str, params: QParams) -> bool:
    """MAX_POOL_2D on int8 (same parameters in and out; SAME/VALID padding only)."""
    source = q.int8_source(ctx, node.input[0])
    a = attrs(node)
    kernel = list(a.get("kernel_shape", []))
    if source is None or not q.int8[source].same(params) or len(kernel) != 2:
        return False
    if int(a.get("ceil_mode", 0)) or list(a.get("dilations", [1, 1])) != [1, 1]:
        return False
    strides = list(a.get("strides", [1, 1]))
    sizes = ctx.shape(source)[2:]
    pads = onnx_pads(ctx, a, sizes, kernel, strides, [1, 1])
    same = [same_pads(sizes[i], kernel[i], strides[i]) for i in range(2)]
    if list(pads) != same and any(p != (0, 0) for p in pads):
        return False  # an explicit PAD would pad with the zero point, not -inf
    padding = "VALID" if all(p == (0, 0) for p in pads) else "SAME"
    x = q.view(ctx, source, layout.NHWC)
    ctx.emit(
        "MAX_POOL_2D",
        [x],
        [q.output(ctx, out, params, layout.NHWC)],
        "Pool2DOptions",
        padding=padding,
        stride_w=int(strides[1]),
        stride_h=int(strides[0]),
        filter_width=int(kernel[1]),
        filter_height=int(kernel[0]),
        fused_activation_function="NONE",
    )
    return True


@fuses("ConvTranspose")
def spread_zeros(q: QdqLowering, ctx: Lowering, node, out: str, params: QParams) -> bool:
    """A ConvTranspose that only spreads its input (weight ones[C, 1, 1, 1], group C, stride s,
    no pads: the gradient of a strided depthwise conv) on int8: requantized to the output's
    parameters, then PAD + DEPTH_TO_SPACE (the inserted zeros are the zero point) and a crop
    to (in - 1) * s + 1."""
    names = inputs(node)
    source = q.int8_source(ctx, names[0])
    if source is None or len(names) > 2 or len(ctx.shape(source)) != 4:
        return False
    s = zero_insertion.stride(node, ctx.value(names[1]), ctx.shape(source))
    if s is None:
        return False
    x = q.view(ctx, source, layout.NHWC)
    if not q.int8[source].same(params):
        x = ctx.op("QUANTIZE", [x], ctx.physical_shape(x), np.int8)
        ctx.flat.tensors[x].quantization = params.schema()
    _, h, w, _ = ctx.physical_shape(x)
    out_h, out_w = ctx.shape(out)[2:]
    y = pad_nhwc(ctx, zero_insert(ctx, x, s), [(0, out_h - h * s), (0, out_w - w * s)])
    ctx.hold(out, y, layout.NHWC)
    return True
