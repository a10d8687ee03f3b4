"""Rebatching: a forward copy that runs ``k`` samples per item on a graph that hard-codes batch N.

Published edge models (tf2onnx conversions of TFLite files above all) write the batch into
constant shape data: ``Reshape(x, [1, -1, 16])``, a Concat'd shape ``[1] ++ Shape(x)[1:]``, the
sizes of ``Expand``, ``ConstantOfShape`` and ``Resize``, the ends of a ``Slice`` over axis 0, a
constant operand concatenated to a batched tensor. :func:`rebatch` rewrites that data in the copy
so it follows the copy's batch ``N * k`` (the originals stay, the copy gets new constants), and
refuses (:class:`NotRebatchable`) where no exact rewrite exists (a Reshape that merges the batch
into another axis, a Tile over the batch, a Slice that picks items). :func:`check_rebatched`
then proves the result numerically: the copy on ``N * k`` *different* samples equals the original
on each one (onnxruntime, random inputs), so a rewrite that mixed samples cannot pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from edgesal.errors import InputError
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo, attrs

INT64_MAX = np.iinfo(np.int64).max
# (op type, index of the input holding sizes whose entry 0 is the output's batch)
_SIZE_INPUTS = {"Reshape": 1, "Expand": 1, "ConstantOfShape": 0, "Resize": 3}


class NotRebatchable(InputError):
    """The graph's batch cannot be changed by rewriting constants (the node says why)."""


@dataclass
class Copy:
    """A forward copy before it is appended: originals[i] was copied to copies[i]."""

    originals: list[onnx.NodeProto]
    copies: list[onnx.NodeProto]
    mapping: dict[str, str]  # original tensor -> copied tensor


def rebatch(copy: Copy, info: TensorInfo, b: Builder, batch: int, k: int) -> list[str]:
    """Rewrite ``copy`` (in place) so it runs batch ``batch * k`` where the original runs ``batch``.

    ``info`` holds the original graph's shapes. Returns one line per rewrite (for metadata and
    ``edgesal doctor``); raises :class:`NotRebatchable` naming the node where no exact rewrite
    exists. Only the data that carries the batch changes: entry 0 of sizes equal to ``batch``.
    """
    producers = {out: c for c in copy.copies for out in c.output}
    batched = set(copy.mapping)
    done: list[str] = []
    for original, node in zip(copy.originals, copy.copies, strict=True):
        out = original.output[0]
        out_batch = _dim0(info, out)
        data = original.input[0] if original.input else ""
        data_batched = data in batched and _is_float(info, data)
        op = original.op_type
        if (
            op in _SIZE_INPUTS
            and len(node.input) > _SIZE_INPUTS[op]
            and node.input[_SIZE_INPUTS[op]]
        ):
            at = _SIZE_INPUTS[op]
            if (
                op == "Reshape"
                and data_batched
                and (_dim0(info, data), out_batch) != (batch, batch)
            ):
                raise NotRebatchable(
                    f"Reshape '{original.name}' moves the batch ({info.dims(data)} -> "
                    f"{info.dims(out)}): no constant rewrite keeps the samples apart"
                )
            if out_batch == batch:
                done += _rewrite_size(node, at, original.input[at], info, b, producers, batch, k)
        elif op == "Tile" and data_batched:
            repeats = info.value(original.input[1])
            if repeats is None or int(repeats[0]) != 1:
                raise NotRebatchable(f"Tile '{original.name}' repeats over the batch axis")
        elif op == "Slice" and data_batched:
            done += _rewrite_slice(original, node, info, b, batch, k)
        elif op == "Concat":
            done += _repeat_constants(original, node, info, b, batched, batch, k)
        done += _repeat_other_inputs(original, node, info, b, batched, batch, k)
    return done


def _dim0(info: TensorInfo, name: str) -> int | None:
    dims = info.dims(name)
    return dims[0] if dims and isinstance(dims[0], int) else None


def _rewrite_size(node, at, name, info, b, producers, batch, k) -> list[str]:
    """Entry 0 of the sizes ``name`` (constant, or a Concat whose first piece is) -> batch * k."""
    value = info.value(name)
    if value is not None:
        if value.ndim != 1 or value.size == 0 or int(value[0]) != batch:
            return []
        node.input[at] = _with_first(b, value, batch * k, name)
        return [f"{node.op_type} '{_label(node)}': {name}[0] {batch} -> {batch * k}"]
    concat = producers.get(node.input[at])
    if concat is None or concat.op_type != "Concat" or not concat.input:
        return []  # computed from Shape of a batched tensor: it follows the batch already
    piece = info.value(concat.input[0])
    if piece is None or piece.ndim != 1 or piece.size == 0 or int(piece[0]) != batch:
        return []
    concat.input[0] = _with_first(b, piece, batch * k, concat.input[0])
    return [f"Concat '{_label(concat)}' (sizes of {node.op_type} '{_label(node)}'): [0] "
            f"{batch} -> {batch * k}"]  # fmt: skip


def _with_first(b: Builder, value: np.ndarray, first: int, hint: str) -> str:
    new = np.array(value, copy=True)
    new[0] = first
    return b.const(new, hint=f"rebatched_{hint.rsplit('/', 1)[-1]}")


def _rewrite_slice(original, node, info, b, batch, k) -> list[str]:
    """A Slice that keeps the whole batch axis (start 0, end >= batch, step 1) keeps it."""
    names = list(original.input) + [""] * (5 - len(original.input))
    starts, ends = info.value(names[1]), info.value(names[2])
    rank = len(info.dims(original.input[0]) or ())
    axes = (
        info.value(names[3]) if names[3] else np.arange(len(starts if starts is not None else []))
    )
    steps = info.value(names[4]) if names[4] else None
    if starts is None or ends is None or axes is None:
        raise NotRebatchable(f"Slice '{original.name}' has computed bounds on a batched tensor")
    positions = [i for i, a in enumerate(axes) if int(a) % max(rank, 1) == 0]
    if not positions:
        return []
    i = positions[0]
    step = 1 if steps is None else int(steps[i])
    if int(starts[i]) != 0 or step != 1 or int(ends[i]) < batch:
        raise NotRebatchable(f"Slice '{original.name}' picks items of the batch axis")
    if int(ends[i]) >= batch * k:
        return []
    new = np.array(ends, copy=True)
    new[i] = INT64_MAX
    node.input[2] = b.const(new, hint="rebatched_ends")
    return [f"Slice '{_label(node)}': end of axis 0 {int(ends[i])} -> end"]


def _repeat_constants(original, node, info, b, batched, batch, k) -> list[str]:
    """Operands of a Concat over another axis that do not depend on the samples: repeated."""
    rank = len(info.dims(original.output[0]) or ())
    axis = int(attrs(original).get("axis", 0)) % max(rank, 1)
    if axis == 0:
        if _is_float(info, original.output[0]) and any(n in batched for n in original.input):
            raise NotRebatchable(f"Concat '{original.name}' joins tensors along the batch axis")
        return []
    done = []
    for index, name in enumerate(original.input):
        value = info.value(name)
        if name in batched or value is None or value.ndim == 0 or value.shape[0] != batch:
            continue
        node.input[index] = b.const(np.repeat(value, k, axis=0), hint="rebatched_operand")
        done.append(f"Concat '{_label(node)}': constant {name} repeated {k}x per item")
    return done


def _repeat_other_inputs(original, node, info, b, batched, batch, k) -> list[str]:
    """Graph inputs besides the samples (masks, caches) read by the copy: each item repeated."""
    done = []
    for index, name in enumerate(original.input):
        if name in batched or not name or info.value(name) is not None or name not in _inputs(b):
            continue
        shape = info.shape(name)
        if not shape or shape[0] != batch:
            continue
        grouped = b.Reshape(name, b.ints([batch, 1, *shape[1:]]))
        expanded = b.Expand(grouped, b.ints([batch, k, *shape[1:]]))
        node.input[index] = b.Reshape(expanded, b.ints([batch * k, *shape[1:]]))
        done.append(f"input '{name}' repeated {k}x per item for '{_label(node)}'")
    return done


def _inputs(b: Builder) -> set[str]:
    return {i.name for i in b.graph.input}


def _is_float(info: TensorInfo, name: str) -> bool:
    """Activations are float; integer tensors that depend on the samples are shape arithmetic."""
    return np.issubdtype(info.np_dtype(name), np.floating)


def _label(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def check_rebatched(
    model: onnx.ModelProto,
    source: str,
    copy_input: str,
    outputs: dict[str, str],
    batch: int,
    k: int,
    seed: int = 0,
) -> float:
    """Largest relative error of the copy on ``batch * k`` different samples against the original
    on each (``outputs``: original tensor -> copied tensor); :class:`NotRebatchable` above 1e-3.

    The samples are random normal; item ``n * k + j`` of the copy is item ``n`` of sample set j.
    """
    info = TensorInfo(model)
    dtype = info.np_dtype(source)
    shape = info.shape(source)
    rng = np.random.default_rng(seed)
    sets = [_random(rng, shape, dtype) for _ in range(k)]
    stacked = np.stack(sets, axis=1).reshape((shape[0] * k, *shape[1:]))
    others = _other_feeds(model, info, {source, copy_input}, rng)
    try:
        original = _session(_submodel(model, info, source, list(outputs)))
        copied = _session(_submodel(model, info, copy_input, list(outputs.values())))
        got = copied.run(None, {copy_input: stacked, **_used(copied, others)})
        expected_sets = [original.run(None, {source: x, **_used(original, others)}) for x in sets]
    except Exception as exc:  # onnxruntime raises its own types; any failure means unchecked
        raise NotRebatchable(
            f"the batched copy could not be checked on onnxruntime: {exc}"
        ) from exc
    worst = 0.0
    for j, expected in enumerate(expected_sets):
        for want, have in zip(expected, got, strict=True):
            want = np.asarray(want, np.float64)
            have = np.asarray(have, np.float64).reshape((batch, k, *want.shape[1:]))[:, j]
            scale = max(float(np.abs(want).max(initial=0.0)), 1e-6)
            worst = max(worst, float(np.abs(have - want).max(initial=0.0)) / scale)
    if worst > 1e-3:
        raise NotRebatchable(
            f"the rebatched copy differs from the original by {worst:.2g} (relative) on random "
            "samples: the graph mixes items of a batch"
        )
    return worst


def _random(rng: np.random.Generator, shape: Iterable[int], dtype) -> np.ndarray:
    """Normal floats; integers are zeros, the one value every index input accepts (token type
    ids of a 2-row table, attention masks, ids)."""
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(tuple(shape)).astype(dtype)
    return np.zeros(tuple(shape), dtype)


def _other_feeds(model, info, skip: set[str], rng) -> dict[str, np.ndarray]:
    """Random values for graph inputs other than the samples, the same for both sides."""
    feeds = {}
    for inp in model.graph.input:
        if inp.name not in skip and info.value(inp.name) is None:
            feeds[inp.name] = _random(rng, info.shape(inp.name), info.np_dtype(inp.name))
    return feeds


def _used(session: ort.InferenceSession, feeds: dict) -> dict:
    names = {i.name for i in session.get_inputs()}
    return {k: v for k, v in feeds.items() if k in names}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _submodel(
    model: onnx.ModelProto, info: TensorInfo, start: str, outputs: list[str]
) -> onnx.ModelProto:
    """The nodes computing ``outputs`` from tensor ``start`` (made a graph input)."""
    graph = model.graph
    wanted, nodes = set(outputs), []
    for node in reversed(graph.node):
        if any(out in wanted for out in node.output) and start not in node.output:
            nodes.append(node)
            wanted.update(name for name in node.input if name != start)
    nodes.reverse()
    produced = {out for node in nodes for out in node.output}
    inits = [t for t in graph.initializer if t.name in wanted and t.name not in produced]
    inputs = [helper.make_tensor_value_info(start, info.dtype(start), list(info.shape(start)))]
    inputs += [i for i in graph.input if i.name in wanted and i.name != start and i.name not in
               produced and info.value(i.name) is None]  # fmt: skip
    outs = [helper.make_tensor_value_info(o, info.dtype(o), None) for o in outputs]
    sub = helper.make_graph(nodes, "rebatch_check", inputs, outs, inits)
    result = helper.make_model(sub, opset_imports=model.opset_import)
    result.ir_version = model.ir_version
    return result
