"""Cases for edgesal/autodiff/rules/linear.py."""

import numpy as np

from tests.gradcheck import Case, cases


@cases("Gemm")
def gemm_cases(rng: np.random.Generator):
    m, k, n = (int(d) for d in rng.integers(1, 6, size=3))
    for trans_a in (0, 1):
        for trans_b in (0, 1):
            a = rng.standard_normal((k, m) if trans_a else (m, k))
            b = rng.standard_normal((n, k) if trans_b else (k, n))
            attrs = {
                "transA": trans_a,
                "transB": trans_b,
                "alpha": float(rng.uniform(-2, 2)),
                "beta": float(rng.uniform(-2, 2)),
            }
            yield Case(
                "Gemm",
                {"a": a, "b": b, "c": rng.standard_normal((m, n))},
                attrs=attrs,
                wrt=("a", "b", "c"),
                id=f"tA={trans_a}-tB={trans_b}",
            )
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    for label, c_shape in [("N", (n,)), ("1xN", (1, n)), ("Mx1", (m, 1)), ("0d", ()), ("1", (1,))]:
        c = np.asarray(rng.standard_normal(c_shape))
        yield Case("Gemm", {"a": a, "b": b, "c": c}, wrt=("a", "b", "c"), id=f"C-{label}")
    yield Case(
        "Gemm",
        {"a": a, "b": b, "c": rng.standard_normal(n)},
        attrs={"beta": 1.0},
        constants=("b", "c"),
        wrt=("a",),
        id="weights-constant",
    )
    yield Case("Gemm", {"a": a, "b": b}, wrt=("a", "b"), id="no-C")


@cases("MatMul")
def matmul_cases(rng: np.random.Generator):
    m, k, n = (int(d) for d in rng.integers(2, 5, size=3))
    shapes = [
        ((m, k), (k, n)),
        ((2, 3, m, k), (k, n)),
        ((m, k), (2, k, n)),
        ((2, 1, m, k), (3, k, n)),
        ((1, m, k), (2, 3, k, n)),
        ((k,), (k, n)),
        ((m, k), (k,)),
        ((k,), (k,)),
        ((k,), (2, k, n)),
        ((2, 3, m, k), (k,)),
    ]
    for a_shape, b_shape in shapes:
        inputs = {"a": rng.standard_normal(a_shape), "b": rng.standard_normal(b_shape)}
        yield Case("MatMul", inputs, wrt=("a", "b"), id=f"{a_shape}@{b_shape}")
    inputs = {"a": rng.standard_normal((2, m, k)), "b": rng.standard_normal((k, n))}
    yield Case("MatMul", inputs, constants=("b",), wrt=("a",), id="constant-weight")
