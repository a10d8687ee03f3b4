"""GELU as exporters write it without a Gelu operator, x * 0.5 * (1 + erf(x / sqrt 2)), as one
composite VJP.

torch.onnx writes ``F.gelu`` as Div, Erf, Add, Mul, Mul; Hugging Face's BERT writes
``x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))`` with the 0.5 on x. The per-operator rules
take ten elementwise passes and a Sum over [N, T, 4D] per layer (the largest non-matrix cost of
a transformer's backward pass); the composite takes seven and reads the forward's own tensors:

    dx = dy * (Phi(x) + x phi(x)) = dy * 0.5 * (a + sqrt(2/pi) * x * exp(-s^2)),
    s = x / sqrt 2, a = 1 + erf(s).
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from edgesal.autodiff.registry import Match, register_composite
from edgesal.graph.builder import Builder
from edgesal.graph.info import TensorInfo

_RELATIVE = 1e-6  # float32 spellings of 0.5, 1, sqrt 2 and 1/sqrt 2


def match_gelu(
    node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], info: TensorInfo
) -> Match | None:
    """The erf GELU ending at ``node``, in the forms Mul(Mul(x, a), 0.5), Mul(Mul(x, 0.5), a)
    and Mul(x, Mul(a, 0.5)) (operands in either order), a = Add(Erf(s), 1), s = Div(x, sqrt 2)
    or Mul(x, 1/sqrt 2); all of x, a and the output one static shape (no broadcasting)."""
    if node.op_type != "Mul" or len(node.input) != 2:
        return None
    for x, shifted, inner in _candidates(node, producers, info):
        found = _erf_plus_one(shifted, producers, info)
        if found is None:
            continue
        scaled, erf_out = found
        if not _is_scaled(scaled, x, producers, info):
            continue
        dims = {info.dims(t) for t in (x, shifted, node.output[0])}
        if len(dims) != 1 or None in dims:
            continue
        return Match(
            (x,), {"x": x, "scaled": scaled, "shifted": shifted},
            (scaled, erf_out, shifted, inner),
        )  # fmt: skip
    return None


def _candidates(node, producers, info):
    """(x, a, inner Mul output) triples the two Mul nodes allow."""
    for p, q in (node.input, reversed(node.input)):
        inner = producers.get(p)
        if inner is None or inner.op_type != "Mul":
            continue
        r1, r2 = inner.input
        if _near(_const(q, info), 0.5):  # Mul(Mul(x, a), 0.5)
            yield r1, r2, p
            yield r2, r1, p
        for r, c in ((r1, r2), (r2, r1)):
            if _near(_const(c, info), 0.5):  # Mul(Mul(x, 0.5), a) or Mul(Mul(a, 0.5), x)
                yield r, q, p
                yield q, r, p


def _erf_plus_one(shifted: str, producers, info) -> tuple[str, str] | None:
    """(s, erf(s)) if ``shifted`` = Add(Erf(s), 1)."""
    add = producers.get(shifted)
    if add is None or add.op_type != "Add":
        return None
    for e, one in (add.input, reversed(add.input)):
        erf = producers.get(e)
        if erf is not None and erf.op_type == "Erf" and _near(_const(one, info), 1.0):
            return erf.input[0], e
    return None


def _is_scaled(scaled: str, x: str, producers, info) -> bool:
    """``scaled`` = Div(x, sqrt 2) or Mul(x, 1/sqrt 2)."""
    node = producers.get(scaled)
    if node is None or x not in node.input:
        return False
    other = node.input[1] if node.input[0] == x else node.input[0]
    if node.op_type == "Div":
        return node.input[0] == x and _near(_const(other, info), math.sqrt(2.0))
    return node.op_type == "Mul" and _near(_const(other, info), 1 / math.sqrt(2.0))


def _const(name: str, info: TensorInfo) -> float | None:
    value = info.value(name)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _near(value: float | None, wanted: float) -> bool:
    return value is not None and abs(value - wanted) <= _RELATIVE * wanted


@register_composite("gelu", match_gelu)
def gelu(b: Builder, info: TensorInfo, dy: str, match: Match) -> list[str]:
    """dx = dy * 0.5 * (a + sqrt(2/pi) * x * exp(-s^2)) from the forward's x, s and a."""
    x, scaled, shifted = (match.tensors[k] for k in ("x", "scaled", "shifted"))
    dtype = info.np_dtype(x)
    tail = b.Div(x, b.Exp(b.Mul(scaled, scaled)))  # x exp(-x^2 / 2)
    slope = b.Add(shifted, b.Mul(tail, b.const(np.asarray(math.sqrt(2 / math.pi), dtype))))
    return [b.Mul(b.Mul(dy, slope), b.const(np.asarray(0.5, dtype)))]
