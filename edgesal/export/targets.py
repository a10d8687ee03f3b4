"""What the saliency map explains: the seed (cotangent) fed into the backward pass.

Specs: ``argmax`` (top score of the first output), ``class:K``, ``input`` (an extra int64 input
``target`` [N] chosen at run time) and ``output:NAME[:max|sum|mean|INDEX|input]`` for detectors and
segmenters; ``output:NAME:input`` adds the int64 input ``target`` [N] choosing the flat element of
NAME (per item) at run time, so one file explains any box of a detector. Every spec seeds each
batch item separately, so a batch of N gives N independent maps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from edgesal.errors import TargetError
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo

TARGET_INPUT = "target"
_REDUCTIONS = ("max", "sum", "mean")


@dataclass(frozen=True)
class Target:
    """A parsed target spec; ``tensor`` None means the model's first output."""

    kind: str  # "argmax" | "class" | "input" | "output"
    tensor: str | None = None
    reduction: str = "max"  # for kind "output": max | sum | mean | index | input
    index: int | None = None

    @classmethod
    def parse(cls, spec: str) -> Target:
        """``argmax``, ``class:K``, ``input`` or ``output:NAME[:max|sum|mean|INDEX|input]``."""
        spec = spec.strip()
        if spec in ("argmax", "input"):
            return cls(spec)
        if m := re.fullmatch(r"class:(-?\d+)", spec):
            index = int(m.group(1))
            if index < 0:
                raise TargetError(f"--target {spec}: class index must be >= 0")
            return cls("class", reduction="index", index=index)
        if m := re.fullmatch(r"output:([^:]+)(?::([^:]+))?", spec):
            name, how = m.group(1), (m.group(2) or "max")
            if how in _REDUCTIONS or how == "input":
                return cls("output", tensor=name, reduction=how)
            if how.isdigit():
                return cls("output", tensor=name, reduction="index", index=int(how))
            raise TargetError(
                f"--target {spec}: expected max, sum, mean, input or an index after '{name}:'"
            )
        raise TargetError(
            f"--target {spec!r} not understood; use argmax, class:K, input or "
            "output:NAME[:max|sum|mean|INDEX|input]"
        )

    @property
    def runtime_choice(self) -> bool:
        """The explained element is chosen at run time (``input``, ``output:NAME:input``)."""
        return self.kind == "input" or self.reduction == "input"

    def __str__(self) -> str:
        if self.kind == "class":
            return f"class:{self.index}"
        if self.kind == "output":
            how = str(self.index) if self.reduction == "index" else self.reduction
            return f"output:{self.tensor}:{how}"
        return self.kind


def build_seed(target: Target, model: onnx.ModelProto, info: TensorInfo, b: Builder) -> tuple:
    """Emit the cotangent for ``target``; returns (scored tensor name, seed tensor name)."""
    scored = target.tensor or model.graph.output[0].name
    if target.tensor is not None and not info.has(scored):
        outputs = ", ".join(o.name for o in model.graph.output)
        raise TargetError(f"--target {target}: no tensor named '{scored}' (outputs: {outputs})")
    shape = info.shape(scored)
    if not shape:
        raise TargetError(f"--target {target}: '{scored}' is a scalar; it needs a batch axis")
    batch, per_item = shape[0], math.prod(shape[1:])
    dtype = info.np_dtype(scored)
    if target.kind == "argmax" or target.runtime_choice or target.reduction == "max":
        if target.runtime_choice:
            index = _target_input(model, batch)
        else:
            flat = b.Reshape(scored, b.ints([batch, per_item]))
            index = b.ArgMax(flat, axis=1, keepdims=0)
        values = b.const(np.array([0, 1], dtype=dtype))
        seed = b.OneHot(index, b.ints([per_item]), values, axis=-1)
    else:
        seed = b.const(_constant_seed(target, per_item, batch, dtype), hint="seed")
    return scored, b.Reshape(seed, b.ints(shape))


def _constant_seed(target: Target, per_item: int, batch: int, dtype) -> np.ndarray:
    if target.kind == "class" or target.reduction == "index":
        if target.index is None:
            raise TargetError(f"--target {target}: no index to explain")
        if target.index >= per_item:
            where = "classes" if target.kind == "class" else f"elements in '{target.tensor}'"
            raise TargetError(
                f"--target {target}: index {target.index} is out of range (the model has "
                f"{per_item} {where}; valid: 0..{per_item - 1})"
            )
        row = np.zeros(per_item, dtype)
        row[target.index] = 1
    elif target.reduction == "sum":
        row = np.ones(per_item, dtype)
    else:  # mean
        row = np.full(per_item, 1.0 / per_item, dtype)
    return np.tile(row, (batch, 1))


def _target_input(model: onnx.ModelProto, batch: int) -> str:
    if any(i.name == TARGET_INPUT for i in model.graph.input):
        raise TargetError(f"--target input: the model already has an input named '{TARGET_INPUT}'")
    model.graph.input.append(
        helper.make_tensor_value_info(TARGET_INPUT, onnx.TensorProto.INT64, [batch])
    )
    return TARGET_INPUT
