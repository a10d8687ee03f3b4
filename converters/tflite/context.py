"""The state of one ONNX -> TFLite lowering: which TFLite tensor (in which perm) holds each ONNX
tensor, constants, and the operators emitted so far.

Lowerings (``converters/tflite/ops``) ask for inputs in the perm they need (:meth:`Lowering.tensor`
inserts the TRANSPOSE or RESHAPE, once per tensor and perm) and declare outputs in the perm they
produce (:meth:`Lowering.output`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from edgesal.converters.errors import ConversionError, node_label
from edgesal.converters.tflite import layout
from edgesal.converters.tflite.layout import Perm
from edgesal.converters.tflite.schema import FlatModel, Operator, Tensor
from edgesal.graph.info import TensorInfo

_ARITHMETIC = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions"}

# kernels registered from a version above 1 (version 1 of BROADCAST_TO was a Flex op)
_MIN_VERSIONS = {"BROADCAST_TO": 2}


class Lowering:
    """Builds a :class:`FlatModel` from a static-shape ONNX graph, one node at a time."""

    def __init__(self, model: onnx.ModelProto):
        self.info = TensorInfo(model, strict=True)
        self.flat = FlatModel()
        self._held: dict[str, tuple[int, Perm]] = {}
        self._variants: dict[tuple[str, int, Perm], int] = {}
        self._consts: dict[tuple, int] = {}
        self._names: set[str] = set()
        self.node: onnx.NodeProto | None = None
        self._producers = {o: n for n in model.graph.node for o in n.output if o}

    # -- facts about ONNX tensors ---------------------------------------------------------------

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.info.shape(name))

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self.info.np_dtype(name))

    def value(self, name: str) -> np.ndarray | None:
        """The constant value of ``name`` (after folding), or None for a run-time tensor."""
        return None if not name else self.info.value(name)

    def producer(self, name: str) -> onnx.NodeProto | None:
        """The ONNX node computing ``name`` (None for inputs and constants)."""
        return self._producers.get(name)

    def is_const(self, name: str) -> bool:
        return self.value(name) is not None

    def perm(self, name: str) -> Perm:
        """The perm ``name`` is stored in (constants: identity, they can be stored any way)."""
        if name in self._held:
            return self._held[name][1]
        return layout.identity(len(self.shape(name)))

    def fail(self, detail: str) -> ConversionError:
        """An error naming the node being lowered."""
        return ConversionError(f"{node_label(self.node)}: {detail}")

    def const_ints(self, name: str, what: str) -> list[int]:
        value = self.value(name)
        if value is None:
            raise self.fail(f"its {what} input '{name}' must be a constant")
        return [int(v) for v in np.asarray(value).ravel()]

    # -- TFLite tensors -------------------------------------------------------------------------

    def _add(self, name: str, shape, dtype, data=None) -> int:
        base, n = name, 0
        while name in self._names:
            n += 1
            name = f"{base}:{n}"
        self._names.add(name)
        self.flat.tensors.append(Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype), data))
        return len(self.flat.tensors) - 1

    def temp(self, shape: Sequence[int], dtype, hint: str = "tmp") -> int:
        return self._add(hint, shape, dtype)

    def const(self, array, dtype=None, hint: str = "const") -> int:
        """A constant tensor (deduplicated by content)."""
        array = np.array(array, dtype=dtype, order="C")  # ascontiguousarray would make 0-d 1-d
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self._add(hint, array.shape, array.dtype, array)
        return self._consts[key]

    def ints(self, values: Sequence[int]) -> int:
        """An int32 1-D constant: shapes, axes, perms and paddings in TFLite are int32."""
        return self.const(np.asarray(list(values), dtype=np.int32), hint="ints")

    def physical_shape(self, index: int) -> tuple[int, ...]:
        return self.flat.tensors[index].shape

    def emit(self, code: str, inputs: Sequence[int], outputs: Sequence[int], options=None, **f):
        """Append operator ``code``; ADD/SUB/MUL/DIV get their options table by default."""
        if options is None and code in _ARITHMETIC:
            options, f = _ARITHMETIC[code], {"fused_activation_function": "NONE", **f}
        version = _MIN_VERSIONS.get(code, 1)
        self.flat.operators.append(Operator(code, list(inputs), list(outputs), options, f, version))

    def op(self, code: str, inputs: Sequence[int], shape, dtype, options=None, **f) -> int:
        """Emit ``code`` with one new output tensor of ``shape``; returns its index."""
        out = self.temp(shape, dtype, hint=code.lower())
        self.emit(code, inputs, [out], options, **f)
        return out

    def reshape(self, index: int, shape: Sequence[int]) -> int:
        if tuple(shape) == self.physical_shape(index):
            return index
        src = self.flat.tensors[index]
        return self.op("RESHAPE", [index, self.ints(shape)], shape, src.dtype)

    def transpose(self, index: int, perm: Sequence[int]) -> int:
        """TRANSPOSE of a stored tensor (a RESHAPE when only size-1 axes move)."""
        src = self.flat.tensors[index]
        shape = tuple(src.shape[p] for p in perm)
        if tuple(perm) == layout.identity(len(perm)):
            return index
        if layout.same_bytes(src.shape, layout.identity(len(perm)), perm):
            return self.reshape(index, shape)
        return self.op("TRANSPOSE", [index, self.ints(perm)], shape, src.dtype)

    def cast(self, index: int, dtype) -> int:
        src = self.flat.tensors[index]
        if src.dtype == np.dtype(dtype):
            return index
        if src.data is not None:
            return self.const(src.data.astype(dtype))
        return self.op("CAST", [index], src.shape, dtype)

    # -- ONNX tensor <-> TFLite tensor ----------------------------------------------------------

    def tensor(self, name: str, perm: Sequence[int] | None = None, rank: int | None = None) -> int:
        """The TFLite tensor holding ONNX tensor ``name`` in ``perm`` (default: as stored).

        With ``rank`` (for broadcasting operators) the tensor is viewed with leading size-1 axes
        up to ``rank``; the result may keep a lower rank when TFLite's own broadcasting covers it.
        """
        shape = self.shape(name)
        rank = len(shape) if rank is None else rank
        full = (1,) * (rank - len(shape)) + shape
        value = self.value(name)
        if value is not None:
            want = tuple(perm) if perm is not None else layout.identity(rank)
            stored = np.transpose(np.asarray(value).reshape(full), want)
            if rank != len(shape):  # broadcasting operand: drop leading ones again
                while stored.ndim > len(shape) and stored.shape[0] == 1:
                    stored = stored[0]
            return self.const(stored, hint=name)
        if name not in self._held:
            raise ConversionError(f"tensor '{name}' is used before it is produced")
        index, have = self._held[name]
        have = layout.lifted(have, rank)
        want = tuple(perm) if perm is not None else have
        if want == have:
            return index  # TFLite broadcasts the missing leading axes itself
        key = (name, rank, want)
        if key not in self._variants:
            source = self.reshape(index, layout.physical(full, have))
            self._variants[key] = self.transpose(source, layout.between(have, want))
        return self._variants[key]

    def output(self, name: str, perm: Sequence[int] | None = None, dtype=None) -> int:
        """A new TFLite tensor for ONNX output ``name`` stored in ``perm``."""
        shape = self.shape(name)
        perm = tuple(perm) if perm is not None else layout.identity(len(shape))
        index = self._add(name, layout.physical(shape, perm), dtype or self.dtype(name))
        self._held[name] = (index, perm)
        return index

    def hold(self, name: str, index: int, perm: Sequence[int]) -> None:
        """Record that ``index`` (stored in ``perm``) holds ONNX tensor ``name``."""
        self._held[name] = (index, tuple(perm))

    def alias(self, name: str, source: str) -> None:
        """``name`` is the same tensor as ``source`` (Identity, Dropout)."""
        if self.is_const(source):
            self.hold(name, self.tensor(source), layout.identity(len(self.shape(source))))
        else:
            self._held[name] = self._held[source]

    def held(self, name: str) -> tuple[int, Perm] | None:
        return self._held.get(name)
