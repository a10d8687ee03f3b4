"""``edgesal doctor MODEL``: which saliency methods a model supports and what each costs.

One screen to read before choosing a method for a small device: for every method, whether the
export works and why not (operators without gradient rules with their nodes, other errors), the
fixed-batch rewrites a multi-sample method needed (edgesal/graph/rebatch.py) or its fallback to one
sample at a time, the forward pass's estimated FLOPs, the saliency's added FLOPs, and the bytes of
forward activations the backward pass reads (what must stay in memory until the backward runs).
Custom-domain operators are listed on their own.

FLOPs are estimates from static shapes: 2 * multiply-adds for Conv, ConvTranspose, MatMul and
Gemm, window size per output for pooling, one per output element for other compute operators,
none for pure reshapes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from edgesal import metadata
from edgesal.errors import EdgesalError, UnsupportedOpError
from edgesal.export import ExportOptions, export_saliency, fix_input_shape
from edgesal.graph.fold import fold_constants
from edgesal.graph.info import TensorInfo, attrs
from edgesal.methods import METHODS
from edgesal.onnx_io import upgraded
from edgesal.options import METHOD_NAMES

_FREE = {
    "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size", "Constant",
    "ConstantOfShape", "Cast", "Dropout",
}  # fmt: skip
_COPY_MARK = "/samples"  # forward copies of multi-sample methods: edgesal/samplesK/...


@dataclass
class MethodReport:
    """One method on one model: ``ok`` or ``why`` not, and its costs when it exports."""

    method: str
    ok: bool
    why: str = ""
    missing: list[tuple[str, str]] = field(default_factory=list)  # (op type, node) without rule
    saliency_flops: int = 0
    kept_bytes: int = 0
    batching: dict = field(default_factory=dict)


@dataclass
class Diagnosis:
    """The model's forward cost, its custom operators, and one report per method."""

    input: str
    shape: list[int]
    nodes: int
    forward_flops: int
    custom_ops: list[tuple[str, str, str]]  # (domain, op type, node)
    methods: list[MethodReport]


def diagnose(
    model: onnx.ModelProto, options: ExportOptions | None = None, methods: list[str] | None = None
) -> Diagnosis:
    """Export ``model`` with every method (``options`` for the rest) and report what happened."""
    options = options or ExportOptions()
    forward = _prepared(model, options)
    info = TensorInfo(forward)
    image = options.input or forward.graph.input[0].name
    names = methods or [m for m in METHOD_NAMES if m in METHODS]
    reports = [_try(model, options, name, forward) for name in names]
    return Diagnosis(
        input=image,
        shape=list(info.dims(image) or []),
        nodes=len(forward.graph.node),
        forward_flops=graph_flops(forward),
        custom_ops=custom_ops(model),
        methods=reports,
    )


def _prepared(model: onnx.ModelProto, options: ExportOptions) -> onnx.ModelProto:
    """The forward graph as export sees it: upgraded, input shape fixed, constants folded."""
    forward = upgraded(copy.deepcopy(model))
    fix_input_shape(forward, options.input, options.batch, options.input_shape)
    return fold_constants(forward)


def _try(
    model: onnx.ModelProto, options: ExportOptions, name: str, forward: onnx.ModelProto
) -> MethodReport:
    one = copy.copy(options)
    one.method, one.methods = name, None
    try:
        exported = export_saliency(model, one)
    except UnsupportedOpError as exc:
        return MethodReport(name, False, "no gradient rule", missing=list(exc.nodes))
    except EdgesalError as exc:
        return MethodReport(name, False, str(exc).splitlines()[0])
    return MethodReport(
        name,
        True,
        saliency_flops=max(graph_flops(exported) - graph_flops(forward), 0),
        kept_bytes=kept_activation_bytes(exported, forward),
        batching=metadata.read(exported).get("batching") or {},
    )


def custom_ops(model: onnx.ModelProto) -> list[tuple[str, str, str]]:
    """(domain, op type, node) of every node outside the default ONNX domain."""
    return [
        (n.domain, n.op_type, n.name or n.output[0])
        for n in model.graph.node
        if n.domain not in ("", "ai.onnx")
    ]


def graph_flops(model: onnx.ModelProto) -> int:
    """Sum of :func:`node_flops` over the graph (static shapes from shape inference)."""
    info = TensorInfo(model)
    return sum(node_flops(node, info) for node in model.graph.node)


def node_flops(node: onnx.NodeProto, info: TensorInfo) -> int:
    """Estimated floating-point operations of one node (0 where a shape is unknown)."""
    if node.op_type in _FREE or not node.output:
        return 0
    out = _elements(info, node.output[0])
    if out is None:
        return 0
    op = node.op_type
    if op in ("Conv", "ConvTranspose") and len(node.input) > 1:
        weight = info.dims(node.input[1]) or ()
        per = math.prod(d for d in weight[1:] if isinstance(d, int))
        base = _elements(info, node.input[0]) if op == "ConvTranspose" else out
        return 2 * (base or 0) * per
    if op in ("MatMul", "Gemm"):
        a = info.dims(node.input[0]) or ()
        transposed = op == "Gemm" and attrs(node).get("transA", 0)
        k = a[0] if transposed else (a[-1] if a else 0)
        return 2 * out * (k if isinstance(k, int) else 0)
    if op in ("MaxPool", "AveragePool", "LpPool"):
        return out * math.prod(attrs(node).get("kernel_shape", [1]))
    if op.startswith("Global"):
        return _elements(info, node.input[0]) or 0
    return out


def _elements(info: TensorInfo, name: str) -> int | None:
    dims = info.dims(name)
    if dims is None or not all(isinstance(d, int) for d in dims):
        return None
    return math.prod(dims)


def kept_activation_bytes(exported: onnx.ModelProto, forward: onnx.ModelProto) -> int:
    """Bytes of the forward tensors (the model's own and multi-sample copies) that backward nodes
    read: what a runtime must keep from the forward pass until the backward pass has used it."""
    produced_forward = {o for n in forward.graph.node for o in n.output}
    produced_forward |= {i.name for i in exported.graph.input}
    copies = {o for n in exported.graph.node if _COPY_MARK in n.name for o in n.output}
    forward_tensors = produced_forward | copies
    constants = {t.name for t in exported.graph.initializer}
    kept: set[str] = set()
    for node in exported.graph.node:
        if node.name.startswith("edgesal/") and _COPY_MARK not in node.name:
            kept.update(t for t in node.input if t in forward_tensors and t not in constants)
    info = TensorInfo(exported)
    total = 0
    for name in kept:
        elements = _elements(info, name)
        if elements is not None:
            total += elements * np.dtype(info.np_dtype(name)).itemsize
    return total


def format_diagnosis(d: Diagnosis) -> str:
    """The one-screen text report."""
    lines = [
        f"input '{d.input}' {d.shape}; forward: {d.nodes} nodes, {_mega(d.forward_flops)} MFLOP",
        "custom ops: "
        + (", ".join(f"{op} ({dom}, node '{n}')" for dom, op, n in d.custom_ops) or "none"),
        "",
        f"{'method':<11} {'export':<6} {'saliency MFLOP':>14} {'x forward':>9} "
        f"{'backward keeps':>14}  batching / why not",
    ]
    for r in d.methods:
        if r.ok:
            ratio = r.saliency_flops / d.forward_flops if d.forward_flops else 0.0
            lines.append(
                f"{r.method:<11} {'ok':<6} {_mega(r.saliency_flops):>14} {ratio:>9.2f} "
                f"{r.kept_bytes / 2**20:>11.1f} MB  {_batching(r.batching)}"
            )
        else:
            lines.append(f"{r.method:<11} {'no':<6} {'-':>14} {'-':>9} {'-':>14}  {r.why}")
            lines += [f"{'':<11} missing rule: {op} (node '{node}')" for op, node in r.missing]
    return "\n".join(lines)


def _mega(flops: int) -> str:
    return f"{flops / 1e6:.1f}"


def _batching(batching: dict) -> str:
    mode = batching.get("mode")
    if not mode:
        return "-"
    if mode == "sequential":
        return f"one sample at a time: {batching.get('reason', '')}"
    size = f"chunks of {batching['max_batch']}" if batching.get("max_batch") else "one batch"
    if mode != "rebatched":
        return size
    rewrites = batching.get("rewrites", [])
    listed = "; ".join(rewrites[:2]) + (" ..." if len(rewrites) > 2 else "")
    return f"rebatched ({size}), {len(rewrites)} rewrite(s): {listed}"


def as_dict(d: Diagnosis) -> dict:
    """JSON-ready form of the diagnosis (``edgesal doctor --json``)."""
    return asdict(d)
