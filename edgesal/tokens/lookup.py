"""Find the embedding lookup that token ids feed: the tensor a token saliency map differentiates.

Exporters write ``Gather(table, ids)`` for an embedding, often behind a Cast (int32 <-> int64) or
an Unsqueeze/Reshape of the ids. The map is taken with respect to the Gather's output (the word
embeddings [N, T, D]), since ids themselves have no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgesal.errors import InputError
from edgesal.graph.info import TensorInfo
from edgesal.image_input import ExplainedInput, graph_inputs

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
# integer ops that only move or relabel ids on the way to their lookup
_ID_PASSTHROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Flatten"}
MASK_NAMES = ("attention_mask", "input_mask", "mask")


@dataclass(frozen=True)
class TokenLookup:
    """The ids input ``ids`` [N, T], its lookup's output ``tensor`` [N, T, D] and ``table``
    [V, D]; ``mask`` names the attention-mask input (None if the model has none)."""

    ids: str
    tensor: str
    table: str
    vocab: int
    width: int
    shape: tuple[int, ...]
    mask: str | None = None

    def explained(self) -> ExplainedInput:
        """The input description the methods and the export path work on."""
        return ExplainedInput(
            self.ids, self.tensor, "", self.shape, modality="tokens", axes="N,T,D", channel_axis=2
        )


def is_integer_input(model: onnx.ModelProto, name: str) -> bool:
    """True when graph input ``name`` holds integers (token ids, masks)."""
    entry = next((i for i in graph_inputs(model) if i.name == name), None)
    return entry is not None and entry.type.tensor_type.elem_type not in _FLOATS


def find_lookup(
    model: onnx.ModelProto, info: TensorInfo, ids: str, mask: str | None = None
) -> TokenLookup:
    """The embedding lookup fed by integer input ``ids`` (through Cast/Unsqueeze/Reshape)."""
    tables = _float_tables(model)
    reached = {ids}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] in reached:
            if node.input[0] in tables:
                return _lookup(model, info, ids, node, tables[node.input[0]], mask)
        if node.op_type in _ID_PASSTHROUGH and node.input and node.input[0] in reached:
            if info.has(node.output[0]) and info.dtype(node.output[0]) not in _FLOATS:
                reached.add(node.output[0])
    raise InputError(f"no embedding lookup found for input '{ids}'; pass --wrt TENSOR")


def _lookup(model, info, ids, node, table: onnx.TensorProto, mask) -> TokenLookup:
    shape = info.shape(node.output[0])
    if len(shape) != 3:
        raise InputError(
            f"the embedding lookup of '{ids}' (node '{node.name}') gives shape {list(shape)}, not "
            "[N, T, D]; pass --wrt TENSOR"
        )
    return TokenLookup(
        ids, node.output[0], table.name, table.dims[0], table.dims[1], shape,
        mask if mask is not None else default_mask(model, ids),
    )  # fmt: skip


def default_mask(model: onnx.ModelProto, ids: str) -> str | None:
    """The attention-mask input by its conventional name, if the model has one."""
    names = {i.name for i in graph_inputs(model)} - {ids}
    return next((m for m in MASK_NAMES if m in names), None)


def checked_mask(model: onnx.ModelProto, info: TensorInfo, name: str, shape) -> str:
    """``--mask-input NAME``: a graph input of the ids' shape [N, T]."""
    if not any(i.name == name for i in graph_inputs(model)):
        raise InputError(f"--mask-input {name}: the model has no such input")
    if tuple(info.shape(name)) != tuple(shape[:2]):
        raise InputError(
            f"--mask-input {name}: shape {list(info.shape(name))}, the ids have {list(shape[:2])}"
        )
    return name


def _float_tables(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Rank-2 float initializers (embedding tables), by name."""
    return {
        t.name: t for t in model.graph.initializer if len(t.dims) == 2 and t.data_type in _FLOATS
    }


def wrt_input(model: onnx.ModelProto, info: TensorInfo, tensor: str, given: str | None) -> str:
    """The graph input that ``--wrt TENSOR`` depends on (``given`` if set): checks ``tensor`` is a
    float tensor computed from a fed input."""
    if not info.has(tensor):
        raise InputError(f"--wrt {tensor}: the model has no tensor of that name")
    if info.dtype(tensor) not in _FLOATS:
        raise InputError(f"--wrt {tensor}: not a float tensor, so it has no gradient")
    feeding = _inputs_feeding(model, tensor)
    if given is not None:
        if given not in feeding:
            raise InputError(f"--wrt {tensor}: it does not depend on --input {given}")
        return given
    if not feeding:
        raise InputError(f"--wrt {tensor}: it depends on no model input (a constant)")
    return feeding[0]


def _inputs_feeding(model: onnx.ModelProto, tensor: str) -> list[str]:
    fed = [i.name for i in graph_inputs(model)]
    needed = {tensor}
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            needed.update(n for n in node.input if n)
    return [name for name in fed if name in needed]


def position_limit(model: onnx.ModelProto, info: TensorInfo, lookup: TokenLookup) -> None:
    """Refuse a sequence longer than a position table: a [P, D] table (D = embedding width, not
    the word table) read with indices that depend on no fed input (the arange of positions)."""
    length = lookup.shape[1]
    tables = _float_tables(model)
    fed = {i.name for i in graph_inputs(model)}
    from_inputs = set(fed)
    for node in model.graph.node:
        if node.op_type != "Shape" and any(n in from_inputs for n in node.input):
            from_inputs.update(node.output)
    for node in model.graph.node:
        table = tables.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.name == lookup.table or table.dims[1] != lookup.width:
            continue
        if node.input[1] not in from_inputs and table.dims[0] < length:
            raise InputError(
                f"--input-shape: sequence length {length} exceeds the position table "
                f"'{table.name}' ({table.dims[0]} positions)"
            )
