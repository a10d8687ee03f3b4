"""``convert``: any supported model format -> a cleaned, checked ONNX model.

ONNX passes through (checked, brought to the requested opset by the ONNX version converter --
never down -- or, with no opset asked for, to opset >= 13, cleaned); TFLite, SavedModel and Keras
go through tf2onnx; a PyTorch module through ``torch.onnx.export``. The result records where it
came from in the ``edgesal.source`` metadata entry.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgesal import metadata
from edgesal.converters.cleanup import clean
from edgesal.converters.formats import detect_format
from edgesal.onnx_io import at_opset, check, load_model, upgraded

OPSET = 17


def convert(
    source,
    example_input=None,
    opset: int | None = None,
    cleanup: bool = True,
) -> onnx.ModelProto:
    """ONNX model of ``source``: a path (.onnx, .tflite, SavedModel folder, .keras), an ONNX
    ModelProto, or a torch ``nn.Module`` with ``example_input``.

    ``opset``: the default-domain opset to write. ONNX input is upgraded to it (a downgrade
    raises InputError); ``None`` keeps an ONNX model's own opset (raised to 13 when older) and
    converts the other formats at opset 17.
    """
    if isinstance(source, onnx.ModelProto):
        model, origin = _onnx_at(source, opset, "ONNX model"), "onnx"
        check(model, "ONNX model")
    elif isinstance(source, str | Path):
        model, origin = _from_path(Path(source), opset)
    else:
        from edgesal.converters.torch import from_torch

        if example_input is None:
            raise TypeError("converting a torch module needs example_input")
        origin = f"torch:{type(source).__name__}"
        model = from_torch(source, example_input, opset or OPSET)
    if cleanup:
        clean(model, str(source) if isinstance(source, str | Path) else "converted model")
    if origin != "onnx":
        metadata.write(model, {"source": origin})
    return model


def _onnx_at(model: onnx.ModelProto, opset: int | None, where: str) -> onnx.ModelProto:
    """An ONNX source at ``opset`` (None: its own, at least the gradient rules' floor)."""
    return upgraded(model) if opset is None else at_opset(model, opset, where)


def _from_path(path: Path, opset: int | None) -> tuple[onnx.ModelProto, str]:
    kind = detect_format(path)
    if kind == "onnx":
        return _onnx_at(load_model(path), opset, str(path)), "onnx"
    from edgesal.converters import tensorflow

    convert_fn = {
        "tflite": tensorflow.from_tflite,
        "savedmodel": tensorflow.from_saved_model,
        "keras": tensorflow.from_keras,
    }[kind]
    model = convert_fn(path, opset or OPSET)
    _refuse_unknown_ops(model, path)
    return model, f"{kind}:{path.name}"


def _refuse_unknown_ops(model: onnx.ModelProto, path: Path) -> None:
    """tf2onnx keeps ops it cannot translate under their TensorFlow names: list them all."""
    from edgesal.converters.errors import ConversionError

    unknown = []
    for node in model.graph.node:
        domain = node.domain or ""
        if domain not in ("", "ai.onnx") or not onnx.defs.has(node.op_type, domain):
            unknown.append(f"{node.op_type} (node '{node.name}')")
    if unknown:
        raise ConversionError(
            f"{path}: these operators have no ONNX equivalent: {', '.join(unknown)}"
        )
