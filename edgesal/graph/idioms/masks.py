"""0/1 activation masks: ``Cast(And(Greater(v, a), Less(v, b)), to=float)`` = 1[a < v < b].

The gradient rules write every activation mask in this portable form (one comparison alone when
one bound is open): ``Mul(dy, mask)`` is ~15x faster on onnxruntime than ``Where(cond, dy, 0)``
(``edgesal/autodiff/rules/activation.py``). Three places act on it, all from here:

- :func:`emit` writes it (the rules);
- :func:`interval` recognizes it on an ONNX graph by structure, for the TFLite lowering, which
  replaces the boolean kernels by float XNNPACK ones (``converters/tflite/ops/masks.py``);
- ``edgesal.runtimes.backends.onnx_masks.nchwc_masks`` recognizes it on the protobuf wire and
  rewrites it as HardSigmoids that onnxruntime's x86 CPU kernels keep in their blocked layout.
  It lives in the runtimes layer, which may import neither ``onnx`` nor this package (and
  importing it here would load the device runtime with every gradient rule).

tests/test_rule_forms.py runs every rule's emitted graph through both rewrites.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from edgesal.graph.builder import Builder


def emit(b: Builder, v: str, above: str | None, below: str | None, to: int) -> str | None:
    """Cast(And(Greater(v, above), Less(v, below)), to): 1 where above < v < below, else 0.

    A bound of None leaves that side open (one comparison, no And); None when both are.
    """
    conds = []
    if above is not None:
        conds.append(b.Greater(v, above))
    if below is not None:
        conds.append(b.Less(v, below))
    if not conds:
        return None
    cond = conds[0] if len(conds) == 1 else b.And(*conds)
    return b.Cast(cond, to=to)


def interval(
    name: str,
    producer: Callable[[str], onnx.NodeProto | None],
    value: Callable[[str], np.ndarray | None],
) -> tuple[str, float, float] | None:
    """(v, a, b) when boolean ``name`` is a < v < b built by Greater/Less(v, constant scalar) and
    And of two such on the same v (an open side is -inf or inf); None otherwise."""
    node = producer(name)
    if node is None or node.domain:
        return None
    if node.op_type == "And":
        left = interval(node.input[0], producer, value)
        right = interval(node.input[1], producer, value)
        if left is None or right is None or left[0] != right[0]:
            return None
        return left[0], max(left[1], right[1]), min(left[2], right[2])
    if node.op_type not in ("Greater", "Less") or len(node.input) != 2:
        return None
    v, bound = node.input
    constant = value(bound)
    if constant is None or np.asarray(constant).size != 1:
        return None
    c = float(np.asarray(constant).ravel()[0])
    return (v, c, np.inf) if node.op_type == "Greater" else (v, -np.inf, c)
