"""Model converters: any common format in (ONNX out), the saliency model out as TFLite.

- :func:`convert` (``edgesal convert``): .onnx / .tflite / SavedModel folder / .keras path, or a
  torch ``nn.Module`` with ``example_input`` -> cleaned, checked ``onnx.ModelProto`` (ONNX input
  upgraded to the requested opset, never down);
- :func:`from_torch`: the PyTorch route on its own;
- :func:`to_tflite`: an ONNX model (e.g. ``edgesal.export.export_saliency``'s result) -> TFLite
  flatbuffer bytes with builtin operators only, image input NHWC, edgesal metadata attached;
- :func:`load_model_any`: what ``edgesal export`` reads: ONNX as is, other formats converted.

TensorFlow, tf2onnx and torch are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path

import onnx


def convert(
    source, example_input=None, opset: int | None = None, cleanup: bool = True
) -> onnx.ModelProto:
    """A cleaned, checked ONNX model of ``source`` (path, ModelProto, or torch module) at
    ``opset``: ONNX input is upgraded to it (never down); None keeps an ONNX model's own opset
    (at least 13) and converts the other formats at 17."""
    from edgesal.converters.inbound import convert as _convert

    return _convert(source, example_input=example_input, opset=opset, cleanup=cleanup)


def from_torch(module, example_input, opset: int = 17) -> onnx.ModelProto:
    """A cleaned ONNX model of ``module`` traced on ``example_input``."""
    return convert(module, example_input=example_input, opset=opset)


def to_tflite(model: onnx.ModelProto | str | Path) -> bytes:
    """The TFLite flatbuffer of an ONNX model: builtins only, NHWC image, edgesal metadata."""
    from edgesal.converters.tflite.convert import to_tflite as _to_tflite

    return _to_tflite(model)


def load_model_any(path: str | Path) -> onnx.ModelProto:
    """``path`` as ONNX: an .onnx file loaded and checked, any other format converted."""
    from edgesal.converters.formats import detect_format
    from edgesal.onnx_io import load_model

    if detect_format(path) == "onnx":
        return load_model(path)
    return convert(path)


__all__ = ["convert", "from_torch", "load_model_any", "to_tflite"]
