"""Reverse-mode autodiff over an ONNX graph, emitting the backward pass as forward operators.

Only the gradient with respect to one tensor (the image) is built, and only along the nodes that
lie on a path from that tensor to the seeded outputs; weight gradients are never built.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

import edgesal.autodiff.rules  # noqa: F401  (fills the registry)
from edgesal.autodiff.registry import COMPOSITES, RULES, Composite, GradContext, Match, unbroadcast
from edgesal.errors import InputError, UnsupportedOpError
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo

_NON_DIFFERENTIABLE = onnx.defs.OpSchema.DifferentiationCategory.NonDifferentiable


def input_gradient(
    graph: onnx.GraphProto,
    info: TensorInfo,
    b: Builder,
    seeds: dict[str, str],
    wrt: str,
    mode: str = "vanilla",
    options: dict | None = None,
    record: dict[str, str | None] | None = None,
) -> str:
    """d(sum_t <seed_t, t>)/d(wrt): appends the backward nodes through ``b``, returns its name.

    ``seeds`` maps a forward tensor to the tensor holding the cotangent fed into it. ``record``
    names intermediate tensors whose gradient the same pass should also hand back (filled in
    place; None where the target does not depend on one), e.g. attention probabilities.
    """
    active = active_tensors(graph, set(seeds), wrt, b.opset)
    nodes = _path_nodes(graph, active)
    missing = [(n.op_type, _node_label(n)) for n in nodes if n.op_type not in RULES]
    if missing:
        raise UnsupportedOpError(missing, sorted(RULES))
    grads: dict[str, list[str]] = defaultdict(list)
    for tensor, seed in seeds.items():
        grads[tensor].append(seed)
    composites = _composite_matches(graph, nodes, info, active, set(record or ()))
    for node in reversed(nodes):
        dy = [_summed(b, grads.pop(out, [])) for out in node.output]
        if record is not None:
            record.update((o, g) for o, g in zip(node.output, dy, strict=True) if o in record)
        if all(g is None for g in dy):
            continue
        fused = composites.get(node.output[0])
        if fused is not None and dy[0] is not None:
            composite, match = fused
            b.scope = f"{node.name or node.op_type}/{composite.name}/"
            for name, term in zip(match.inputs, composite.fn(b, info, dy[0], match), strict=True):
                grads[name].append(term)
            b.scope = ""
            continue
        needs = [
            name in active and _differentiable(node, i, b.opset)
            for i, name in enumerate(node.input)
        ]
        rule = RULES[node.op_type]
        ctx = GradContext(node, b, info, dy, needs, mode, options or {})
        b.scope = f"{node.name or node.op_type}/"
        dx = list(rule.fn(ctx))
        b.scope = ""
        if len(dx) > len(node.input):
            raise RuntimeError(f"rule for {node.op_type} returned {len(dx)} gradients")
        for i, grad in enumerate(dx):
            if grad is None or not needs[i]:
                continue
            if rule.broadcasting:
                grad = unbroadcast(b, info, grad, info.shape(node.output[0]), node.input[i])
            grads[node.input[i]].append(grad)
    result = _summed(b, grads.get(wrt, []))
    if result is None:
        raise InputError(f"the target does not depend on '{wrt}' through differentiable operators")
    return result


def _composite_matches(
    graph: onnx.GraphProto,
    nodes: list[onnx.NodeProto],
    info: TensorInfo,
    active: set[str],
    recorded: set[str],
) -> dict[str, tuple[Composite, Match]]:
    """Subgraphs a composite rule takes over, keyed by their last node's output; none whose
    interior holds a tensor the caller records (its gradient would never be formed)."""
    producers = {out: node for node in graph.node for out in node.output}
    found = {}
    for node in nodes:
        for composite in COMPOSITES.values():
            match = composite.match(node, producers, info)
            if (
                match is not None
                and all(name in active for name in match.inputs)
                and not recorded & set(match.interior)
            ):
                found[node.output[0]] = (composite, match)
                break
    return found


def _node_label(node: onnx.NodeProto) -> str:
    return node.name or f"unnamed, output {node.output[0]}"


def _summed(b: Builder, terms: list[str]) -> str | None:
    if not terms:
        return None
    if len(terms) == 1:
        return terms[0]
    return b.Sum(*terms)


def _differentiable(node: onnx.NodeProto, index: int, opset: int) -> bool:
    """False only where the operator schema marks input ``index`` as non-differentiable."""
    if node.domain not in ("", "ai.onnx"):
        return True
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return True
    formals = schema.inputs
    if not formals:
        return True
    formal = formals[min(index, len(formals) - 1)]
    return formal.differentiation_category != _NON_DIFFERENTIABLE


def active_tensors(graph: onnx.GraphProto, seeds: set[str], wrt: str, opset: int) -> set[str]:
    """Tensors that depend on ``wrt`` and that a seed depends on through differentiable inputs."""
    forward = {wrt}
    for node in graph.node:
        if any(name in forward for name in node.input):
            forward.update(node.output)
    backward = set(seeds)
    for node in reversed(graph.node):
        if any(out in backward for out in node.output):
            backward.update(
                name
                for i, name in enumerate(node.input)
                if name and _differentiable(node, i, opset)
            )
    return forward & backward


def _path_nodes(graph: onnx.GraphProto, active: set[str]) -> list[onnx.NodeProto]:
    """Nodes, in forward order, whose outputs lie on a differentiable path (``active``)."""
    return [
        n
        for n in graph.node
        if any(out in active for out in n.output) and any(name in active for name in n.input)
    ]
