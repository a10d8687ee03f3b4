"""Rewrite edgesal's 0/1 gradient masks into operators onnxruntime's x86 CPU kernels keep blocked.

An exported saliency model writes each activation mask in the portable form
``Cast(And(Greater(v, a), Less(v, b)))`` (or one comparison alone). onnxruntime's NCHWc layout
transformer keeps convolutions, HardSigmoid and same-shape Mul in its blocked layout but not
comparisons or booleans, so every mask pulls the activation out of the blocked layout and every
masked gradient back in: on MobileNetV2 that is ~100 reorders, a quarter of the saliency call.
With ``K = 2**100`` the same masks are

    HardSigmoid(v; alpha=K, beta=-K*a) = 1[v > a]    HardSigmoid(v; alpha=-K, beta=K*b) = 1[v < b]

and their product. They are exact in float32 whenever |v - a| >= 2**-100: K, K*a and K*b are
exact, K*v - K*a rounds to a number of magnitude >= 1 with the sign of v - a (near a the
subtraction is exact), and the clamp to [0, 1] turns it into 0 or 1. Only a v within 2**-100 of
a bound gets a fractional mask. In float16 K is infinite (0 * inf is NaN), so the form is for
float32 CPU runs only: ``edgesal export --for onnxruntime-cpu`` (the default for .onnx files)
writes it into the file, and :func:`portable_masks` turns it back into the comparisons, exactly,
for the TensorRT/CUDA providers, the TFLite converter and int8 quantization. This module walks the
protobuf wire format like :mod:`.onnx_prune`, so the device needs no ``onnx`` package. The form
the rules emit is owned by ``edgesal.graph.idioms.masks``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edgesal.runtimes.backends.onnx_prune import (
    GRAPH_INITIALIZER,
    GRAPH_INPUT,
    GRAPH_NODE,
    GRAPH_OUTPUT,
    LENGTH_DELIMITED,
    NODE_ATTRIBUTE,
    NODE_INPUT,
    NODE_OUTPUT,
    VALUE_INFO_NAME,
    _encode_varint,
    _has_subgraph,
    _strings,
    _varint,
    fields,
    join_graph,
    length_delimited,
    split_graph,
)

K = 2.0**100
NODE_NAME, NODE_OP_TYPE, NODE_DOMAIN = 3, 4, 7
ATTR_NAME, ATTR_F, ATTR_I, ATTR_T, ATTR_TYPE = 1, 2, 3, 5, 20
ATTR_FLOAT, ATTR_INT = 1, 2
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_FLOAT_DATA, TENSOR_NAME, TENSOR_RAW = 1, 2, 4, 8, 9
FLOAT = 1  # TensorProto.FLOAT


@dataclass
class _Node:
    start: int
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, memoryview]
    domain: str


def nchwc_masks(model: bytes) -> bytes:
    """``model`` with every float mask of constant-bounded comparisons written as HardSigmoids;
    unchanged when there is none (or the graph is not one this rewrite understands)."""
    parts = split_graph(model)
    if parts is None:
        return model
    before, graph, after = parts
    entries = list(fields(graph))
    if any(n == GRAPH_NODE and _has_subgraph(payload) for n, _, _, payload in entries):
        return model  # subgraphs read outer names implicitly: readers cannot be counted here
    nodes = [_parse_node(start, payload) for n, start, _, payload in entries if n == GRAPH_NODE]
    constants = _scalar_constants(entries, nodes)
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    graph_outputs = [_strings(p, VALUE_INFO_NAME)[0] for n, _, _, p in entries if n == GRAPH_OUTPUT]
    for name in graph_outputs:
        readers[name] = readers.get(name, 0) + 1
    producer = {out: node for node in nodes for out in node.outputs}
    removed: set[int] = set()
    inserted: dict[int, bytes] = {}
    for node in nodes:
        bounds = _mask_bounds(node, producer, readers, constants)
        if bounds is None:
            continue
        value, low, high, chain = bounds
        removed.update(c.start for c in chain)
        inserted[node.start] = _mask_nodes(value, low, high, node.outputs[0])
    if not inserted:
        return model
    still_read = {name for node in nodes if node.start not in removed for name in node.inputs}
    still_read.update(graph_outputs)  # and graph inputs: an initializer listed there stays
    still_read.update(_strings(p, VALUE_INFO_NAME)[0] for n, _, _, p in entries if n == GRAPH_INPUT)
    kept = bytearray()
    for number, start, end, payload in entries:
        if number == GRAPH_NODE and start in inserted:
            kept += inserted[start]
        elif number == GRAPH_NODE and start in removed:
            continue
        elif number == GRAPH_INITIALIZER and _orphaned(payload, constants, still_read):
            continue
        else:
            kept += graph[start:end]
    return join_graph(before, bytes(kept), after)


def _orphaned(initializer: memoryview, bounds: dict[str, float], still_read: set[str]) -> bool:
    """A scalar bound that only the replaced comparisons read."""
    name = _strings(initializer, TENSOR_NAME)[0]
    return name in bounds and name not in still_read


def _parse_node(start: int, payload: memoryview) -> _Node:
    attrs = {}
    for n, _, _, attr in fields(payload):
        if n == NODE_ATTRIBUTE:
            attrs[_strings(attr, ATTR_NAME)[0]] = attr
    strings = {k: _strings(payload, k) for k in (NODE_OP_TYPE, NODE_DOMAIN)}
    return _Node(
        start,
        (strings[NODE_OP_TYPE] or [""])[0],
        _strings(payload, NODE_INPUT),
        _strings(payload, NODE_OUTPUT),
        attrs,
        (strings[NODE_DOMAIN] or [""])[0],
    )


def _scalar_constants(entries: list, nodes: list[_Node]) -> dict[str, float]:
    """float32 one-element initializers and Constant nodes, by name."""
    found = {}
    for n, _, _, payload in entries:
        if n == GRAPH_INITIALIZER:
            name, value = _scalar_tensor(payload)
            if value is not None:
                found[name] = value
    for node in nodes:
        if node.op == "Constant" and not node.domain and set(node.attrs) == {"value"}:
            tensor = next(p for k, _, _, p in fields(node.attrs["value"]) if k == ATTR_T)
            _, value = _scalar_tensor(tensor)
            if value is not None:
                found[node.outputs[0]] = value
    return found


def _scalar_tensor(tensor: memoryview) -> tuple[str, float | None]:
    """(name, value) of a TensorProto; value None unless it is one float32 element."""
    name, elements, dtype, data = "", 1, None, None
    for n, start, _, payload in fields(tensor):
        packed = _varint(tensor, start)[0] & 7 == LENGTH_DELIMITED
        if n == TENSOR_NAME:
            name = bytes(payload).decode()
        elif n == TENSOR_DIMS:
            for dim in _packed_varints(payload) if packed else [_varint(tensor, start + 1)[0]]:
                elements *= dim
        elif n == TENSOR_DATA_TYPE:
            dtype = _varint(tensor, start + 1)[0]
        elif n == TENSOR_RAW or (n == TENSOR_FLOAT_DATA and packed):
            data = bytes(payload)
        elif n == TENSOR_FLOAT_DATA:
            data = bytes(payload[1:])  # unpacked fixed32: one key byte, then the value
    if dtype != FLOAT or elements != 1 or data is None or len(data) != 4:
        return name, None
    return name, struct.unpack("<f", data)[0]


def _packed_varints(payload: memoryview) -> list[int]:
    out, pos = [], 0
    while pos < len(payload):
        value, pos = _varint(payload, pos)
        out.append(value)
    return out


def _mask_bounds(cast: _Node, producer: dict, readers: dict, constants: dict):
    """(v, a, b, nodes replaced) when ``cast`` is a float Cast of a < v < b (a or b may be None)."""
    if cast.op != "Cast" or cast.domain or _int_attr(cast, "to") != FLOAT:
        return None
    condition = producer.get(cast.inputs[0])
    if condition is None or readers.get(cast.inputs[0]) != 1:
        return None
    comparisons = [condition]
    if condition.op == "And" and not condition.domain:
        comparisons = [producer.get(name) for name in condition.inputs]
        if any(c is None or readers.get(c.outputs[0]) != 1 for c in comparisons):
            return None
    sides = [s for s in (_comparison(c, constants) for c in comparisons) if s is not None]
    if len(sides) != len(comparisons) or len({s[0] for s in sides}) != 1:
        return None
    lows = [bound for _, kind, bound in sides if kind == "Greater"]
    highs = [bound for _, kind, bound in sides if kind == "Less"]
    if len(lows) > 1 or len(highs) > 1:
        return None
    chain = [cast, *comparisons] + ([condition] if condition.op == "And" else [])
    return sides[0][0], lows[0] if lows else None, highs[0] if highs else None, chain


def _comparison(node: _Node, constants: dict) -> tuple[str, str, float] | None:
    if node.op not in ("Greater", "Less") or node.domain or len(node.inputs) != 2:
        return None
    bound = constants.get(node.inputs[1])
    if bound is None or abs(bound) > 2.0**20:  # K * bound must stay finite and exact
        return None
    return node.inputs[0], node.op, bound


def _int_attr(node: _Node, name: str) -> int | None:
    attr = node.attrs.get(name)
    if attr is None:
        return None
    return next((_varint(p, 1)[0] for k, _, _, p in fields(attr) if k == ATTR_I), None)


def _mask_nodes(value: str, low: float | None, high: float | None, output: str) -> bytes:
    steps = []
    if low is not None:
        steps.append((f"{output}/above", K, -K * low))
    if high is not None:
        steps.append((f"{output}/below", -K, K * high))
    if len(steps) == 1:
        name, alpha, beta = steps[0]
        return _hard_sigmoid(value, output, name, alpha, beta)
    out = b"".join(_hard_sigmoid(value, name, name, alpha, beta) for name, alpha, beta in steps)
    return out + _node("Mul", [steps[0][0], steps[1][0]], [output], f"{output}/both", [])


def _hard_sigmoid(value: str, output: str, name: str, alpha: float, beta: float) -> bytes:
    attrs = [_float_attr("alpha", alpha), _float_attr("beta", beta)]
    return _node("HardSigmoid", [value], [output], name, attrs)


def _node(op: str, inputs: list[str], outputs: list[str], name: str, attrs: list[bytes]) -> bytes:
    body = b"".join(_string(NODE_INPUT, i) for i in inputs)
    body += b"".join(_string(NODE_OUTPUT, o) for o in outputs)
    body += _string(NODE_NAME, name) + _string(NODE_OP_TYPE, op)
    body += b"".join(length_delimited(NODE_ATTRIBUTE, a) for a in attrs)
    return length_delimited(GRAPH_NODE, body)


def _float_attr(name: str, value: float) -> bytes:
    fixed32 = _encode_varint(ATTR_F << 3 | 5) + struct.pack("<f", value)
    return _string(ATTR_NAME, name) + fixed32 + _encode_varint(ATTR_TYPE << 3) + bytes([ATTR_FLOAT])


def _string(number: int, text: str) -> bytes:
    return length_delimited(number, text.encode())


def portable_masks(model: bytes) -> bytes:
    """The inverse of :func:`nchwc_masks`: every HardSigmoid mask with slope +-K (and the Mul of
    a pair on one tensor) back to ``Cast(And(Greater(v, a), Less(v, b)))``, which computes the
    same 0/1 values in any precision; unchanged when there is none."""
    parts = split_graph(model)
    if parts is None:
        return model
    before, graph, after = parts
    entries = list(fields(graph))
    if any(n == GRAPH_NODE and _has_subgraph(payload) for n, _, _, payload in entries):
        return model
    nodes = [_parse_node(start, payload) for n, start, _, payload in entries if n == GRAPH_NODE]
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    for n, _, _, p in entries:
        if n == GRAPH_OUTPUT:
            name = _strings(p, VALUE_INFO_NAME)[0]
            readers[name] = readers.get(name, 0) + 1
    sides = {node.outputs[0]: side for node in nodes if (side := _step(node)) is not None}
    replaced: dict[int, bytes] = {}
    removed: set[int] = set()
    for node in nodes:
        found = _blocked_mask(node, sides, readers, nodes)
        if found is not None:
            chain, value, low, high = found
            removed.update(c.start for c in chain)
            replaced[node.start] = _portable_nodes(value, low, high, node.outputs[0])
    if not replaced:
        return model
    kept = bytearray()
    for number, start, end, _ in entries:
        if number == GRAPH_NODE and start in replaced:
            kept += replaced[start]
        elif not (number == GRAPH_NODE and start in removed):
            kept += graph[start:end]
    return join_graph(before, bytes(kept), after)


def _step(node: _Node) -> tuple[str, str, float] | None:
    """(v, "Greater" or "Less", bound) when ``node`` is HardSigmoid(v; +-K, beta) of this form."""
    if node.op != "HardSigmoid" or node.domain or len(node.inputs) != 1:
        return None
    alpha, beta = _float_attr_value(node, "alpha"), _float_attr_value(node, "beta")
    if alpha is None or beta is None or abs(alpha) != K:
        return None
    return (
        (node.inputs[0], "Greater", -beta / K) if alpha > 0 else (node.inputs[0], "Less", beta / K)
    )


def _blocked_mask(node: _Node, sides: dict, readers: dict, nodes: list[_Node]):
    """(nodes replaced, v, a, b) for a HardSigmoid mask, or a Mul of a Greater and a Less one on
    the same v whose HardSigmoids only it reads; None otherwise."""
    if node.op == "HardSigmoid" and node.outputs[0] in sides:
        if any(
            n.op == "Mul" and node.outputs[0] in n.inputs and _pair(n, sides, readers)
            for n in nodes
        ):
            return None  # half of a pair: replaced with its Mul
        v, kind, bound = sides[node.outputs[0]]
        return [node], v, *((bound, None) if kind == "Greater" else (None, bound))
    pair = _pair(node, sides, readers) if node.op == "Mul" else None
    if pair is None:
        return None
    (v, _, low), (_, _, high) = pair
    steps = [n for n in nodes if n.outputs and n.outputs[0] in node.inputs]
    return [node, *steps], v, low, high


def _pair(mul: _Node, sides: dict, readers: dict):
    """The (Greater, Less) sides of ``mul`` when it multiplies two masks of one tensor."""
    if mul.domain or len(mul.inputs) != 2 or any(readers.get(i) != 1 for i in mul.inputs):
        return None
    found = [f for f in (sides.get(i) for i in mul.inputs) if f is not None]
    if len(found) != 2 or found[0][0] != found[1][0]:  # a side of each of the two inputs
        return None
    found.sort(key=lambda f: f[1] != "Greater")
    return found if [f[1] for f in found] == ["Greater", "Less"] else None


def _float_attr_value(node: _Node, name: str) -> float | None:
    attr = node.attrs.get(name)
    if attr is None:
        return None
    fixed = next((p for k, _, _, p in fields(attr) if k == ATTR_F), None)
    return None if fixed is None else struct.unpack("<f", bytes(fixed[-4:]))[0]


def _portable_nodes(value: str, low: float | None, high: float | None, output: str) -> bytes:
    """Scalar bound initializers, Greater/Less, And of both, and the float Cast into ``output``."""
    out, conds = b"", []
    for bound, op, tag in ((low, "Greater", "above"), (high, "Less", "below")):
        if bound is not None:
            name = f"{output}/{tag}"
            out += length_delimited(GRAPH_INITIALIZER, _scalar_proto(f"{name}/bound", bound))
            out += _node(op, [value, f"{name}/bound"], [name], name, [])
            conds.append(name)
    cond = conds[0]
    if len(conds) == 2:
        cond = f"{output}/both"
        out += _node("And", conds, [cond], cond, [])
    return out + _node("Cast", [cond], [output], f"{output}/cast", [_int_attr_bytes("to", FLOAT)])


def _scalar_proto(name: str, value: float) -> bytes:
    dtype = _encode_varint(TENSOR_DATA_TYPE << 3) + _encode_varint(FLOAT)
    return (
        dtype + _string(TENSOR_NAME, name) + length_delimited(TENSOR_RAW, struct.pack("<f", value))
    )


def _int_attr_bytes(name: str, value: int) -> bytes:
    body = _string(ATTR_NAME, name) + _encode_varint(ATTR_I << 3) + _encode_varint(value)
    return body + _encode_varint(ATTR_TYPE << 3) + bytes([ATTR_INT])
