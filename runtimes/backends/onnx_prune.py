"""Prune an ONNX model to the nodes a subset of its outputs needs, without the ``onnx`` package.

onnxruntime executes every node of a graph whatever outputs are requested, so a prediction-only
run of a saliency model would pay for the backward pass. This module walks the protobuf wire
format (varint keys, length-delimited fields) of ``ModelProto.graph`` and keeps the nodes that the
wanted outputs depend on, the initializers and inputs those nodes read, and those outputs. Graphs
with control flow (``If``/``Loop``/``Scan`` subgraphs read outer names implicitly) are not pruned.
"""

from __future__ import annotations

from collections.abc import Iterator

# Field numbers from onnx.proto.
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT = 1, 5, 11, 12
NODE_INPUT, NODE_OUTPUT, NODE_ATTRIBUTE = 1, 2, 5
ATTR_GRAPH, ATTR_GRAPHS = 6, 11
TENSOR_NAME, VALUE_INFO_NAME = 8, 1
LENGTH_DELIMITED = 2


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def fields(buf: memoryview) -> Iterator[tuple[int, int, int, memoryview]]:
    """(field number, start, end, payload) for each field; payload is the value bytes of a
    length-delimited field and the raw encoding otherwise."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            payload = buf[start:pos]
        elif wire == 1:
            pos += 8
            payload = buf[start:pos]
        elif wire == LENGTH_DELIMITED:
            size, pos = _varint(buf, pos)
            payload = buf[pos : pos + size]
            pos += size
        elif wire == 5:
            pos += 4
            payload = buf[start:pos]
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, start, pos, payload


def _strings(buf: memoryview, number: int) -> list[str]:
    return [bytes(p).decode() for n, _, _, p in fields(buf) if n == number]


def _has_subgraph(node: memoryview) -> bool:
    for n, _, _, attr in fields(node):
        if n == NODE_ATTRIBUTE and any(a in (ATTR_GRAPH, ATTR_GRAPHS) for a, *_ in fields(attr)):
            return True
    return False


def split_graph(model: bytes) -> tuple[bytes, memoryview, bytes] | None:
    """(bytes before ``ModelProto.graph``, the graph's payload, bytes after); None without one."""
    buf = memoryview(model)
    found = next((f for f in fields(buf) if f[0] == MODEL_GRAPH), None)
    if found is None:
        return None
    _, start, end, graph = found
    return bytes(buf[:start]), graph, bytes(buf[end:])


def length_delimited(number: int, payload: bytes) -> bytes:
    """One encoded length-delimited field (string, bytes or message)."""
    return _encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def join_graph(before: bytes, graph: bytes, after: bytes) -> bytes:
    """The model of :func:`split_graph`'s parts with ``graph`` as its graph payload."""
    return before + length_delimited(MODEL_GRAPH, graph) + after


def prune(model: bytes, outputs: list[str]) -> bytes | None:
    """The serialized model computing only ``outputs``; None when it cannot be pruned safely."""
    parts = split_graph(model)
    if parts is None:
        return None
    before, graph, after = parts
    entries = list(fields(graph))
    nodes = [(s, e, p) for n, s, e, p in entries if n == GRAPH_NODE]
    if any(_has_subgraph(p) for _, _, p in nodes):
        return None
    needed, dropped = set(outputs), set()
    for start, _, node in reversed(nodes):
        if needed.intersection(_strings(node, NODE_OUTPUT)):
            needed.update(_strings(node, NODE_INPUT))
        else:
            dropped.add(start)
    kept = bytearray()
    for number, start, end, payload in entries:
        if number == GRAPH_NODE and start in dropped:
            continue
        if number == GRAPH_OUTPUT and _strings(payload, VALUE_INFO_NAME)[0] not in outputs:
            continue
        if number == GRAPH_INITIALIZER and _strings(payload, TENSOR_NAME)[0] not in needed:
            continue
        if number == GRAPH_INPUT and _strings(payload, VALUE_INFO_NAME)[0] not in needed:
            continue
        kept += graph[start:end]
    return join_graph(before, bytes(kept), after)
