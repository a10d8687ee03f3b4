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


def rollout(b: Builder, stack: str, layers: int, n: int, length: int, dtype) -> str:
    """Abnar & Zuidema rollout R = A^_L ... A^_1 with A^ = norm_rows(A + I), from the stacked
    head means ``stack`` [N, L, T, T]; [N, T, T]. The residual and row normalization run once on
    the whole stack (few nodes: per-node overhead is most of this cost)."""
    residual = b.Add(stack, b.const(np.eye(length, dtype=dtype), hint="eye"))
    steps = b.Div(residual, b.reduce("ReduceSum", residual, [3], keepdims=1))
    if layers == 1:
        parts = [steps]
    else:
        parts = b.Split(steps, b.ints([1] * layers), axis=1, outputs=layers)
    result = parts[0]
    for step in parts[1:]:
        result = b.MatMul(step, result)
    return b.Reshape(result, b.ints([n, length, length]))


def gradient_rollout(
    b: Builder, probs: list[str], grads: list[str], n: int, length: int, dtype
) -> str:
    """Chefer et al. 2021: R = I; R <- R + mean_h(relu(G * A)) R over layers; returns R - I."""
    eye = b.const(np.eye(length, dtype=dtype), hint="eye")
    result = None
    for p, g in zip(probs, grads, strict=True):
        weighted = b.reduce("ReduceMean", b.Relu(b.Mul(g, p)), [1], keepdims=0)
        result = (
            weighted if result is None else b.Add(result, b.MatMul(weighted, b.Add(result, eye)))
        )
    if result is None:  # find_attention refuses a model without attention layers
        raise ValueError("gradient_rollout needs at least one attention layer")
    return result


def query_row(
    b: Builder, matrix: str, how: str, weights: str | None, n: int, length: int, dtype
) -> str:
    """[N, T, T] -> [N, T]: the first query's row (``cls``) or the mean of the rows of unmasked
    queries (``mean``; ``weights`` [N, T] is the float mask or None)."""
    if how not in ROLLOUT_FROM:
        raise InputError(f"--rollout-from {how}: choose one of {', '.join(ROLLOUT_FROM)}")
    if how == "cls":
        row = b.Slice(matrix, b.ints([0]), b.ints([1]), b.ints([1]))
        return b.Reshape(row, b.ints([n, length]))
    if weights is None:
        return b.reduce("ReduceMean", matrix, [1], keepdims=0)
    column = b.Unsqueeze(weights, b.ints([2]))
    total = b.reduce("ReduceSum", b.Mul(matrix, column), [1], keepdims=0)
    count = b.reduce("ReduceSum", weights, [1], keepdims=1)
    return b.Div(total, b.Max(count, b.const(np.ones((), dtype))))
