"""What a model path holds, and TFLite files checked before anything parses them for real."""

from __future__ import annotations

from pathlib import Path

from edgesal.converters.errors import import_extra
from edgesal.errors import ModelLoadError
from edgesal.onnx_io import is_tflite

FORMATS = ("onnx", "tflite", "savedmodel", "keras")


def detect_format(path: str | Path) -> str:
    """``onnx``, ``tflite``, ``savedmodel`` (a folder with saved_model.pb) or ``keras``."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "savedmodel"
        raise ModelLoadError(
            f"{path}: a folder that is not a TensorFlow SavedModel (no saved_model.pb)"
        )
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file or folder")
    head = path.read_bytes()[:8]
    if is_tflite(head) or path.suffix == ".tflite":
        return "tflite"
    if path.suffix == ".keras" or head[:2] == b"PK":
        return "keras"
    if path.suffix in (".h5", ".hdf5"):
        raise ModelLoadError(f"{path}: legacy HDF5 Keras files are not supported; save as .keras")
    return "onnx"


def _tflite():
    return import_extra("tflite", "reading a .tflite file")


def builtin_names() -> dict[int, str]:
    tflite = _tflite()
    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def read_tflite(path: str | Path):
    """The parsed ``tflite.Model``; a truncated or corrupt file raises ModelLoadError.

    Every table the converter reads (subgraphs, tensors, operators, buffers) is walked once, so
    a file cut short fails here with its name instead of deep inside TensorFlow.
    """
    tflite = _tflite()
    path = Path(path)
    data = path.read_bytes()
    if not is_tflite(data):
        raise ModelLoadError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = tflite.Model.GetRootAs(data, 0)
        for i in range(model.SubgraphsLength()):
            graph = model.Subgraphs(i)
            tensors = graph.TensorsLength()
            for t in range(tensors):
                tensor = graph.Tensors(t)
                tensor.ShapeAsNumpy(), tensor.Name()
                if not 0 <= tensor.Buffer() < max(model.BuffersLength(), 1):
                    raise IndexError(f"tensor {t} names buffer {tensor.Buffer()}, which is absent")
            for o in range(graph.OperatorsLength()):
                op = graph.Operators(o)
                named = [op.Inputs(k) for k in range(op.InputsLength())]
                named += [op.Outputs(k) for k in range(op.OutputsLength())]
                # found by tests/fuzz: an index past its table broke the converter with struct.error
                if not 0 <= op.OpcodeIndex() < model.OperatorCodesLength():
                    raise IndexError(f"operator {o} names operator code {op.OpcodeIndex()}")
                if any(not -1 <= n < tensors for n in named):
                    raise IndexError(f"operator {o} names a tensor that does not exist")
        for b in range(model.BuffersLength()):
            buffer = model.Buffers(b)
            if buffer.DataLength():
                buffer.DataAsNumpy()
            if buffer.Offset() and buffer.Offset() + buffer.Size() > len(data):
                raise IndexError("buffer beyond the end of the file")
        for c in range(model.OperatorCodesLength()):
            model.OperatorCodes(c).BuiltinCode(), model.OperatorCodes(c).CustomCode()
        if model.SubgraphsLength() == 0:
            raise IndexError("no subgraph")
    except Exception as exc:  # reads past the end raise struct.error, IndexError, ValueError
        raise ModelLoadError(f"{path}: truncated or corrupt TFLite file ({exc})") from exc
    return model
