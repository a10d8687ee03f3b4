"""TFLite custom operators that are plain compositions of ONNX operators, lowered on import.

tf2onnx keeps a custom operator it does not know as a node ``TFL_<code>`` with the TFLite inputs
(constants become initializers in TFLite layout); its options are raw bytes that tf2onnx cannot
read. :func:`read_custom_ops` takes them from the flatbuffer, and :func:`lower_custom_ops` swaps
each node for its composition from :data:`LOWERINGS`. A custom operator without a lowering stays
an error naming it and its node (:func:`refuse_unlowered`).

Table (one entry, one test each in ``tests/converters/test_custom_ops.py``):

``Convolution2DTransposeBias`` (MediaPipe: selfie segmentation, hair segmentation)
    inputs x [N,H,W,Ci], weights [Co,kh,kw,Ci] (OHWI), bias [Co]; options
    ``TfLiteTransposeConvParams`` (int32 padding 1=SAME 2=VALID, stride_w, stride_h).
    y = ConvTranspose(x, W, b) in NHWC with pads (t//2, t - t//2), t = max(0, k - (in-1) % s - 1)
    for SAME and 0 for VALID: output size s*(in-1) + k - t (mediapipe/util/tflite/operations/
    transpose_conv_bias.cc).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper

from edgesal.converters.errors import ConversionError
from edgesal.converters.formats import builtin_names

TF2ONNX_PREFIX = "TFL_"


@dataclass(frozen=True)
class CustomOp:
    """One custom operator of a .tflite file: its code, output tensor, raw options and the static
    shapes of its inputs."""

    code: str
    output: str
    options: bytes
    input_shapes: tuple[tuple[int, ...], ...]


Lowering = Callable[[onnx.NodeProto, CustomOp], list[onnx.NodeProto]]
LOWERINGS: dict[str, Lowering] = {}


def lowering(code: str) -> Callable[[Lowering], Lowering]:
    """Decorator: register the ONNX composition of TFLite custom operator ``code``."""

    def register(fn: Lowering) -> Lowering:
        LOWERINGS[code] = fn
        return fn

    return register


def read_custom_ops(model) -> list[CustomOp]:
    """The custom operators of the main subgraph of a parsed ``tflite.Model``."""
    custom = next(value for value, name in builtin_names().items() if name == "CUSTOM")
    graph = model.Subgraphs(0)
    found = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != custom:
            continue
        name = (code.CustomCode() or b"?").decode(errors="replace")
        output = graph.Tensors(op.Outputs(0)).Name().decode(errors="replace")
        options = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        shapes = tuple(
            tuple(int(d) for d in graph.Tensors(op.Inputs(k)).ShapeAsNumpy())
            for k in range(op.InputsLength())
            if op.Inputs(k) >= 0
        )
        found.append(CustomOp(name, output, options, shapes))
    return found


def refuse_unlowered(path: str | Path, ops: list[CustomOp]) -> None:
    """Custom (and Flex) operators without a lowering have no ONNX equivalent: name them all."""
    missing = [op for op in ops if op.code not in LOWERINGS]
    if missing:
        listed = ", ".join(f"CUSTOM:{op.code} (node '{op.output}')" for op in missing)
        raise ConversionError(
            f"{path}: uses custom TFLite operators that cannot be converted: {listed}; "
            f"custom operators lowered on import: {', '.join(sorted(LOWERINGS))}"
        )


def tf2onnx_handlers(ops: list[CustomOp]) -> dict[str, tuple]:
    """tf2onnx ``custom_op_handlers`` that keep each lowered custom op's node as it is (for
    :func:`lower_custom_ops`), so tf2onnx does not report it as unsupported."""
    return {TF2ONNX_PREFIX + op.code: (_keep, []) for op in ops if op.code in LOWERINGS}


def _keep(ctx, node, name, args) -> None:
    """A tf2onnx handler that leaves the node for the lowering after the conversion."""


def lower_custom_ops(model: onnx.ModelProto, ops: list[CustomOp], path: str | Path) -> None:
    """Replace each ``TFL_<code>`` node tf2onnx left by its composition, in place."""
    by_output = {op.output: op for op in ops}
    nodes = []
    for node in model.graph.node:
        code = node.op_type.removeprefix(TF2ONNX_PREFIX)
        if not node.op_type.startswith(TF2ONNX_PREFIX) or code not in LOWERINGS:
            nodes.append(node)
            continue
        op = by_output.get(node.output[0])
        if op is None or op.code != code:
            raise ConversionError(
                f"{path}: cannot match tf2onnx node '{node.name}' ({node.op_type}) to a custom "
                "operator of the TFLite file"
            )
        nodes.extend(LOWERINGS[code](node, op))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


@lowering("Convolution2DTransposeBias")
def _transpose_conv_bias(node: onnx.NodeProto, op: CustomOp) -> list[onnx.NodeProto]:
    """NHWC transposed convolution plus bias: Transpose -> ConvTranspose -> Transpose."""
    if len(op.options) < 12 or len(op.input_shapes) != 3:
        raise ConversionError(
            f"Convolution2DTransposeBias node '{op.output}': expected 3 inputs and 12 bytes of "
            f"options (padding, stride_w, stride_h), got {len(op.input_shapes)} and "
            f"{len(op.options)}"
        )
    padding, stride_w, stride_h = struct.unpack("<iii", op.options[:12])
    (_, height, width, _), (_, kh, kw, _) = op.input_shapes[0], op.input_shapes[1]
    if padding not in (1, 2) or stride_w < 1 or stride_h < 1 or min(height, width) < 1:
        raise ConversionError(
            f"Convolution2DTransposeBias node '{op.output}': unsupported options "
            f"padding={padding} strides=({stride_h}, {stride_w}) on input {op.input_shapes[0]}"
        )
    pads = [0, 0, 0, 0]
    if padding == 1:  # SAME
        total_h = max(0, kh - (height - 1) % stride_h - 1)
        total_w = max(0, kw - (width - 1) % stride_w - 1)
        pads = [total_h // 2, total_w // 2, total_h - total_h // 2, total_w - total_w // 2]
    x, weights, bias = node.input[:3]
    out = node.output[0]
    prefix = f"{node.name or out}/lowered"
    return [
        helper.make_node("Transpose", [x], [f"{prefix}/x"], perm=[0, 3, 1, 2]),
        helper.make_node("Transpose", [weights], [f"{prefix}/w"], perm=[3, 0, 1, 2]),
        helper.make_node(
            "ConvTranspose",
            [f"{prefix}/x", f"{prefix}/w", bias],
            [f"{prefix}/y"],
            name=f"{prefix}/ConvTranspose",
            kernel_shape=[kh, kw],
            strides=[stride_h, stride_w],
            pads=pads,
        ),
        helper.make_node("Transpose", [f"{prefix}/y"], [out], perm=[0, 2, 3, 1]),
    ]
