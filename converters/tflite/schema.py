"""The TFLite flatbuffer written from a plain in-memory graph, with the generated schema code of the
``tflite`` package (``tflite/<Table>.py``: ``<Table>Start``, ``<Table>Add<Field>``, ...).

Only what a model with one subgraph needs: tensors (constants in 16-byte aligned buffers,
buffer 0 the empty sentinel; int8/int32 tensors of quantized kernels carry their
:class:`Quantization`), builtin operators with their options table, one signature
``serving_default`` and ``Model.metadata`` entries (name -> bytes).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import flatbuffers
import numpy as np

from edgesal.onnx_io import TFLITE_IDENTIFIER

SIGNATURE_KEY = "serving_default"
SCHEMA_VERSION = 3
_GREATER_OP_CODES = 127  # codes above it are stored in builtin_code only

TENSOR_TYPES = {
    np.dtype(np.float32): "FLOAT32",
    np.dtype(np.float16): "FLOAT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.int64): "INT64",
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int8): "INT8",
    np.dtype(np.float64): "FLOAT64",
}
# option fields whose value is given as an enum member name
_ENUM_FIELDS = {
    "padding": "Padding",
    "fused_activation_function": "ActivationFunctionType",
    "mode": "MirrorPadMode",
    "output_type": "TensorType",
    "in_data_type": "TensorType",
    "out_data_type": "TensorType",
}


def _module(table: str):
    return importlib.import_module(f"tflite.{table}")


def enum_value(enum: str, member: str) -> int:
    """``enum_value("BuiltinOperator", "CONV_2D")`` -> 3, from the generated schema."""
    return getattr(getattr(_module(enum), enum), member)


def tensor_type(dtype: np.dtype) -> int:
    try:
        return enum_value("TensorType", TENSOR_TYPES[np.dtype(dtype)])
    except KeyError:
        raise TypeError(f"no TFLite tensor type for {np.dtype(dtype)}") from None


@dataclass(frozen=True)
class Quantization:
    """real = scale * (q - zero_point): one value per tensor, or one per index of ``axis``
    (TFLite's quantized_dimension, per-channel weights and their int32 biases)."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0


@dataclass
class Tensor:
    """A subgraph tensor; ``data`` set makes it a constant."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None = None
    quantization: Quantization | None = None


@dataclass
class Operator:
    """A builtin operator; ``options`` names its options table, ``fields`` its values.

    Field names are the schema's snake_case names (``stride_w``); enum fields take the member name
    (``padding="SAME"``). An input index of -1 marks an omitted optional input. A custom operator
    has ``code="CUSTOM"``, its name in ``custom_code`` and its raw ``custom_options`` bytes.
    """

    code: str
    inputs: list[int]
    outputs: list[int]
    options: str | None = None
    fields: dict[str, object] = field(default_factory=dict)
    version: int = 1
    custom_code: str | None = None
    custom_options: bytes | None = None


@dataclass
class FlatModel:
    """One subgraph, its signature and metadata, ready to serialize."""

    tensors: list[Tensor] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    metadata: dict[str, bytes] = field(default_factory=dict)
    description: str = "edgesal"

    def serialize(self) -> bytes:
        return _Writer(self).write()


class _Writer:
    def __init__(self, model: FlatModel):
        self.model = model
        self.b = flatbuffers.Builder(1024 * 1024)
        self.buffers: list[bytes | None] = [None]  # buffer 0: the empty sentinel

    def write(self) -> bytes:
        m, b = self.model, self.b
        codes = sorted({(op.code, op.version, op.custom_code or "") for op in m.operators})
        code_index = {c: i for i, c in enumerate(codes)}
        tensor_buffers = []
        for t in m.tensors:
            if t.data is None:
                tensor_buffers.append(0)
            else:
                self.buffers.append(
                    np.ascontiguousarray(t.data).astype("<" + t.data.dtype.str[1:]).tobytes()
                )
                tensor_buffers.append(len(self.buffers) - 1)
        meta = []
        for name, payload in m.metadata.items():
            self.buffers.append(payload)
            meta.append((name, len(self.buffers) - 1))
        subgraph = self._subgraph(tensor_buffers, code_index)
        opcodes = [self._opcode(*code) for code in codes]
        signature = self._signature()
        metadata = [self._table("Metadata", name=b.CreateString(n), buffer=i) for n, i in meta]
        buffers = [self._buffer(data) for data in self.buffers]
        description = b.CreateString(m.description)
        root = self._table(
            "Model",
            version=SCHEMA_VERSION,
            operator_codes=self._offsets("Model", "operator_codes", opcodes),
            subgraphs=self._offsets("Model", "subgraphs", [subgraph]),
            description=description,
            buffers=self._offsets("Model", "buffers", buffers),
            metadata=self._offsets("Model", "metadata", metadata),
            signature_defs=self._offsets("Model", "signature_defs", [signature]),
        )
        b.Finish(root, file_identifier=TFLITE_IDENTIFIER)
        return bytes(b.Output())

    # -- tables ---------------------------------------------------------------------------------

    def _table(self, table: str, **values) -> int:
        """Start ``table``, add each field (already-built offsets or scalars), end it."""
        module = _module(table)
        getattr(module, f"{table}Start")(self.b)
        for name, value in values.items():
            if value is None:
                continue
            getattr(module, f"{table}Add{_camel(name)}")(self.b, value)
        return getattr(module, f"{table}End")(self.b)

    def _offsets(self, table: str, name: str, offsets: list[int]) -> int:
        getattr(_module(table), f"{table}Start{_camel(name)}Vector")(self.b, len(offsets))
        for offset in reversed(offsets):
            self.b.PrependUOffsetTRelative(offset)
        return self.b.EndVector()

    def _ints(self, values, dtype=np.int32) -> int:
        return self.b.CreateNumpyVector(np.asarray(list(values), dtype=dtype))

    def _buffer(self, data: bytes | None) -> int:
        if not data:
            return self._table("Buffer")
        b = self.b
        b.StartVector(1, len(data), 16)  # XNNPACK and mmap readers want aligned weights
        b.head -= len(data)
        b.Bytes[b.head : b.head + len(data)] = data
        b.vectorNumElems = len(data)
        return self._table("Buffer", data=b.EndVector())

    def _opcode(self, code: str, version: int, custom: str = "") -> int:
        value = enum_value("BuiltinOperator", code)
        return self._table(
            "OperatorCode",
            deprecated_builtin_code=min(value, _GREATER_OP_CODES),
            custom_code=self.b.CreateString(custom) if custom else None,
            version=version,
            builtin_code=value,
        )

    def _subgraph(self, tensor_buffers: list[int], code_index) -> int:
        m, b = self.model, self.b
        tensors = []
        for t, buffer in zip(m.tensors, tensor_buffers, strict=True):
            quantization = self._quantization(t.quantization) if t.quantization else None
            tensors.append(
                self._table(
                    "Tensor",
                    shape=self._ints(t.shape),
                    type=tensor_type(t.dtype),
                    buffer=buffer,
                    name=b.CreateString(t.name),
                    quantization=quantization,
                )
            )
        operators = [
            self._operator(op, code_index[(op.code, op.version, op.custom_code or "")])
            for op in m.operators
        ]
        return self._table(
            "SubGraph",
            tensors=self._offsets("SubGraph", "tensors", tensors),
            inputs=self._ints(m.inputs),
            outputs=self._ints(m.outputs),
            operators=self._offsets("SubGraph", "operators", operators),
            name=b.CreateString("main"),
        )

    def _quantization(self, q: Quantization) -> int:
        return self._table(
            "QuantizationParameters",
            scale=self._ints(q.scale, np.float32),
            zero_point=self._ints(q.zero_point, np.int64),
            quantized_dimension=q.axis,
        )

    def _operator(self, op: Operator, opcode_index: int) -> int:
        options = None
        if op.options is not None:
            fields = {k: _field_value(k, v) for k, v in op.fields.items()}
            options = self._table(op.options, **fields)
        inputs, outputs = self._ints(op.inputs), self._ints(op.outputs)
        custom = None
        if op.custom_options is not None:
            custom = self.b.CreateNumpyVector(np.frombuffer(op.custom_options, np.uint8))
        return self._table(
            "Operator",
            opcode_index=opcode_index,
            inputs=inputs,
            outputs=outputs,
            custom_options=custom,
            builtin_options_type=(
                enum_value("BuiltinOptions", op.options) if op.options is not None else None
            ),
            builtin_options=options,
        )

    def _signature(self) -> int:
        m, b = self.model, self.b

        def maps(indices: list[int]) -> list[int]:
            names = [b.CreateString(m.tensors[i].name) for i in indices]
            return [
                self._table("TensorMap", name=n, tensor_index=i)
                for n, i in zip(names, indices, strict=True)
            ]

        inputs, outputs = maps(m.inputs), maps(m.outputs)
        return self._table(
            "SignatureDef",
            inputs=self._offsets("SignatureDef", "inputs", inputs),
            outputs=self._offsets("SignatureDef", "outputs", outputs),
            signature_key=b.CreateString(SIGNATURE_KEY),
            subgraph_index=0,
        )


def _field_value(name: str, value):
    if isinstance(value, str) and name in _ENUM_FIELDS:
        return enum_value(_ENUM_FIELDS[name], value)
    return value


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))
