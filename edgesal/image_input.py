"""The input a map explains: which graph input, which float tensor, its modality and axes.

An image is a rank-4 input ([N,C,H,W] or [N,H,W,C]). Any other float input of rank >= 2 is
explained too: audio features [N,T,F], sensor series [N,T,C] or [N,C,T], tabular rows [N,F]. The
map then keeps the input's per-sample shape, unless a channel axis is named (``--channel-axis``).
Inputs that are not explained (streaming caches, masks, extra features) stay inputs of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgesal.errors import InputError
from edgesal.graph.info import TensorInfo
from edgesal.options import InputSpec

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
_CHANNELS = (1, 3, 4)
MODALITIES = ("image", "audio", "series", "tabular")
_LETTERS = "NCHWTF"


@dataclass(frozen=True)
class ExplainedInput:
    """``name`` is the graph input fed at run time; ``tensor`` the float tensor gradients are
    taken against (the same for a float input; for a uint8 image with in-graph preprocessing the
    output of its Cast to float; for ``--wrt`` any float tensor computed from ``name``).

    ``axes`` names each axis of ``tensor`` ("N,C,H,W", "N,T,F", "N,F"); ``channel_axis`` is the
    axis the map reduces over (images: the colour axis; other inputs: only when given).
    ``layout`` is ``NCHW``/``NHWC`` for an image and ``""`` otherwise.
    """

    name: str
    tensor: str
    layout: str
    shape: tuple[int, ...]
    modality: str = "image"
    axes: str = ""
    channel_axis: int | None = None

    @property
    def is_image(self) -> bool:
        return self.modality == "image"

    @property
    def spatial(self) -> tuple[int, int]:
        y, x = (2, 3) if self.layout == "NCHW" else (1, 2)
        return self.shape[y], self.shape[x]

    @property
    def map_axes(self) -> str:
        """Axes of the saliency map: ``axes`` without the reduced channel axis."""
        names = self.axes.split(",")
        return ",".join(a for i, a in enumerate(names) if i != self.channel_axis)


ImageInput = ExplainedInput  # the name methods and the ROI planner annotate with


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Inputs that are fed at run time (not initializers)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def choose_input(model: onnx.ModelProto, name: str | None) -> onnx.ValueInfoProto | None:
    """Input ``name``; by default the first rank-4 input, else the first input that is float
    (or cast to float). None when nothing fits (callers raise with their own context)."""
    inputs = graph_inputs(model)
    if name is not None:
        return next((i for i in inputs if i.name == name), None)
    rank4 = [i for i in inputs if len(i.type.tensor_type.shape.dim) == 4]
    floats = [i for i in inputs if _is_float(model, i)]
    candidates = rank4 or floats
    return candidates[0] if candidates else None


def find_image_input(
    model: onnx.ModelProto, info: TensorInfo, name: str | None = None, layout: str | None = None
) -> ExplainedInput:
    """The image input (``name``, or the first rank-4 input), its layout and float tensor."""
    return find_input(model, info, InputSpec(name, layout, "image"))


def find_input(model: onnx.ModelProto, info: TensorInfo, spec: InputSpec) -> ExplainedInput:
    """The explained input described by ``spec``; modality and axes guessed where not given."""
    chosen = _chosen(model, info, spec.name)
    shape = info.shape(chosen.name)
    tensor = _float_tensor(model, info, chosen.name)
    modality = _modality(spec.modality, shape, chosen.name)
    if modality == "image":
        if len(shape) != 4:
            raise InputError(
                f"--modality image: input '{chosen.name}' has shape {shape}; an image has rank 4 "
                "(use --modality audio, series or tabular for other inputs)"
            )
        layout = _layout(shape, spec.layout)
        axes = "N,C,H,W" if layout == "NCHW" else "N,H,W,C"
        channel = axes.split(",").index("C")
        if spec.axes is not None and _axes(spec.axes, shape) != axes:
            raise InputError(f"--axes {spec.axes}: disagrees with the image layout {layout}")
        if spec.channel_axis is not None and _axis(spec.channel_axis, shape) != channel:
            raise InputError(
                f"--channel-axis {spec.channel_axis}: an {layout} image reduces over axis "
                f"{channel} (its colour channels)"
            )
        return ExplainedInput(chosen.name, tensor, layout, shape, modality, axes, channel)
    if spec.layout is not None:
        raise InputError(f"--layout {spec.layout}: only for image inputs (this is {modality})")
    channel_axis = None if spec.channel_axis is None else _axis(spec.channel_axis, shape)
    axes = _axes(spec.axes, shape) if spec.axes else _guess_axes(modality, shape, channel_axis)
    return ExplainedInput(chosen.name, tensor, "", shape, modality, axes, channel_axis)


def _chosen(model: onnx.ModelProto, info: TensorInfo, name: str | None) -> onnx.ValueInfoProto:
    chosen = choose_input(model, name)
    if chosen is not None:
        return chosen
    listed = ", ".join(f"{i.name} {_describe(info, i.name)}" for i in graph_inputs(model))
    if name is not None:
        raise InputError(
            f"--input {name}: the model has no such input (inputs: {listed or 'none'})"
        )
    raise InputError(f"the model has no float input to explain; inputs: {listed or 'none'}")


def _modality(given: str | None, shape: tuple[int, ...], name: str) -> str:
    """``given``, else: rank 4 -> image, rank 2 -> tabular, other ranks -> series (audio features
    look like a series [N,T,F]; only the user knows they are audio)."""
    if given is not None:
        if given not in MODALITIES:
            raise InputError(f"--modality {given}: choose one of {', '.join(MODALITIES)}")
        if len(shape) < 2:
            raise InputError(f"input '{name}' has shape {shape}; it needs a batch axis and more")
        return given
    if len(shape) < 2:
        raise InputError(f"input '{name}' has shape {shape}; it needs a batch axis and more")
    return {4: "image", 2: "tabular"}.get(len(shape), "series")


def _guess_axes(modality: str, shape: tuple[int, ...], channel: int | None) -> str:
    """Axis names: audio N,T,F (N,C,T,F with a leading channel); series N,T,C or N,C,T (the
    channel axis is ``channel`` when given, else the shorter one); tabular N,F; else N,D1,D2..."""
    rank = len(shape)
    if rank == 2:
        return "N,F"
    if modality == "audio" and rank == 3:
        return "N,T,F"
    if modality == "audio" and rank == 4:
        return "N,C,T,F" if channel in (None, 1) else "N,T,F,C"
    if rank == 3:
        if channel is None:
            channel = 1 if shape[1] < shape[2] else 2
        return "N,C,T" if channel == 1 else "N,T,C"
    return ",".join(["N"] + [f"D{i}" for i in range(1, rank)])


def _axes(given: str, shape: tuple[int, ...]) -> str:
    names = [a.strip().upper() for a in given.split(",")]
    if len(names) != len(shape) or names[0] != "N" or len(set(names)) != len(names):
        raise InputError(
            f"--axes {given}: name each of the {len(shape)} axes of the input {shape} once, "
            "batch first (e.g. N,T,F)"
        )
    if any(not a.isalnum() for a in names):
        raise InputError(f"--axes {given}: axis names are letters or digits ({_LETTERS}, D1...)")
    return ",".join(names)


def _axis(axis: int, shape: tuple[int, ...]) -> int:
    rank = len(shape)
    resolved = axis + rank if axis < 0 else axis
    if not 1 <= resolved < rank:
        raise InputError(
            f"--channel-axis {axis}: out of range for an input of shape {shape} "
            f"(valid: 1..{rank - 1} or -{rank - 1}..-1; axis 0 is the batch)"
        )
    return resolved


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


def _is_float(model: onnx.ModelProto, value: onnx.ValueInfoProto) -> bool:
    if value.type.tensor_type.elem_type in _FLOATS:
        return True
    return any(_cast_to_float(node, value.name) for node in model.graph.node)


def _cast_to_float(node: onnx.NodeProto, name: str) -> bool:
    if node.op_type != "Cast" or node.input[0] != name:
        return False
    return next(a.i for a in node.attribute if a.name == "to") in _FLOATS


def _float_tensor(model: onnx.ModelProto, info: TensorInfo, name: str) -> str:
    if info.dtype(name) in _FLOATS:
        return name
    for node in model.graph.node:
        if _cast_to_float(node, name):
            return node.output[0]
    kind = onnx.TensorProto.DataType.Name(info.dtype(name)).lower()
    raise InputError(
        f"input '{name}' is {kind} and is never cast to float in the graph: gradients need a "
        "float input (an integer input is only supported when the model casts it to float first)"
    )


def _describe(info: TensorInfo, name: str) -> str:
    kind = onnx.TensorProto.DataType.Name(info.dtype(name)).lower()
    return f"{kind}{list(info.dims(name) or [])}"
