"""Read the ``edgesal`` metadata entry of a TFLite flatbuffer with no schema package.

A ``.sal.tflite`` model carries its contract as ``Model.metadata`` entry named ``edgesal`` whose
buffer holds a JSON object of ``edgesal.*`` keys to string values (the same map an ONNX model keeps
in ``metadata_props``). Flatbuffer layout used here: a table starts with an int32 offset back to
its vtable; the vtable lists uint16 field offsets; vectors and strings are uint32-length prefixed
and reached through a uint32 offset. Model fields: 4 ``buffers``, 6 ``metadata``; Metadata: 0
``name``, 1 ``buffer``; Buffer: 0 ``data``, 1 ``offset``, 2 ``size`` (data stored after the
flatbuffer in models over 2 GB).

The file is untrusted: every offset and length is checked against the buffer before it is
followed, a vector's count is bounded by the bytes that could hold it, and anything malformed
raises :class:`FlatbufferError` (a :class:`~edgesal.runtimes.errors.ModelError`) naming what was
wrong.
"""

from __future__ import annotations

import json
import struct

from edgesal.runtimes.errors import ModelError

MODEL_SUBGRAPHS, MODEL_BUFFERS, MODEL_METADATA = 2, 4, 6
SUBGRAPH_TENSORS, SUBGRAPH_INPUTS = 0, 1
TENSOR_SHAPE, TENSOR_TYPE, TENSOR_NAME = 0, 1, 3
# TensorType -> bytes per element (schema.fbs order); unknown types count 8, the largest
ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 4}
ENTRY = "edgesal"


class FlatbufferError(ModelError, ValueError):
    """A malformed flatbuffer; a ValueError too, as malformed data is (callers catch either)."""


def _unpack(buf: bytes, fmt: str, pos: int) -> int:
    size = struct.calcsize(fmt)
    if not 0 <= pos <= len(buf) - size:
        raise FlatbufferError(f"TFLite flatbuffer: offset {pos} outside the {len(buf)}-byte file")
    return struct.unpack_from(fmt, buf, pos)[0]


def _field(buf: bytes, table: int, index: int) -> int | None:
    vtable = table - _unpack(buf, "<i", table)
    vt_size = _unpack(buf, "<H", vtable)
    slot = 4 + 2 * index
    if slot + 2 > vt_size:
        return None
    offset = _unpack(buf, "<H", vtable + slot)
    return table + offset if offset else None


def _deref(buf: bytes, pos: int) -> int:
    return pos + _unpack(buf, "<I", pos)


def _vector(buf: bytes, table: int, index: int, width: int) -> tuple[int, int]:
    """(start of elements, count) of a vector field of ``width``-byte elements; (0, 0) when
    absent. The elements must lie inside the buffer."""
    pos = _field(buf, table, index)
    if pos is None:
        return 0, 0
    vec = _deref(buf, pos)
    count = _unpack(buf, "<I", vec)
    if count * width > len(buf) - vec - 4:
        raise FlatbufferError(f"TFLite flatbuffer: vector of {count} entries past the file end")
    return vec + 4, count


def _tables(buf: bytes, table: int, index: int) -> list[int]:
    start, count = _vector(buf, table, index, 4)
    return [_deref(buf, start + 4 * i) for i in range(count)]


def _scalar(buf: bytes, table: int, index: int, fmt: str) -> int:
    pos = _field(buf, table, index)
    return _unpack(buf, fmt, pos) if pos is not None else 0


def _buffer_bytes(buf: bytes, table: int) -> bytes:
    start, count = _vector(buf, table, 0, 1)
    if count:
        return buf[start : start + count]
    offset, size = _scalar(buf, table, 1, "<Q"), _scalar(buf, table, 2, "<Q")
    if size and offset + size > len(buf):
        raise FlatbufferError("TFLite flatbuffer: a buffer after the model runs past the file end")
    return buf[offset : offset + size] if size else b""


def read_input_shapes(buf: bytes) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (declared shape, bytes per element) of the main subgraph's inputs, read before
    an interpreter is made (it allocates every tensor when it is)."""
    subgraphs = _tables(buf, _deref(buf, 0), MODEL_SUBGRAPHS)
    if not subgraphs:
        raise FlatbufferError("TFLite flatbuffer has no subgraph")
    tensors = _tables(buf, subgraphs[0], SUBGRAPH_TENSORS)
    start, count = _vector(buf, subgraphs[0], SUBGRAPH_INPUTS, 4)
    shapes = {}
    for i in range(count):
        index = _unpack(buf, "<i", start + 4 * i)
        if not 0 <= index < len(tensors):
            raise FlatbufferError(f"TFLite subgraph input {index} is not one of its tensors")
        tensor = tensors[index]
        dims_at, rank = _vector(buf, tensor, TENSOR_SHAPE, 4)
        shape = tuple(_unpack(buf, "<i", dims_at + 4 * d) for d in range(rank))
        name_at, name_len = _vector(buf, tensor, TENSOR_NAME, 1)
        name = buf[name_at : name_at + name_len].decode(errors="replace") or f"input {i}"
        shapes[name] = (shape, ITEMSIZE.get(_scalar(buf, tensor, TENSOR_TYPE, "<b"), 8))
    return shapes


def read_metadata(buf: bytes) -> dict[str, str]:
    """The ``edgesal.*`` key -> value map stored in the model; {} when there is none."""
    root = _deref(buf, 0)
    buffers = _tables(buf, root, MODEL_BUFFERS)
    for entry in _tables(buf, root, MODEL_METADATA):
        name_start, name_len = _vector(buf, entry, 0, 1)
        if buf[name_start : name_start + name_len].decode(errors="replace") != ENTRY:
            continue
        index = _scalar(buf, entry, 1, "<I")
        if index >= len(buffers):
            raise FlatbufferError(f"TFLite {ENTRY!r} metadata: no buffer {index} of {len(buffers)}")
        try:
            data = json.loads(_buffer_bytes(buf, buffers[index]))
        except (ValueError, RecursionError) as exc:
            raise FlatbufferError(f"TFLite '{ENTRY}' metadata is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise FlatbufferError(f"TFLite '{ENTRY}' metadata is not a JSON object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    return {}
