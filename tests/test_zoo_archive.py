"""The restricted checkpoint reader: torch.save round trips, and refusal of anything else.

Crafted archives are written here with the standard pickler: ``legacy_archive`` lays out the
pre-1.6 stream exactly as torch does (checked against torch.save below), so single fields can be
made wrong. Payload tests pickle a call to ``os.system`` that would create a marker file and assert
that the file never appears.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

from edgesal.errors import ArchiveError
from edgesal.zoo import load_state_dict
from edgesal.zoo.archive import LEGACY_MAGIC, LEGACY_PROTOCOL, read_state_dict

SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}


class Storage:
    """A storage for ``legacy_archive``: pickled as a persistent id, written after the pickles."""

    def __init__(self, key: str, values: np.ndarray, numel: int | None = None):
        self.key, self.values = key, np.ascontiguousarray(values, np.float32)
        self.numel = self.values.size if numel is None else numel


class Tensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})``."""

    def __init__(self, storage: Storage, offset: int, shape: tuple, strides: tuple):
        self.args = (storage, offset, shape, strides, False, OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class Payload:
    """Unpickling this with plain pickle runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel, None)
        return None


def _dumps(obj) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def legacy_archive(obj, storages: list[Storage], keys: list | None = None) -> bytes:
    """The pre-1.6 torch.save stream: 5 pickles, then each storage as int64 count + bytes."""
    parts = [_dumps(LEGACY_MAGIC), _dumps(LEGACY_PROTOCOL), _dumps(SYS_INFO), _dumps(obj)]
    parts.append(_dumps([s.key for s in storages] if keys is None else keys))
    for s in storages:
        parts += [s.numel.to_bytes(8, "little"), s.values.tobytes()]
    return b"".join(parts)


def zip_archive(data_pkl: bytes, files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/version", "3\n")
        for name, content in (files or {}).items():
            z.writestr(f"archive/data/{name}", content)
    return buffer.getvalue()


def _sample_state_dict() -> OrderedDict:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return OrderedDict(
        weight=base,
        transposed=base.t(),  # shares base's storage, non-contiguous
        window=base[1:3, 2:5],  # storage offset
        steps=torch.tensor(7, dtype=torch.int64),  # 0-d, like num_batches_tracked
        empty=torch.zeros(0, 3),
        half=torch.linspace(-1, 1, 5, dtype=torch.float16),
        double=torch.linspace(-1, 1, 5, dtype=torch.float64),
        flags=torch.tensor([True, False, True]),
        bytes=torch.arange(5, dtype=torch.uint8),
        ints=torch.arange(-3, 3, dtype=torch.int32),
        param=torch.nn.Parameter(torch.randn(3, 2)),
    )


def _assert_same(loaded: dict[str, np.ndarray], expected: OrderedDict) -> None:
    assert list(loaded) == list(expected)
    for name, tensor in expected.items():
        reference = tensor.detach().numpy()
        assert loaded[name].dtype == reference.dtype, name
        np.testing.assert_array_equal(loaded[name], reference, err_msg=name)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_round_trip_matches_torch_save(tmp_path, zip_format):
    state = _sample_state_dict()
    path = tmp_path / "sample.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    assert path.read_bytes()[:2] == (b"PK" if zip_format else b"\x80\x02")
    _assert_same(load_state_dict(path), state)


def test_crafted_legacy_layout_is_what_torch_loads():
    """The test's own legacy writer must produce what torch itself reads, or the tests lie."""
    storage = Storage("0", np.arange(6))
    data = legacy_archive(OrderedDict(w=Tensor(storage, 1, (2, 2), (1, 2))), [storage])
    expected = torch.load(io.BytesIO(data), weights_only=True)["w"].numpy()
    np.testing.assert_array_equal(read_state_dict(data)["w"], expected)
    np.testing.assert_array_equal(expected, [[1, 3], [2, 4]])


def _payload_archives(marker) -> dict[str, bytes]:
    storage = Storage("0", np.zeros(4))
    tensor = Tensor(storage, 0, (4,), (1,))
    payload = Payload(marker)
    return {
        "legacy-object": legacy_archive(OrderedDict(w=tensor, x=payload), [storage]),
        "legacy-magic": legacy_archive(OrderedDict(w=tensor), [storage]).replace(
            _dumps(LEGACY_MAGIC), pickle.dumps(payload, protocol=2), 1
        ),
        "legacy-keys": legacy_archive(OrderedDict(w=tensor), [storage], keys=[payload]),
        "legacy-builtin-eval": legacy_archive({"w": tensor, "x": _Eval(marker)}, [storage]),
        "zip-object": zip_archive(pickle.dumps({"x": payload}, protocol=2)),
        "zip-inside-tensor": zip_archive(
            _dumps(OrderedDict(w=Tensor(storage, payload, (4,), (1,)))),
            {"0": np.zeros(4, np.float32).tobytes()},
        ),
    }


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


@pytest.mark.parametrize(
    "case,refused",
    [
        ("legacy-object", SYSTEM),
        ("legacy-magic", SYSTEM),
        ("legacy-keys", SYSTEM),
        ("legacy-builtin-eval", "__builtin__.eval"),  # protocol 2 spelling of builtins
        ("zip-object", SYSTEM),
        ("zip-inside-tensor", SYSTEM),
    ],
)
def test_code_in_the_archive_is_refused_and_never_runs(tmp_path, case, refused):
    marker = tmp_path / "pwned"
    data = _payload_archives(marker)[case]
    with pytest.raises(ArchiveError, match=refused.replace(".", r"\.")):
        read_state_dict(data)
    assert not marker.exists()


@pytest.mark.parametrize("case", ["legacy-object", "legacy-magic", "zip-object"])
def test_the_payloads_are_live(tmp_path, case):
    """Without the restricted unpickler the same bytes do run code: the tests above can fail."""
    marker = tmp_path / "pwned"
    try:
        torch.load(io.BytesIO(_payload_archives(marker)[case]), weights_only=False)
    except Exception:
        pass  # torch gives up after the payload ran
    assert marker.exists()


def test_a_whole_pickled_module_is_refused_by_name(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(ArchiveError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_state_dict(path)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_archives_are_refused(tmp_path, zip_format):
    buffer = io.BytesIO()
    torch.save(_sample_state_dict(), buffer, _use_new_zipfile_serialization=zip_format)
    data = buffer.getvalue()
    for cut in [0, 1, 10, len(data) // 3, len(data) // 2, len(data) - 9, len(data) - 1]:
        with pytest.raises(ArchiveError):
            read_state_dict(data[:cut], f"cut at {cut}")


@pytest.mark.parametrize(
    "data,message",
    [
        (b"not a checkpoint at all", "corrupt|not a PyTorch"),
        (pickle.dumps([1, 2, 3], protocol=2), "not a PyTorch checkpoint"),
        (zip_archive(b"garbage"), "corrupt"),
        (b"PK\x03\x04" + bytes(100), "corrupt zip"),
    ],
)
def test_corrupt_archives_are_refused(data, message):
    with pytest.raises(ArchiveError, match=message):
        read_state_dict(data)


def _bad_tensor_archives() -> dict[str, bytes]:
    s = Storage("0", np.arange(6))
    return {
        "view past the end": legacy_archive({"w": Tensor(s, 0, (3, 3), (3, 1))}, [s]),
        "offset past the end": legacy_archive({"w": Tensor(s, 6, (1,), (1,))}, [s]),
        "negative stride": legacy_archive({"w": Tensor(s, 5, (6,), (-1,))}, [s]),
        "storage larger than the file": legacy_archive(
            {"w": Tensor(Storage("0", np.arange(6), numel=1 << 40), 0, (6,), (1,))},
            [Storage("0", np.arange(6), numel=1 << 40)],
        ),
        "unreferenced storage": legacy_archive({"w": Tensor(s, 0, (6,), (1,))}, [s], ["0", "1"]),
        "not a state dict": legacy_archive([Tensor(s, 0, (6,), (1,))], [s]),
        "non-tensor value": legacy_archive({"w": Tensor(s, 0, (6,), (1,)), "n": 3}, [s]),
        "zip storage size": zip_archive(_dumps({"w": Tensor(s, 0, (6,), (1,))}), {"0": b"1234"}),
    }


@pytest.mark.parametrize("case", list(_bad_tensor_archives()))
def test_malformed_tensors_are_refused(case):
    with pytest.raises(ArchiveError):
        read_state_dict(_bad_tensor_archives()[case])


def test_absurd_sizes_are_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr("edgesal.zoo.archive.MAX_ARCHIVE_BYTES", 1000)
    path = tmp_path / "big.pth"
    path.write_bytes(bytes(1001))
    with pytest.raises(ArchiveError, match="larger than any supported"):
        load_state_dict(path)


def test_missing_file_is_an_archive_error(tmp_path):
    with pytest.raises(ArchiveError, match="missing.pth"):
        load_state_dict(tmp_path / "missing.pth")
