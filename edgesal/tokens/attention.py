"""Attention read from the graph, in the same inference call as the saliency map.

* ``attention`` [N, L, T, T]: each layer's attention probabilities averaged over heads, found as the
  Softmax over the key axis of a [N, H, T, T] score tensor (masked forms included: exporters add
  the mask to the scores before the Softmax, so its output already is the probability).
* ``attention_rollout`` [N, T]: Abnar & Zuidema 2020, "Quantifying Attention Flow in
  Transformers": A^_l = norm_rows(A_l + I) for the residual, R = A^_L ... A^_1, the row of the
  first token (``cls``) or the mean over the (unmasked) queries (``mean``).
* ``attention_gradient`` [N, T]: Chefer, Gur & Wolf 2021, "Generic Attention-model
  Explainability": A~_l = mean_h relu(dS/dA_l * A_l), R = I, R <- R + A~_l R per layer; the same
  row of R - I (relevance that flowed through attention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from edgesal.errors import InputError
from edgesal.export.postprocess import add_output, normalize
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo, attrs

ROLLOUT_FROM = ("cls", "mean")
ATTENTION = "attention"
ROLLOUT = "attention_rollout"
ATTENTION_GRADIENT = "attention_gradient"


@dataclass(frozen=True)
class AttentionLayer:
    """One layer's Softmax node name and its probabilities [N, H, T, T]."""

    node: str
    probs: str
    heads: int


def find_attention(model: onnx.ModelProto, info: TensorInfo, length: int) -> list[AttentionLayer]:
    """Softmax nodes over the last axis of a [N, H, T, T] tensor with T = ``length``, in order."""
    found = []
    for node in model.graph.node:
        if node.op_type != "Softmax" or not info.has(node.output[0]):
            continue
        shape = info.shape(node.output[0])
        axis = int(attrs(node).get("axis", -1))
        if len(shape) == 4 and shape[2] == shape[3] == length and axis in (-1, 3):
            found.append(AttentionLayer(node.name or node.output[0], node.output[0], shape[1]))
    if not found:
        raise InputError(
            f"--attention: no Softmax over the key axis of a [N, H, {length}, {length}] score "
            "tensor in the graph"
        )
    return found


def head_mean(b: Builder, layer: AttentionLayer, n: int, length: int, dtype) -> str:
    """[N, H, T, T] -> [N, 1, T, T], as a product with a row of 1/H: onnxruntime's ReduceMean
    over a middle axis took as long as the rest of the attention outputs together."""
    flat = b.Reshape(layer.probs, b.ints([n, layer.heads, length * length]))
    row = b.const(np.full((1, layer.heads), 1.0 / layer.heads, dtype), hint="head_mean")
    return b.Reshape(b.MatMul(row, flat), b.ints([n, 1, length, length]))


def stacked(b: Builder, means: list[str]) -> str:
    """[N, 1, T, T] per layer -> ``attention`` [N, L, T, T]."""
    return means[0] if len(means) == 1 else b.Concat(*means, axis=1)


def query_weights(b: Builder, how: str, weights: str | None, n: int, length: int, dtype) -> str:
    """The row v [N, 1, 1, T] whose product with a [N, T, T] flow gives the map: the first
    query's one-hot (``cls``) or the mean over queries, unmasked ones only (``mean``; ``weights``
    [N, T] is the float mask or None)."""
    if how not in ROLLOUT_FROM:
        raise InputError(f"--rollout-from {how}: choose one of {', '.join(ROLLOUT_FROM)}")
    if how == "cls":
        return b.const(np.eye(1, length, dtype=dtype).reshape(1, 1, 1, length), hint="first")
    if weights is None:
        return b.const(np.full((1, 1, 1, length), 1.0 / length, dtype), hint="mean")
    count = b.Max(b.reduce("ReduceSum", weights, [1], keepdims=1), b.const(np.ones((), dtype)))
    return b.Reshape(b.Div(weights, count), b.ints([n, 1, 1, length]))


def rollout(b: Builder, stack: str, layers: int, start: str, n: int, length: int, dtype) -> str:
    """Abnar & Zuidema rollout, one row: v R with R = A^_L ... A^_1, A^ = (A + I) / 2 (the head
    mean of a Softmax has rows summing to 1, so this is their row normalization), ``stack`` the
    head means [N, L, T, T] and ``start`` = v [N, 1, 1, T]; [N, T]. Row-vector products from the
    left: L products of [1, T] x [T, T] instead of L - 1 of [T, T] x [T, T]."""
    parts = [stack] if layers == 1 else b.Split(stack, b.ints([1] * layers), axis=1, outputs=layers)
    half = b.const(np.full((), 0.5, dtype), hint="half")
    row = start
    for step in reversed(parts):
        row = b.Mul(b.Add(b.MatMul(row, step), row), half)
    return b.Reshape(row, b.ints([n, length]))


def gradient_rollout(
    b: Builder, probs: list[str], grads: list[str], start: str, n: int, length: int
) -> str:
    """Chefer et al. 2021, one row: v (R - I) with R = (I + A~_L) ... (I + A~_1) (their update
    R <- R + A~_l R from R = I), A~_l = mean_h relu(dS/dA_l * A_l); ``start`` = v [N, 1, 1, T];
    [N, T]."""
    if not probs:  # find_attention refuses a model without attention layers
        raise ValueError("gradient_rollout needs at least one attention layer")
    row = start
    for p, g in reversed(list(zip(probs, grads, strict=True))):
        weighted = b.reduce("ReduceMean", b.Relu(b.Mul(g, p)), [1], keepdims=1)
        row = b.Add(row, b.MatMul(row, weighted))
    return b.Reshape(b.Sub(row, start), b.ints([n, length]))


def add_attention_outputs(
    model: onnx.ModelProto,
    b: Builder,
    layers: list[AttentionLayer],
    grads: dict[str, str],
    weights: str | None,
    rollout_from: str,
    shape: tuple[int, int],
    dtype,
    elem_type: int,
) -> None:
    """Outputs ``attention`` [N, L, T, T], ``attention_rollout`` and ``attention_gradient``
    [N, T] (masked by ``weights`` [N, T] when given, normalized to max 1); ``grads`` maps each
    layer's probabilities to dS/dA, ``shape`` is (N, T)."""
    n, length = shape
    stack = stacked(b, [head_mean(b, layer, n, length, dtype) for layer in layers])
    add_output(model, stack, ATTENTION, (n, len(layers), length, length), elem_type)
    start = query_weights(b, rollout_from, weights, n, length, dtype)
    probs = [layer.probs for layer in layers]
    flows = {
        ROLLOUT: rollout(b, stack, len(layers), start, n, length, dtype),
        ATTENTION_GRADIENT: gradient_rollout(b, probs, [grads[p] for p in probs], start, n, length),
    }
    for output, row in flows.items():
        if weights is not None:
            row = b.Mul(row, weights)
        scaled = normalize(b, row, (n, length), "max", False, dtype)
        add_output(model, scaled, output, (n, length), elem_type)
