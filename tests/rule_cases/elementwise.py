"""Cases for edgesal/autodiff/rules/elementwise.py."""

import numpy as np

from tests.gradcheck import Case, cases


@cases("Add", "Sub", "Mul", "Div")
def binary(rng: np.random.Generator):
    for op in ("Add", "Sub", "Mul", "Div"):
        x = rng.standard_normal((2, 3, 4, 5))
        for shape in [(2, 3, 4, 5), (1, 3, 1, 1), (5,), ()]:
            z = rng.standard_normal(shape) if shape else np.asarray(rng.standard_normal())
            if op == "Div":
                z = np.sign(z) * (np.abs(z) + 0.5)
            yield Case(op, {"x": x, "z": z}, wrt=("x", "z"), id=f"{op}-{shape}")
        yield Case(
            op,
            {"x": rng.standard_normal((3, 1)), "z": rng.standard_normal((1, 4)) + 3},
            wrt=("x", "z"),
            id=f"{op}-outer",
        )


@cases("Neg", "Identity")
def unary(rng: np.random.Generator):
    for op in ("Neg", "Identity"):
        yield Case(op, {"x": rng.standard_normal((2, 3))})


@cases("Sum")
def sum_cases(rng: np.random.Generator):
    yield Case(
        "Sum",
        {
            "x": rng.standard_normal((2, 3)),
            "z": rng.standard_normal((3,)),
            "w": rng.standard_normal((2, 1)),
        },
        wrt=("x", "z", "w"),
    )


@cases("Dropout")
def dropout_cases(rng: np.random.Generator):
    yield Case("Dropout", {"x": rng.standard_normal((2, 3))})


@cases("Cast")
def cast_cases(rng: np.random.Generator):
    yield Case("Cast", {"x": rng.standard_normal((2, 3))}, attrs={"to": 11})
