"""Finding the image input of a model: its name, layout, and the float tensor to differentiate."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgesal.errors import InputError
from edgesal.graph.info import TensorInfo

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
_CHANNELS = (1, 3, 4)


@dataclass(frozen=True)
class ImageInput:
    """``name`` is the graph input; ``tensor`` the float tensor gradients are taken against.

    For a float input both are the same; for a uint8 input with in-graph preprocessing ``tensor`` is
    the output of the Cast to float that follows it (same shape and layout).
    """

    name: str
    tensor: str
    layout: str
    shape: tuple[int, ...]

    @property
    def spatial(self) -> tuple[int, int]:
        return (self.shape[2], self.shape[3]) if self.layout == "NCHW" else self.shape[1:3]


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Inputs that are fed at run time (not initializers)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def find_image_input(
    model: onnx.ModelProto, info: TensorInfo, name: str | None = None, layout: str | None = None
) -> ImageInput:
    """The image input (``name``, or the first rank-4 input), its layout and float tensor."""
    candidates = graph_inputs(model)
    listed = ", ".join(f"{i.name} {_describe(info, i.name)}" for i in candidates) or "none"
    if name is not None:
        chosen = next((i for i in candidates if i.name == name), None)
        if chosen is None:
            raise InputError(f"--input {name}: the model has no such input (inputs: {listed})")
    else:
        chosen = next((i for i in candidates if len(info.dims(i.name) or ()) == 4), None)
        if chosen is None:
            raise InputError(
                "the model has no image-like input (a rank-4 tensor [N,C,H,W] or [N,H,W,C]); "
                f"inputs: {listed}"
            )
    shape = info.shape(chosen.name)
    if len(shape) != 4:
        raise InputError(f"input '{chosen.name}' has shape {shape}; an image input has rank 4")
    return ImageInput(
        chosen.name, _float_tensor(model, info, chosen.name), _layout(shape, layout), shape
    )


def _layout(shape: tuple[int, ...], given: str | None) -> str:
    if given is not None:
        given = given.upper()
        if given not in ("NCHW", "NHWC"):
            raise InputError(f"--layout {given}: choose NCHW or NHWC")
        return given
    if shape[1] in (1, 3):
        return "NCHW"
    if shape[3] in _CHANNELS or shape[1] > shape[3]:
        return "NHWC"
    return "NCHW"


def _float_tensor(model: onnx.ModelProto, info: TensorInfo, name: str) -> str:
    if info.dtype(name) in _FLOATS:
        return name
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0] == name:
            to = next(a.i for a in node.attribute if a.name == "to")
            if to in _FLOATS:
                return node.output[0]
    kind = onnx.TensorProto.DataType.Name(info.dtype(name)).lower()
    raise InputError(
        f"input '{name}' is {kind} and is never cast to float in the graph: gradients need a "
        "float image (an integer input is only supported when the model casts it to float first)"
    )


def _describe(info: TensorInfo, name: str) -> str:
    kind = onnx.TensorProto.DataType.Name(info.dtype(name)).lower()
    return f"{kind}{list(info.dims(name) or [])}"
