"""Fuzz targets: every reader of untrusted bytes, fed one input each call.

A target returns normally or raises one of the project's own errors (:data:`ALLOWED`); anything
else -- IndexError, KeyError, struct.error, RecursionError, MemoryError, cv2.error, a crash -- is
a finding. Files are written under one scratch folder per process, because most readers take a
path (as the command line gives them one). Seeds (:func:`seeds`) are small valid inputs; the
committed corpus under ``tests/fuzz/corpus/<target>/`` holds them and every input that once broke
a reader.
"""

from __future__ import annotations

import importlib
import io
import json
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgesal.errors import EdgesalError
from edgesal.runtimes.errors import DeviceError

ALLOWED = (EdgesalError, DeviceError)
CORPUS = Path(__file__).parent / "corpus"
MAX_FRAMES = 8  # frames read from a fuzzed video or folder
_scratch: Path | None = None

# target -> the readers it calls ("module:name"). A fuzzing child imports (and instruments) only
# its own target's modules: importing every reader costs each child seconds of start-up.
READERS: dict[str, tuple[str, ...]] = {
    "archive": ("edgesal.zoo.archive:read_state_dict",),
    "salrec": (
        "edgesal.runtimes.records:RecordReader",
        "edgesal.runtimes.cli.records:inspect_summary",
    ),
    "salrec_fields": (
        "edgesal.runtimes.records:RecordReader",
        "edgesal.runtimes.cli.records:inspect_summary",
    ),
    "tflite_meta": (
        "edgesal.runtimes.backends.tflite_meta:read_metadata",
        "edgesal.runtimes.backends.tflite_meta:read_input_shapes",
    ),
    "tflite_model": (
        "edgesal.converters.formats:read_tflite",
        "edgesal.converters.custom_ops:read_custom_ops",
    ),
    "onnx_model": (
        "edgesal.onnx_io:load_model",
        "edgesal.export.pipeline:export_saliency",
        "edgesal.options:ExportOptions",
    ),
    "onnx_graph": (
        "edgesal.onnx_io:load_model",
        "edgesal.export.pipeline:export_saliency",
        "edgesal.options:ExportOptions",
        "edgesal.methods:METHODS",
        "tests.fuzz.graphs:draw_cnn",
    ),
    "onnx_device": ("edgesal.runtimes.model:MethodChain",),
    "labels": ("edgesal.runtimes.contract:read_labels",),
    "boxes": ("edgesal.eval.pointing:load_boxes",),
    "metadata": ("edgesal.runtimes.contract:build_contract",),
    "image": ("edgesal.imaging:read_image", "edgesal.runtimes.sources:open_source"),
    "video": ("edgesal.runtimes.sources:open_source",),
}


# modules a target reaches through its readers and should be guided by (instrumented) too
REACHED: dict[str, tuple[str, ...]] = {
    "onnx_graph": ("edgesal.graph", "edgesal.autodiff"),
}


def reader(path: str):
    """The object ``module:name`` names, its module imported on first use."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def modules(target: str) -> list[str]:
    """The modules ``target`` exercises (what its child instruments for coverage)."""
    readers = {path.partition(":")[0] for path in READERS[target]}
    return sorted(readers | set(REACHED.get(target, ())))


def scratch(name: str, data: bytes) -> Path:
    """``data`` written to ``name`` in this process's scratch folder."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="edgesal-fuzz-"))
    path = _scratch / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def archive(data: bytes) -> None:
    """The zoo's weight-archive reader (restricted unpickler, legacy stream and zip)."""
    reader("edgesal.zoo.archive:read_state_dict")(data, "fuzz.pth")


def salrec(data: bytes) -> None:
    """A ``.salrec`` file through the reader, the map decoder and ``records inspect``."""
    path = scratch("r.salrec", data)
    records = reader("edgesal.runtimes.records:RecordReader")(path)
    for _ in records.frames():
        pass
    records.headers(), records.events(), records.truncated_bytes
    reader("edgesal.runtimes.cli.records:inspect_summary")(str(path))


def salrec_fields(data: bytes) -> None:
    """A record's meta and data with a correct CRC (mutations of whole files rarely get past the
    CRC): input = kind byte, meta bytes, NUL NUL, data bytes; read as :func:`salrec` reads."""
    records = reader("edgesal.runtimes.records:RecordReader")
    kind, rest = (data[0] % 4, data[1:]) if data else (2, b"")
    meta, _, payload = rest.partition(b"\0\0")
    head = struct.pack("<4sBBHIII", b"SREC", kind, 1, 0, len(meta), len(payload), 0)[:16]
    crc = zlib.crc32(payload, zlib.crc32(meta, zlib.crc32(head)))
    header = b"SREC\x01\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00"
    header += struct.pack("<I", zlib.crc32(b"{}", zlib.crc32(header))) + b"{}"
    record = head + struct.pack("<I", crc) + meta + payload
    path = scratch("f.salrec", b"\x89SALREC\n" + header + record)
    for _ in records(path).frames():
        pass
    reader("edgesal.runtimes.cli.records:inspect_summary")(str(path))


def tflite_meta(data: bytes) -> None:
    """The device runtime's own flatbuffer walks: the ``edgesal`` metadata entry and the input
    shapes checked against the memory budget before an interpreter is made."""
    try:
        reader("edgesal.runtimes.backends.tflite_meta:read_metadata")(data)
    finally:
        reader("edgesal.runtimes.backends.tflite_meta:read_input_shapes")(data)


def tflite_model(data: bytes) -> None:
    """The converters' reader of a ``.tflite`` file and the custom-op scan ``edgesal convert``
    runs on what it returns."""
    model = reader("edgesal.converters.formats:read_tflite")(scratch("m.tflite", data))
    reader("edgesal.converters.custom_ops:read_custom_ops")(model)


def onnx_model(data: bytes) -> None:
    """An ``.onnx`` file: the workstation loader, then the export entry on what loads."""
    model = reader("edgesal.onnx_io:load_model")(scratch("m.onnx", data))
    export = reader("edgesal.export.pipeline:export_saliency")
    export(model, reader("edgesal.options:ExportOptions")())


def onnx_graph(data: bytes) -> None:
    """A valid-looking CNN drawn from the input (layer types, kernels, strides, pads, dilations,
    modes: :func:`tests.fuzz.graphs.draw_cnn`), then loaded and exported with a drawn method:
    byte mutations of a protobuf rarely get past the checker into the gradient rules."""
    draw = reader("tests.fuzz.graphs:Draw")(data)
    model = reader("tests.fuzz.graphs:draw_cnn")(draw)
    methods = sorted(reader("edgesal.methods:METHODS"))
    options = reader("edgesal.options:ExportOptions")(method=methods[draw.int(len(methods))])
    loaded = reader("edgesal.onnx_io:load_model")(scratch("g.onnx", model.SerializeToString()))
    reader("edgesal.export.pipeline:export_saliency")(loaded, options)


def onnx_device(data: bytes) -> None:
    """An ``.onnx`` file on the device: onnxruntime session, metadata contract, input budget."""
    reader("edgesal.runtimes.model:MethodChain").load([str(scratch("d.onnx", data))])


def labels(data: bytes) -> None:
    """``--labels`` (export and run): one name a line, or a JSON list."""
    reader("edgesal.runtimes.contract:read_labels")(str(scratch("labels.txt", data)))


def boxes(data: bytes) -> None:
    """``--boxes`` of the pointing game: COCO JSON or ``{image: box}``."""
    reader("edgesal.eval.pointing:load_boxes")(scratch("boxes.json", data))


def metadata(data: bytes) -> None:
    """``edgesal.*`` metadata a model carries (JSON values), as the device contract reads it."""
    try:
        props = json.loads(data)
    except (ValueError, RecursionError):
        return  # the metadata map itself is protobuf/flatbuffer; its values are the JSON
    if not isinstance(props, dict):
        return
    props = {f"edgesal.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in props.items()}
    inputs = {"image": ((1, 3, 32, 32), "float32"), "target": ((1,), "int64")}
    outputs = ["logits", "saliency", "saliency_gradcam"]
    reader("edgesal.runtimes.contract:build_contract")("fuzz.onnx", props, inputs, outputs)


def image(data: bytes) -> None:
    """An image file: the workstation reader and the device's folder source."""
    path = scratch("images/a.png", data)
    try:
        reader("edgesal.imaging:read_image")(path)
    finally:
        _frames(reader("edgesal.runtimes.sources:open_source")(str(path.parent)))


def video(data: bytes) -> None:
    """A video file through the device's file source (OpenCV/FFmpeg demux and decode)."""
    _frames(reader("edgesal.runtimes.sources:open_source")(str(scratch("v.avi", data))))


def _frames(source) -> None:
    try:
        for count, _ in enumerate(source, 1):
            if count >= MAX_FRAMES:
                break
    finally:
        source.close()


TARGETS: dict[str, Callable[[bytes], None]] = {
    f.__name__: f
    for f in (
        archive,
        salrec,
        salrec_fields,
        tflite_meta,
        tflite_model,
        onnx_model,
        onnx_graph,
        onnx_device,
        labels,
        boxes,
        metadata,
        image,
        video,
    )
}
assert set(TARGETS) == set(READERS)


def run_one(name: str, data: bytes) -> None:
    """``TARGETS[name](data)``, the project's own errors accepted."""
    try:
        TARGETS[name](data)
    except ALLOWED:
        pass


def seeds() -> dict[str, dict[str, bytes]]:
    """Small valid inputs per target (what ``python -m tests.fuzz.run --seed`` commits)."""
    import cv2

    from tests.models import nchw_cnn
    from tests.runtimes import synthetic

    folder = Path(tempfile.mkdtemp(prefix="edgesal-seeds-"))
    frames = synthetic.colour_frames(3, (16, 16))
    device_model = synthetic.build(folder / "m.onnx", size=16).read_bytes()
    return {
        "archive": {"legacy.pth": _torch_archive(False), "zip.pth": _torch_archive(True)},
        "salrec": {"run.salrec": _salrec(folder)},
        "salrec_fields": {
            "frame.bin": b"\x02"
            + json.dumps(
                {
                    "frame": 3,
                    "label": "a",
                    "score": 0.5,
                    "method": "vanilla",
                    "selfcheck": {"faithful": False, "drop": 0.1},
                    "map": {
                        "shape": [2, 3],
                        "dtype": "uint8",
                        "scale": 0.5,
                        "offset": 0.0,
                        "encoding": "zlib",
                    },
                }
            ).encode()
            + b"\0\0"
            + zlib.compress(bytes(range(6))),
            "event.bin": b"\x03"
            + json.dumps(
                {
                    "type": "governor",
                    "frame": 1,
                    "from_level": 0,
                    "to_level": 1,
                    "action": "x",
                    "reason": "y",
                }
            ).encode(),
        },
        "tflite_meta": {"m.tflite": _tflite(folder)},
        "tflite_model": {"m.tflite": _tflite(folder)},
        "onnx_model": {"cnn.onnx": nchw_cnn(classes=3).SerializeToString()},
        "onnx_device": {"m.onnx": device_model},
        "onnx_graph": {"conv.bin": bytes([0, 3, 10, 4, 0, 2, 1, 0, 1, 1, 1, 1, 9, 2, 0])},
        "labels": {"lines.txt": b"cat\ndog\n", "list.json": b'["cat", "dog"]'},
        "boxes": {
            "simple.json": b'{"a.jpg": [1, 2, 10, 20], "b.jpg": [[0, 0, 4, 4], [1, 1, 2, 2]]}',
            "coco.json": json.dumps(
                {
                    "images": [{"id": 1, "file_name": "a.jpg"}],
                    "annotations": [{"image_id": 1, "bbox": [1, 2, 3, 4]}],
                }
            ).encode(),
        },
        "metadata": {
            "meta.json": json.dumps(
                {
                    "method": "vanilla",
                    "outputs": {"scores": "logits", "saliency": "saliency"},
                    "preprocess": {"size": [32, 32], "mean": [0.5, 0.5, 0.5]},
                    "labels": ["a", "b"],
                }
            ).encode()
        },
        "image": {
            ".png": cv2.imencode(".png", frames[0])[1].tobytes(),
            ".jpg": cv2.imencode(".jpg", frames[1])[1].tobytes(),
            ".bmp": cv2.imencode(".bmp", frames[2])[1].tobytes(),
        },
        "video": {"clip.avi": synthetic.write_video(folder / "v.avi", frames).read_bytes()},
    }


def _torch_archive(zip_format: bool) -> bytes:
    """A small state dict (a strided view, an offset, two dtypes) as torch.save writes it."""
    import torch

    base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    state = {"w": base, "t": base.t(), "b": base[1, 1:], "n": torch.tensor(3)}
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=zip_format)
    return buffer.getvalue()


def _salrec(folder: Path) -> bytes:
    RecordWriter = reader("edgesal.runtimes.records:RecordWriter")  # noqa: N806

    path = folder / "seed.salrec"
    writer = RecordWriter(path, {"models": [{"method": "vanilla", "model": "m", "sha256": "0"}]})
    rng = np.random.default_rng(0)
    writer.frame({"frame": 0, "label": "a", "score": 0.5, "method": "vanilla"}, rng.random((4, 5)))
    writer.frame({"frame": 1, "selfcheck": {"faithful": True, "drop": 0.5}})
    writer.event({"type": "governor", "frame": 1, "from_level": 0, "to_level": 1})
    writer.close()
    return path.read_bytes()


def _tflite(folder: Path) -> bytes:
    from tests.runtimes import synthetic_tflite

    return synthetic_tflite.build(folder / "m.tflite", size=8).read_bytes()
