"""``.salrec``: a streamable, appendable, crash-safe file of saliency maps (format version 1).

Layout (all integers little-endian; the full specification is docs/salrec.md)::

    file   := MAGIC record*
    MAGIC  := 89 53 41 4C 52 45 43 0A            ("\\x89SALREC\\n")
    record := header(20 bytes) meta data
    header := "SREC" kind:u8 version:u8 flags:u16 meta_len:u32 data_len:u32 crc32:u32

``crc32`` covers the first 16 header bytes, ``meta`` (UTF-8 JSON) and ``data``. Kinds: 1 stream
header (model, methods, labels), 2 frame (prediction, governor state, self-check, map), 3 event
(governor decisions). Maps are images ([H, W], version 1) or, from version 2, other kinds
(``time_frequency`` [T, F] of audio, ``series`` [T] or [T, C], ``tabular`` [F], ``tokens``
[M, T]: one row per map of a text, see :mod:`edgesal.runtimes.text`): a record is
written with the lowest version that describes it, so image streams stay readable by version-1
readers and a version-1 reader stops at an audio stream instead of drawing it as an image.
A map is quantized: ``q = round((v - offset) / scale)`` to uint8 or uint16,
``v = offset + q * scale`` on reading (error <= scale / 2), then zlib-compressed.

Each record is written by one ``write`` call on an unbuffered file, so a killed writer leaves only
the last record torn; readers stop at the first record that is short or fails its CRC, and a writer
reopening the file cuts such a tail before appending. A write that fails (disk full, file-size
limit) is cut back the same way and raises :class:`OutputError`, so the file stays readable.

Sizes read from a file are bounded before anything is allocated: a record longer than the bytes
left in the file is a torn tail, meta over ``MAX_META_BYTES`` or data over ``MAX_DATA_BYTES`` is
corrupt (reading stops there, as at a failed CRC), and a map is decompressed only up to the size
its ``shape`` declares (at most ``MAX_MAP_BYTES``).
"""

from __future__ import annotations

import errno
import json
import math
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesal.runtimes.errors import OutputError, RecordsError

MAGIC = b"\x89SALREC\n"
SYNC = b"SREC"
VERSION = 2  # the newest format version this code reads and writes
HEADER = struct.Struct("<4sBBHIII")
KIND_HEADER, KIND_FRAME, KIND_EVENT = 1, 2, 3
KINDS = {KIND_HEADER: "header", KIND_FRAME: "frame", KIND_EVENT: "event"}
DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
IMAGE = "image"
MAP_KINDS = {IMAGE: 1, "time_frequency": 2, "series": 2, "tabular": 2, "tokens": 2}  # -> version
MAX_META_BYTES = 16 << 20
MAX_DATA_BYTES = 256 << 20
MAX_MAP_BYTES = 256 << 20  # decoded; a 4096 x 4096 uint16 map is 32 MiB


@dataclass
class Record:
    kind: str
    meta: dict
    data: bytes = b""
    offset: int = 0
    size: int = 0


@dataclass
class FrameRecord:
    """A frame's metadata, its map (float32 [H, W], or None) and the stream header it follows."""

    meta: dict
    saliency: np.ndarray | None
    header: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The map kind: ``image`` (also every version-1 map), ``time_frequency``, ``series``,
        ``tabular``."""
        return str(self.meta.get("map", {}).get("kind", IMAGE))


def record_version(meta: dict) -> int:
    """The lowest format version that describes a record: 1 for image streams and maps, 2 for a
    stream of another ``modality`` or a map of another ``kind``."""
    kind = (meta.get("map") or {}).get("kind", IMAGE)
    if kind not in MAP_KINDS:
        raise RecordsError(f"unknown map kind {kind!r} (known: {', '.join(MAP_KINDS)})")
    return max(MAP_KINDS[kind], 1 if meta.get("modality", IMAGE) == IMAGE else 2)


def quantize(saliency: np.ndarray, bits: int = 8) -> tuple[np.ndarray, float, float]:
    """(q, scale, offset) with ``saliency ~= offset + q * scale``, ``|error| <= scale / 2``."""
    values = np.asarray(saliency, np.float32)
    low, high = float(values.min()), float(values.max())
    levels = (1 << bits) - 1
    scale = (high - low) / levels if high > low else 0.0
    dtype = np.uint8 if bits == 8 else np.uint16
    if scale == 0.0:
        return np.zeros(values.shape, dtype), 0.0, low
    q = np.clip(np.rint((values - low) / scale), 0, levels).astype(dtype)
    return q, scale, low


def dequantize(q: np.ndarray, scale: float, offset: float) -> np.ndarray:
    return (offset + q.astype(np.float32) * np.float32(scale)).astype(np.float32)


def encode_record(kind: int, meta: dict, data: bytes = b"") -> bytes:
    body = json.dumps(meta, separators=(",", ":"), default=_json_default).encode()
    head = HEADER.pack(SYNC, kind, record_version(meta), 0, len(body), len(data), 0)[:16]
    crc = zlib.crc32(data, zlib.crc32(body, zlib.crc32(head)))
    return head + struct.pack("<I", crc) + body + data


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def map_payload(saliency: np.ndarray, bits: int = 8) -> tuple[dict, bytes]:
    """The ``map`` meta entry and the compressed payload for a float map."""
    q, scale, offset = quantize(saliency, bits)
    meta = {
        "shape": list(q.shape),
        "dtype": q.dtype.name,
        "scale": scale,
        "offset": offset,
        "encoding": "zlib",
    }
    return meta, zlib.compress(q.astype(q.dtype.newbyteorder("<")).tobytes(), 1)


def decode_map(meta: dict, data: bytes) -> np.ndarray:
    """The float32 map of a frame record; a malformed ``map`` entry or payload raises
    :class:`RecordsError`, and the payload is never inflated past the declared shape."""
    info = meta.get("map")
    if not isinstance(info, dict) or info.get("dtype") not in DTYPES:
        raise RecordsError(f"frame {meta.get('frame')!r:.20}: malformed map entry {info!r:.80}")
    shape, scale, offset = info.get("shape"), info.get("scale"), info.get("offset")
    if not (
        isinstance(shape, list)
        and 1 <= len(shape) <= 4
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        and isinstance(scale, int | float)
        and isinstance(offset, int | float)
        and math.isfinite(scale)
        and math.isfinite(offset)
    ):
        raise RecordsError(f"frame {meta.get('frame')!r:.20}: malformed map entry {info!r:.80}")
    dtype = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_MAP_BYTES:
        raise RecordsError(
            f"frame {meta.get('frame')!r:.20}: map {shape} would take {nbytes} bytes, more than "
            f"the {MAX_MAP_BYTES >> 20} MiB a records reader accepts"
        )
    raw = _inflate(data, nbytes) if info.get("encoding") == "zlib" else data
    if len(raw) != nbytes:
        raise RecordsError(f"frame {meta.get('frame')!r:.20}: map payload does not fit {shape}")
    return dequantize(np.frombuffer(raw, dtype).reshape(shape), scale, offset)


def _inflate(data: bytes, limit: int) -> bytes:
    """zlib-decompress at most ``limit + 1`` bytes (a bomb stops there)."""
    try:
        return zlib.decompressobj().decompress(data, limit + 1)
    except zlib.error as exc:
        raise RecordsError(f"corrupt map payload: {exc}") from None


def iter_records(path: str | Path, stats: dict | None = None) -> Iterator[Record]:
    """Complete records in file order, read incrementally (a live file can be followed).

    Stops at the first short or corrupt record; ``stats["end"]`` is then the offset where valid
    data ends and ``stats["size"]`` the file size.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RecordsError(f"cannot read records file {path}: {exc}") from exc
    with handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise RecordsError(f"{path} is not a .salrec file (bad magic)")
        pos = len(MAGIC)
        while True:
            record = _read_record(handle, pos, path)
            if record is None:
                break
            yield record
            pos += record.size
        if stats is not None:
            stats["end"], stats["size"] = pos, os.fstat(handle.fileno()).st_size


def _read_record(handle, pos: int, path: Path) -> Record | None:
    head = handle.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    sync, kind, version, _flags, meta_len, data_len, crc = HEADER.unpack(head)
    if sync != SYNC:
        return None
    if meta_len > MAX_META_BYTES or data_len > MAX_DATA_BYTES:
        return None  # no writer writes this much: corrupt, like a failed CRC
    if pos + HEADER.size + meta_len + data_len > os.fstat(handle.fileno()).st_size:
        return None  # a torn tail (or a record still being written): nothing allocated for it
    body = handle.read(meta_len)
    data = handle.read(data_len)
    if len(body) < meta_len or len(data) < data_len:
        return None
    if zlib.crc32(data, zlib.crc32(body, zlib.crc32(head[:16]))) != crc:
        return None
    if version > VERSION:
        raise RecordsError(
            f"{path}: record at byte {pos} has format version {version}; "
            f"this reader knows up to {VERSION}"
        )
    size = HEADER.size + meta_len + data_len
    name = KINDS.get(kind, f"kind{kind}")
    meta = _meta(body, pos, path)
    wrong = _schema_errors(name, meta)
    if wrong:
        raise RecordsError(f"{path}: {name} record at byte {pos}: {wrong}")
    return Record(name, meta, data, pos, size)


def _meta(body: bytes, pos: int, path: Path) -> dict:
    try:
        meta = json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or nested too deep
        raise RecordsError(f"{path}: record at byte {pos} has unreadable meta: {exc}") from None
    if not isinstance(meta, dict):
        raise RecordsError(f"{path}: record at byte {pos} has meta that is not a JSON object")
    return meta


_NUMBER = (int, float)
# kind -> field -> (types it may have, required); fields not listed are free (format additions)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "header": {"version": ((int,), True), "models": ((list,), False)},
    "frame": {
        "frame": ((int,), True),
        "score": ((*_NUMBER, type(None)), False),
        "method": ((str, type(None)), False),
        "selfcheck": ((dict, type(None)), False),
    },
    "event": {"type": ((str,), False)},
}
GOVERNOR_EVENT = {
    "frame": (int,),
    "from_level": (int,),
    "to_level": (int,),
    "action": (str,),
    "reason": (str,),
}
MODEL_ENTRY = {"method": (str,), "model": (str,), "sha256": (str,)}


def _schema_errors(kind: str, meta: dict) -> str:
    """What is wrong with the fields readers (``records inspect``, ``extract``) rely on, or ''."""
    for key, (types, required) in SCHEMA.get(kind, {}).items():
        if key not in meta:
            if required:
                return f"no '{key}'"
        elif not isinstance(meta[key], types) or isinstance(meta[key], bool) and bool not in types:
            return f"'{key}' is {type(meta[key]).__name__}"
    check = meta.get("selfcheck")
    if kind == "frame" and check is not None and not isinstance(check.get("faithful"), bool):
        return "'selfcheck' has no true/false 'faithful'"
    if kind == "event" and meta.get("type") == "governor" and not _fields(meta, GOVERNOR_EVENT):
        return f"governor event without {sorted(GOVERNOR_EVENT)}"
    models = meta.get("models", []) if kind == "header" else []
    if not all(isinstance(m, dict) and _fields(m, MODEL_ENTRY) for m in models):
        return f"'models' entries need {sorted(MODEL_ENTRY)} as strings"
    return ""


def _fields(meta: dict, types: Mapping[str, tuple[type, ...]]) -> bool:
    return all(
        isinstance(meta.get(k), t) and not isinstance(meta.get(k), bool) for k, t in types.items()
    )


def valid_end(path: str | Path) -> tuple[int, int]:
    """(offset where the last complete record ends, file size)."""
    stats: dict = {}
    for _ in iter_records(path, stats):
        pass
    return stats["end"], stats["size"]


class RecordReader:
    """Reads a ``.salrec`` file without the model: headers, frames (maps decoded), events."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stats: dict = {}
        next(iter_records(self.path), None)  # fails early on a file that is not .salrec

    def __iter__(self) -> Iterator[Record]:
        return iter_records(self.path, self._stats)

    @property
    def truncated_bytes(self) -> int:
        """Bytes after the last complete record (a torn write), known after a full iteration."""
        if "end" not in self._stats:
            for _ in self:
                pass
        return self._stats["size"] - self._stats["end"]

    def headers(self) -> list[dict]:
        return [r.meta for r in self if r.kind == "header"]

    def events(self) -> list[dict]:
        return [r.meta for r in self if r.kind == "event"]

    def frames(self, decode: bool = True) -> Iterator[FrameRecord]:
        header: dict = {}
        for record in self:
            if record.kind == "header":
                header = record.meta
            elif record.kind == "frame":
                has_map = decode and "map" in record.meta
                saliency = decode_map(record.meta, record.data) if has_map else None
                yield FrameRecord(record.meta, saliency, header)


class RecordWriter:
    """Appends records; each one goes to the OS in a single write (``fsync_every`` > 0 also
    forces it to storage every that many records, for power loss)."""

    def __init__(self, path: str | Path, header: dict, bits: int = 8, fsync_every: int = 0):
        if bits not in (8, 16):
            raise RecordsError(f"--records-bits {bits}: choose 8 or 16")
        self.path, self.bits, self.fsync_every = Path(path), bits, fsync_every
        self.count = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._open()
        except OSError as exc:
            raise OutputError(f"--records {path}: cannot open for writing: {exc}") from exc
        self._write(KIND_HEADER, {"format": "salrec", "version": record_version(header), **header})

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if size == 0:
            os.write(fd, MAGIC)
        else:
            end, _ = valid_end(self.path)
            if end < size:
                os.ftruncate(fd, end)
        os.lseek(fd, 0, os.SEEK_END)
        return fd

    def _write(self, kind: int, meta: dict, data: bytes = b"") -> None:
        blob = encode_record(kind, meta, data)
        start = os.lseek(self._fd, 0, os.SEEK_CUR)
        try:
            written = os.write(self._fd, blob)
            while written < len(blob):
                written += os.write(self._fd, blob[written:])
            if self.fsync_every and (self.count + 1) % self.fsync_every == 0:
                os.fsync(self._fd)
        except OSError as exc:
            self._cut(start)
            raise OutputError(
                f"--records {self.path}: {_why(exc)} after {self.count} records; the file "
                f"keeps every complete record ({start} bytes) and the run stops here"
            ) from exc
        self.count += 1

    def _cut(self, end: int) -> None:
        """Drop the torn record a failed write left, so the file ends on a complete record."""
        try:
            os.ftruncate(self._fd, end)
            os.lseek(self._fd, end, os.SEEK_SET)
        except OSError:
            pass  # readers stop at the torn record anyway; the next writer cuts it

    def frame(self, meta: dict, saliency: np.ndarray | None = None) -> None:
        """One frame: ``meta`` (JSON-able) plus the quantized map when there is one."""
        if saliency is None:
            self._write(KIND_FRAME, meta)
            return
        info, data = map_payload(saliency, self.bits)
        self._write(KIND_FRAME, {**meta, "map": {**meta.get("map", {}), **info}}, data)

    def event(self, meta: dict) -> None:
        self._write(KIND_EVENT, meta)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full (ENOSPC)"
    if exc.errno == errno.EFBIG:
        return "file size limit reached (EFBIG)"
    return f"write failed ({exc.strerror or exc})"
