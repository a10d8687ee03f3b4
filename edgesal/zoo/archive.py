"""Read PyTorch checkpoints into numpy without torch and without running code from the file.

Two layouts exist. The legacy stream (``torch.save`` before 1.6, and the published MobileNetV2 and
EfficientNet-Lite0 weights) is five pickles back to back -- magic number, protocol version, system
info, the object, the list of storage keys -- then each storage as an int64 element count followed
by its raw bytes. The zip layout holds ``<dir>/data.pkl`` with one ``<dir>/data/<key>`` per storage.
Either way the object pickle names its storages through persistent ids and rebuilds each tensor with
``torch._utils._rebuild_tensor_v2``.

A pickle can call any importable function, so the unpickler here resolves only the handful of names
a state dict needs, each to a local stand-in that records what to rebuild; any other name is
refused with :class:`~edgesal.errors.ArchiveError` before anything is imported or called.

Every size in the file is bounded before it is allocated: the archive (``MAX_ARCHIVE_BYTES``), the
bytes a zip unpacks to (that bound, and at most ``MAX_ZIP_RATIO`` times the archive: torch stores
its members uncompressed, so a zip bomb stands out), and the tensors built from it (their total
``MAX_ARCHIVE_BYTES``, so a zero-stride view cannot expand one number into terabytes) and the
unpickler's memo table (indices checked before unpickling). Zip member
names are plain relative paths (no ``..``, no absolute path, no backslash), although nothing is
ever extracted to disk.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesal.errors import ArchiveError

MAX_ARCHIVE_BYTES = 1 << 30
MAX_ZIP_RATIO = 16
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
}


@dataclass(frozen=True, slots=True)
class StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only the element type."""

    dtype: np.dtype


@dataclass(frozen=True, slots=True)
class StorageRef:
    """A storage named by a persistent id: key, element type and element count."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True, slots=True)
class TensorRef:
    """What ``_rebuild_tensor_v2`` was asked to build: a strided view of a storage."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor_v2(storage, offset, shape, strides, *_ignored) -> TensorRef:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``."""
    if not isinstance(storage, StorageRef):
        raise ArchiveError("_rebuild_tensor_v2 got something other than a storage")
    if not (_ints(shape) and _ints(strides) and _ints((offset,)) and len(shape) == len(strides)):
        raise ArchiveError("_rebuild_tensor_v2 got a malformed offset, size or stride")
    return TensorRef(storage, offset, tuple(shape), tuple(strides))


def _rebuild_parameter(data, *_ignored) -> TensorRef:
    """``torch._utils._rebuild_parameter(data, requires_grad, hooks)``: the tensor itself."""
    if not isinstance(data, TensorRef):
        raise ArchiveError("_rebuild_parameter got something other than a tensor")
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
} | {("torch", name): StorageType(np.dtype(code)) for name, code in _STORAGE_DTYPES.items()}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names in ``_ALLOWED``; storages become :class:`StorageRef`."""

    def __init__(self, file: io.BytesIO):
        super().__init__(file)
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ArchiveError(
                f"weight archive refers to '{module}.{name}', which is not part of a tensor "
                "state dict; refusing to load it"
            ) from None

    def persistent_load(self, pid) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ArchiveError(f"unexpected persistent id in weight archive: {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) > 5 and pid[5] is not None:
            raise ArchiveError("weight archive uses storage views, which are not supported")
        if not (isinstance(storage_type, StorageType) and isinstance(key, str) and _ints((numel,))):
            raise ArchiveError(f"malformed storage reference in weight archive: {pid!r:.80}")
        ref = StorageRef(key, storage_type.dtype, numel)
        if self.storages.setdefault(key, ref) != ref:
            raise ArchiveError(f"storage '{key}' is declared twice with different types or sizes")
        return ref


def _ints(values) -> bool:
    return isinstance(values, tuple | list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    )


def _check_opcodes(stream: io.BytesIO) -> None:
    """Walk one pickle's opcodes without running them: a memo index above the bytes read so far
    (the pickler numbers them 0, 1, 2 ...) would make the C unpickler size its memo table from
    it -- 174 million entries from a 5-byte ``LONG_BINPUT``."""
    start = stream.tell()
    try:
        for op, arg, pos in pickletools.genops(stream):
            if op.name in _MEMO_PUTS and not 0 <= int(arg) <= pos - start:
                raise ArchiveError(f"pickle memo index {arg} at byte {pos} is out of range")
            if op.name == "STOP":
                break
    except ArchiveError:
        raise
    except Exception as exc:  # genops raises ValueError on unknown or truncated opcodes
        raise ArchiveError(f"corrupt weight archive: {exc}") from exc
    stream.seek(start)


def _unpickle(stream: io.BytesIO) -> tuple[object, dict[str, StorageRef]]:
    _check_opcodes(stream)
    unpickler = _RestrictedUnpickler(stream)
    try:
        return unpickler.load(), unpickler.storages
    except ArchiveError:
        raise
    except Exception as exc:  # a corrupt pickle raises anything from EOFError to TypeError
        raise ArchiveError(f"corrupt weight archive: {type(exc).__name__}: {exc}") from exc


def read_state_dict(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse a checkpoint (legacy stream or zip) holding a flat ``{name: tensor}`` mapping."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"{source}: {len(data)} bytes is larger than any supported checkpoint")
    try:
        if data[:4] == b"PK\x03\x04":
            return _read_zip(data)
        return _read_legacy(data)
    except ArchiveError as exc:
        raise ArchiveError(f"{source}: {exc}") from None


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read the checkpoint at ``path`` into ``{name: numpy array}`` (no torch needed)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_ARCHIVE_BYTES:
            raise ArchiveError(f"{path}: {size} bytes is larger than any supported checkpoint")
        data = path.read_bytes()
    except OSError as exc:
        raise ArchiveError(f"cannot read weight archive {path}: {exc}") from exc
    return read_state_dict(data, str(path))


def _read_legacy(data: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    if _unpickle(stream)[0] != LEGACY_MAGIC:
        raise ArchiveError("not a PyTorch checkpoint (no legacy magic number, not a zip)")
    if _unpickle(stream)[0] != LEGACY_PROTOCOL:
        raise ArchiveError("unsupported legacy checkpoint protocol version")
    info = _unpickle(stream)[0]
    byteorder = "<" if not isinstance(info, dict) or info.get("little_endian", True) else ">"
    obj, storages = _unpickle(stream)
    keys = _unpickle(stream)[0]
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise ArchiveError("malformed storage key list")
    buffers = {}
    position = stream.tell()
    for key in keys:
        if key not in storages:
            raise ArchiveError(f"storage '{key}' is stored but never referenced")
        ref = storages[key]
        count = int.from_bytes(data[position : position + 8], "little")
        nbytes = ref.numel * ref.dtype.itemsize
        position += 8
        if count != ref.numel or position + nbytes > len(data):
            raise ArchiveError(f"storage '{key}' is truncated or has the wrong size")
        buffers[key] = np.frombuffer(data, ref.dtype.newbyteorder(byteorder), ref.numel, position)
        position += nbytes
    return _materialize(obj, buffers)


def _read_zip(data: bytes) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = {info.filename: info for info in archive.infolist()}
        _check_members(members, len(data))
        pickles = [name for name in members if name.endswith("data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise ArchiveError("zip checkpoint without exactly one <dir>/data.pkl")
        root = pickles[0][: -len("data.pkl")]
        order = archive.read(root + "byteorder") if root + "byteorder" in members else b"little"
        byteorder = "<" if order.strip() == b"little" else ">"
        obj, storages = _unpickle(io.BytesIO(archive.read(pickles[0])))
        buffers = {}
        for key, ref in storages.items():
            info = members.get(f"{root}data/{key}")
            if info is None or info.file_size != ref.numel * ref.dtype.itemsize:
                raise ArchiveError(f"storage '{key}' is missing or has the wrong size")
            raw = archive.read(info)
            buffers[key] = np.frombuffer(raw, ref.dtype.newbyteorder(byteorder), ref.numel)
    except ArchiveError:
        raise
    except Exception as exc:  # zipfile raises BadZipFile, ValueError, NotImplementedError, ...
        raise ArchiveError(f"corrupt zip checkpoint: {type(exc).__name__}: {exc}") from exc
    return _materialize(obj, buffers)


def _check_members(members: dict[str, zipfile.ZipInfo], archive_bytes: int) -> None:
    """Refuse unsafe member names and a zip that unpacks to far more than it holds (a bomb)."""
    for name in members:
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or ":" in parts[0]:
            raise ArchiveError(f"zip member {name!r:.80} is not a plain relative path")
    unpacked = sum(info.file_size for info in members.values())
    if unpacked > min(MAX_ARCHIVE_BYTES, MAX_ZIP_RATIO * archive_bytes + (1 << 20)):
        raise ArchiveError(
            f"zip checkpoint of {archive_bytes} bytes unpacks to {unpacked} bytes; "
            "refusing it as a zip bomb"
        )


def _materialize(obj: object, buffers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn ``{name: TensorRef}`` into ``{name: array}``, checking every view stays in bounds."""
    if not isinstance(obj, dict) or not obj:
        raise ArchiveError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    result: dict[str, np.ndarray] = {}
    total = 0
    for name, ref in obj.items():
        if not (isinstance(name, str) and isinstance(ref, TensorRef)):
            raise ArchiveError(f"state dict entry {name!r:.60} is not a tensor")
        total += math.prod(ref.shape) * ref.storage.dtype.itemsize
        if total > MAX_ARCHIVE_BYTES:
            raise ArchiveError(f"tensor '{name}' takes the state dict past any supported size")
        flat = buffers.get(ref.storage.key)
        if flat is None:
            raise ArchiveError(f"tensor '{name}' refers to a storage that is not in the archive")
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.strides, strict=True))
        if 0 not in ref.shape and last >= flat.size:
            raise ArchiveError(f"tensor '{name}' reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset :] if 0 not in ref.shape else flat[:0],
            shape=ref.shape,
            strides=[s * flat.itemsize for s in ref.strides],
            writeable=False,
        )
        result[name] = np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")
    return result
