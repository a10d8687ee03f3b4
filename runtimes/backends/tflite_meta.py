"""Read the ``edgesal`` metadata entry of a TFLite flatbuffer with no schema package.

A ``.sal.tflite`` model carries its contract as ``Model.metadata`` entry named ``edgesal`` whose
buffer holds a JSON object of ``edgesal.*`` keys to string values (the same map an ONNX model keeps
in ``metadata_props``). Flatbuffer layout used here: a table starts with an int32 offset back to
its vtable; the vtable lists uint16 field offsets; vectors and strings are uint32-length prefixed
and reached through a uint32 offset. Model fields: 4 ``buffers``, 6 ``metadata``; Metadata: 0
``name``, 1 ``buffer``; Buffer: 0 ``data``, 1 ``offset``, 2 ``size`` (data stored after the
flatbuffer in models over 2 GB).
"""

from __future__ import annotations

import json
import struct

MODEL_BUFFERS, MODEL_METADATA = 4, 6
ENTRY = "edgesal"


def _field(buf: bytes, table: int, index: int) -> int | None:
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * index
    if slot >= vt_size:
        return None
    offset = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + offset if offset else None


def _deref(buf: bytes, pos: int) -> int:
    return pos + struct.unpack_from("<I", buf, pos)[0]


def _vector(buf: bytes, table: int, index: int) -> tuple[int, int]:
    """(start of elements, count) of a vector field; (0, 0) when absent."""
    pos = _field(buf, table, index)
    if pos is None:
        return 0, 0
    vec = _deref(buf, pos)
    return vec + 4, struct.unpack_from("<I", buf, vec)[0]


def _tables(buf: bytes, table: int, index: int) -> list[int]:
    start, count = _vector(buf, table, index)
    return [_deref(buf, start + 4 * i) for i in range(count)]


def _scalar(buf: bytes, table: int, index: int, fmt: str) -> int:
    pos = _field(buf, table, index)
    return struct.unpack_from(fmt, buf, pos)[0] if pos is not None else 0


def _buffer_bytes(buf: bytes, table: int) -> bytes:
    start, count = _vector(buf, table, 0)
    if count:
        return buf[start : start + count]
    offset, size = _scalar(buf, table, 1, "<Q"), _scalar(buf, table, 2, "<Q")
    return buf[offset : offset + size] if size else b""


def read_metadata(buf: bytes) -> dict[str, str]:
    """The ``edgesal.*`` key -> value map stored in the model; {} when there is none."""
    root = _deref(buf, 0)
    buffers = _tables(buf, root, MODEL_BUFFERS)
    for entry in _tables(buf, root, MODEL_METADATA):
        name_start, name_len = _vector(buf, entry, 0)
        if buf[name_start : name_start + name_len].decode(errors="replace") != ENTRY:
            continue
        index = _scalar(buf, entry, 1, "<I")
        data = json.loads(_buffer_bytes(buf, buffers[index]).decode())
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    return {}
