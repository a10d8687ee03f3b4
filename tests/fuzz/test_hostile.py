"""Hostile files, made by hand: code in a weight archive, a zip bomb, a zip entry escaping its
folder, records and models whose headers claim absurd sizes, an image bomb. Each is refused with
the project's own error, and nothing is allocated for the size it claims."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from onnx import helper, numpy_helper

from edgesal.converters.custom_ops import read_custom_ops
from edgesal.converters.formats import read_tflite
from edgesal.errors import ArchiveError, InputError, ModelLoadError
from edgesal.export import ExportOptions, export_saliency
from edgesal.imaging import read_image
from edgesal.runtimes.backends.tflite_meta import read_input_shapes
from edgesal.runtimes.errors import ModelError, RecordsError
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.records import (
    HEADER,
    KIND_FRAME,
    SYNC,
    VERSION,
    RecordReader,
    RecordWriter,
    encode_record,
)
from edgesal.runtimes.sources import open_source
from edgesal.zoo.archive import LEGACY_MAGIC, LEGACY_PROTOCOL, read_state_dict
from tests.models import nchw_cnn
from tests.runtimes import synthetic, synthetic_tflite
from tests.runtimes.clihelp import ROOT, runtime_cmd


class System:
    """Unpickled by plain pickle, this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_archive_calling_os_system_is_refused_and_never_runs(tmp_path, layout):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": System(marker)}, protocol=2)
    data = payload if layout == "legacy" else _zip({"archive/data.pkl": payload})
    with pytest.raises(ArchiveError, match=rf"{os.system.__module__}\.system"):
        read_state_dict(data)
    assert not marker.exists()
    pickle.loads(payload)  # the same bytes under plain pickle do run the command
    assert marker.exists()


def test_zip_bomb_is_refused_before_it_is_inflated():
    bomb = _zip(
        {"archive/data.pkl": pickle.dumps({}, 2), "archive/data/0": bytes(64 << 20)},
        zipfile.ZIP_DEFLATED,
    )
    assert len(bomb) < 1 << 20  # 64 MiB of zeros in well under 1 MiB
    tracemalloc.start()
    with pytest.raises(ArchiveError, match="zip bomb"):
        read_state_dict(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("name", ["../evil", "archive/../../evil", "/etc/evil", "a\\..\\evil"])
def test_zip_entry_outside_its_folder_is_refused(name):
    data = _zip({"archive/data.pkl": pickle.dumps({}, 2), name: b"x"})
    with pytest.raises(ArchiveError, match="not a plain relative path"):
        read_state_dict(data)


def _zero_stride_archive(size: int) -> bytes:
    """Legacy checkpoint: one stored float viewed as [size, size] with strides (0, 0), its object
    pickle written opcode by opcode (no torch needed)."""

    def text(value: str) -> bytes:  # BINUNICODE
        return b"X" + struct.pack("<I", len(value)) + value.encode()

    storage = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu")
    storage += b"K\x01t" + b"Q"  # 5-tuple persistent id, BINPERSID
    shape = b"(J" + struct.pack("<i", size) + b"J" + struct.pack("<i", size) + b"t"
    args = b"(" + storage + b"K\x00" + shape + b"(K\x00K\x00t" + b"\x89}" + b"t"
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"
    obj = b"\x80\x02}" + text("w") + tensor + b"s."
    parts = [pickle.dumps(v, 2) for v in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True})]
    parts += [obj, pickle.dumps(["0"], 2), (1).to_bytes(8, "little"), struct.pack("<f", 1.0)]
    return b"".join(parts)


def test_zero_stride_view_cannot_expand_past_the_size_limit():
    """One stored float viewed as 2**20 x 2**20 with zero strides would be 4 TiB once copied."""
    assert read_state_dict(_zero_stride_archive(3))["w"].tolist() == [[1.0] * 3] * 3
    with pytest.raises(ArchiveError, match="past any supported size"):
        read_state_dict(_zero_stride_archive(1 << 20))


def _raw_record(meta: bytes, data: bytes, meta_len=None, data_len=None) -> bytes:
    """A frame record with a correct CRC over whatever lengths the header claims."""
    head = HEADER.pack(
        SYNC, KIND_FRAME, VERSION, 0, meta_len or len(meta), data_len or len(data), 0
    )[:16]
    crc = zlib.crc32(data, zlib.crc32(meta, zlib.crc32(head)))
    return head + struct.pack("<I", crc) + meta + data


def _salrec(tmp_path, *records: bytes):
    path = tmp_path / "hostile.salrec"
    writer = RecordWriter(path, {"source": "test"})
    writer.frame({"frame": 0}, np.ones((4, 4), np.float32))
    writer.close()
    with open(path, "ab") as handle:
        for record in records:
            handle.write(record)
    return path


def test_salrec_map_claiming_10_gb_is_refused_without_allocating(tmp_path):
    meta = {"frame": 1, "map": {"shape": [100000, 100000], "dtype": "uint8", "scale": 1.0}}
    meta["map"].update(offset=0.0, encoding="zlib")
    path = _salrec(tmp_path, encode_record(KIND_FRAME, meta, zlib.compress(b"\0" * 100)))
    tracemalloc.start()
    with pytest.raises(RecordsError, match="10000000000 bytes"):
        list(RecordReader(path).frames())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


def test_salrec_header_claiming_4_gb_is_a_torn_tail_not_an_allocation(tmp_path):
    """data_len = 2**32 - 1 in a small file: reading stops there, every earlier frame is kept."""
    path = _salrec(tmp_path, _raw_record(b"{}", b"", data_len=0xFFFFFFFF))
    assert os.path.getsize(path) < 1000
    tracemalloc.start()
    reader = RecordReader(path)
    frames = list(reader.frames())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [f.meta["frame"] for f in frames] == [0]
    assert reader.truncated_bytes == HEADER.size + 2
    assert peak < 8 << 20


def test_salrec_record_longer_than_any_writer_writes_ends_the_valid_part(tmp_path):
    """Meta of 1 GiB (a file that really is that long is not needed): corrupt, like a bad CRC."""
    path = _salrec(tmp_path, _raw_record(b"{}", b"", meta_len=1 << 30) + bytes(100))
    reader = RecordReader(path)
    assert [f.meta["frame"] for f in reader.frames()] == [0]
    assert reader.truncated_bytes == HEADER.size + 2 + 100


def test_salrec_map_zlib_bomb_is_not_inflated(tmp_path):
    meta = {"frame": 1, "map": {"shape": [10, 10], "dtype": "uint8", "scale": 1.0, "offset": 0}}
    meta["map"]["encoding"] = "zlib"
    bomb = zlib.compress(bytes(64 << 20), 9)
    path = _salrec(tmp_path, encode_record(KIND_FRAME, meta, bomb))
    tracemalloc.start()
    with pytest.raises(RecordsError, match="does not fit"):
        list(RecordReader(path).frames())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20 + len(bomb) * 3


@pytest.mark.parametrize(
    "meta",
    [b"[1, 2]", b"not json", b"[" * 100000 + b"]" * 100000, b'{"map": 3}', b"\xff\xfe"],
    ids=["list", "text", "deep", "map-not-dict", "not-utf8"],
)
def test_salrec_malformed_meta_is_a_records_error(tmp_path, meta):
    path = _salrec(tmp_path, _raw_record(meta, b"x"))
    with pytest.raises(RecordsError):
        list(RecordReader(path).frames())


def test_model_whose_input_needs_30_gb_is_refused_before_any_frame(tmp_path):
    model = synthetic.build(tmp_path / "huge.onnx", size=100000)
    with pytest.raises(ModelError, match=r"111\.8 GiB per frame.*256 MiB input budget"):
        MethodChain.load([str(model)])


def test_run_on_a_huge_input_model_is_a_clean_error(tmp_path):
    model = synthetic.build(tmp_path / "huge.onnx", size=100000)
    video = synthetic.write_video(tmp_path / "v.avi", synthetic.colour_frames(2))
    proc = subprocess.run(
        runtime_cmd("run", str(model), "--source", str(video), "--display", "no"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "input budget" in proc.stderr and "Traceback" not in proc.stderr


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))


def test_image_declaring_too_many_pixels_is_refused(tmp_path):
    """12000 x 12000 is under OpenCV's own 2**30-pixel default, over edgesal's 2**27."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(12000, 12000))
    with pytest.raises(InputError, match="declares more than 134217728 pixels"):
        read_image(path)
    check = "import edgesal, os, cv2; print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == str(1 << 27)


def test_png_chunk_claiming_3_gb_is_refused_before_opencv_sees_it(tmp_path):
    """Found by the image fuzzer: 110 bytes whose IEND chunk claims 3.3 GB made OpenCV 5.1 take
    3.2 GB and 2.4 s of CPU; the chunk framing is now checked first."""
    found = next((ROOT / "tests/fuzz/corpus/image").glob("timeout-*"))
    path = tmp_path / "a.png"
    path.write_bytes(found.read_bytes())
    with pytest.raises(InputError, match="claims 3355443200 bytes, past the end of the file"):
        read_image(path)
    source = open_source(str(tmp_path))
    assert list(source) == [] and source.corrupt == 1


def test_tflite_input_shapes_match_the_interpreter(tmp_path):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    data = synthetic_tflite.build(tmp_path / "m.tflite", size=24).read_bytes()
    details = litert.Interpreter(model_content=data).get_input_details()
    expected = {d["name"]: (tuple(d["shape"]), np.dtype(d["dtype"]).itemsize) for d in details}
    assert read_input_shapes(data) == expected


def test_tflite_model_whose_input_needs_111_gb_is_refused_before_an_interpreter(tmp_path):
    pytest.importorskip("ai_edge_litert")
    model = synthetic_tflite.build(tmp_path / "huge.tflite", size=100000)
    with pytest.raises(ModelError, match=r"'image' \[1, 100000, 100000, 3\] needs 111\.8 GiB"):
        MethodChain.load([str(model)])


@pytest.mark.parametrize(
    "meta,message",
    [
        (b'{"frame": 1, "selfcheck": {"drop": 0.1}}', "no true/false 'faithful'"),
        (b'{"frame": "1"}', "'frame' is str"),
        (b'{"score": 0.5}', "no 'frame'"),
        (b'{"frame": 1, "method": ["a"]}', "'method' is list"),
    ],
)
def test_records_inspect_on_fields_of_the_wrong_type_is_a_clean_error(tmp_path, meta, message):
    """``records inspect`` used to die in a KeyError on a selfcheck without 'faithful' (found by
    the salrec_fields fuzzer); the reader now checks the fields its tools rely on."""
    path = _salrec(tmp_path, _raw_record(meta, b""))
    proc = subprocess.run(
        runtime_cmd("records", "inspect", str(path)), capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert message in proc.stderr and "frame record at byte" in proc.stderr


def test_export_does_not_fold_a_constant_the_model_sizes_to_100_mb():
    """A ConstantOfShape of [5000, 5000] (100 MB; 1.6 GB at 20000) reached constant folding,
    which evaluated it before its size check: now its size is judged from the shape first."""
    model = nchw_cnn(classes=3)
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array([5000, 5000], np.int64), "big_shape"))
    first = graph.node[0]
    graph.node.insert(0, helper.make_node("ConstantOfShape", ["big_shape"], ["big"]))
    graph.node.insert(1, helper.make_node("ReduceSum", ["big"], ["big_sum"], keepdims=0))
    graph.node.insert(2, helper.make_node("Add", [first.input[0], "big_sum"], ["shifted"]))
    first.input[0] = "shifted"
    tracemalloc.start()
    exported = export_saliency(model, ExportOptions())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "ConstantOfShape" in {n.op_type for n in exported.graph.node}
    assert peak < 40 << 20


def test_tflite_operator_naming_an_absent_operator_code_is_refused_by_the_reader(tmp_path):
    """Found by fuzzing the converters' reader with the custom-op scan behind it: operator 3
    names operator code 3080195; read_tflite let it through and the scan died in struct.error."""
    pytest.importorskip("tflite")
    found = ROOT / "tests/fuzz/corpus/tflite_model/crash-206ce63805a2f611e211912f97012802f27ee790"
    path = tmp_path / "m.tflite"
    path.write_bytes(found.read_bytes())
    with pytest.raises(ModelLoadError, match="operator 3 names operator code 3080195"):
        read_custom_ops(read_tflite(path))
