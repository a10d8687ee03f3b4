"""The QDQ model: onnxruntime's QDQ quantizer driven by edgesal's ranges and float decisions.

onnxruntime fuses DequantizeLinear -> op -> QuantizeLinear groups into its int8 kernels
(QLinearConv, QLinearMatMul, QLinearAdd, QLinearMul, ...) at session creation, so the file stays
default-domain ONNX (QuantizeLinear / DequantizeLinear, opset >= 13) that any runtime can read.
Activations are uint8 with a zero point (the fast x86 path: u8 x s8), weights int8 symmetric and
per output channel, in 7 bits ([-64, 64]); nodes listed as kept run in float between a
DequantizeLinear and a QuantizeLinear.

Why 7-bit weights: on x86 CPUs without VNNI (AVX2 only, e.g. many AMD EPYC and pre-Cascade Lake
Intel parts) onnxruntime's u8 x s8 kernels multiply with VPMADDUBSW, which adds each pair of
u8 * s8 products into a saturating int16. With full 8-bit weights a pair reaches 255 * 127 * 2 =
64770 > 32767 and the sum clips, so the same file gives other maps on such a CPU than on a VNNI
or ARM one, and than the QDQ semantics the simulator and the TFLite lowering follow (measured on
the tiny test CNN: up to 0.11 of the map's range apart; with 7-bit weights bit-identical).
255 * 64 * 2 = 32640 fits, as onnxruntime's quantization guide advises ("reduce_range"). Int8
activations do not help: onnxruntime shifts them to u8 and uses the same instruction.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import onnx
from onnxruntime.quantization import QuantType
from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

from edgesal.graph.fold import remove_unused_initializers
from edgesal.quant.calibrate import TensorRange, tensors_data
from edgesal.quant.prepare import shared_weights

# Operators quantized when their neighbours allow it. Data movement (Reshape, Transpose, Slice,
# Concat, ...) follows its input; the map's own post-processing (Abs, Reduce*, Div) is not listed
# and so stays float: it is cheap and it sets the map's resolution. ConvTranspose is left out:
# onnxruntime has no int8 kernel for it on CPU and would dequantize its weight on every run.
QUANTIZED_OPS = (
    "Conv", "Gemm", "MatMul", "Add", "Mul", "Clip", "Relu",
    "GlobalAveragePool", "AveragePool", "MaxPool", "Concat", "Reshape", "Flatten", "Transpose",
    "Squeeze", "Unsqueeze", "Slice", "Pad", "Resize", "Split",
)  # fmt: skip


def build(
    model: onnx.ModelProto,
    ranges: dict[str, TensorRange],
    kept: Iterable[str] = (),
    per_channel: bool = True,
) -> onnx.ModelProto:
    """``model`` (prepared) quantized to QDQ; ``kept`` nodes stay float. Weights read by several
    nodes are quantized per tensor, once."""
    inferred = onnx.shape_inference.infer_shapes(copy.deepcopy(model))
    quantizer = QDQQuantizer(
        inferred,
        per_channel,
        True,  # reduce_range: 7-bit weights, no int16 saturation on AVX2 (module docstring)
        QuantType.QInt8,
        QuantType.QUInt8,
        tensors_data(ranges),
        [],
        sorted(set(kept)),
        list(QUANTIZED_OPS),
        {
            "WeightSymmetric": True,
            "TensorQuantOverrides": {w: [{"symmetric": True}] for w in shared_weights(model)},
        },
    )
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns about pre-processing
    try:
        quantizer.quantize_model()
    finally:
        logging.getLogger().setLevel(level)
    result = quantizer.model.model
    del result.graph.value_info[:]
    remove_unused_initializers(result)  # the float weights and biases the quantizer replaced
    topological_sort(result.graph)
    return result


def topological_sort(graph: onnx.GraphProto) -> None:
    """Order nodes so every input is produced before it is read (the quantizer appends its Q/DQ
    nodes at the end, which onnx.checker and other runtimes refuse), in place; ties keep the
    original order."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            names = ", ".join(n.name for n in pending[:3])
            raise ValueError(f"the quantized graph has a cycle or a missing input near {names}")
        ready_ids = {id(n) for n in ready}
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [n for n in pending if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)


def quantized_nodes(qdq: onnx.ModelProto) -> set[str]:
    """Names of the non-Q/DQ nodes that read at least one DequantizeLinear output."""
    dq_outputs = {n.output[0] for n in qdq.graph.node if n.op_type == "DequantizeLinear"}
    return {
        n.name
        for n in qdq.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any(i in dq_outputs for i in n.input)
    }
