"""Cases for edgesal/autodiff/rules/activation.py.

Finite differences are meaningless at a kink, so inputs are pushed at least 0.05 away from every
non-smooth point (the step is 1e-6); the kinks themselves are pinned in tests/test_kinks.py.
"""

import numpy as np

from tests.gradcheck import Case, cases

GAP = 0.05


def away(x: np.ndarray, *points: float) -> np.ndarray:
    """``x`` with every value closer than GAP to one of ``points`` moved 2*GAP upwards."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        near = np.abs(x - p) < GAP
        x[near] += 2 * GAP
    return x


def random_shape(rng: np.random.Generator, min_rank: int = 1, max_rank: int = 4) -> tuple:
    rank = int(rng.integers(min_rank, max_rank + 1))
    return tuple(int(d) for d in rng.integers(1, 5, size=rank))


@cases("Relu")
def relu_cases(rng: np.random.Generator):
    for i in range(3):
        yield Case("Relu", {"x": away(2 * rng.standard_normal(random_shape(rng)), 0)}, id=str(i))


@cases("Clip")
def clip_cases(rng: np.random.Generator):
    x = away(4 * rng.standard_normal((2, 3, 4, 4)), 0, 6)
    relu6 = {"x": x, "lo": np.asarray(0.0), "hi": np.asarray(6.0)}
    yield Case("Clip", relu6, constants=("lo", "hi"), id="relu6")
    yield Case("Clip", relu6, id="bounds-as-graph-inputs")
    lo, hi = sorted(rng.uniform(-2, 2, size=2))
    bounded = {"x": away(2 * rng.standard_normal((3, 5)), lo, hi)}
    yield Case(
        "Clip",
        dict(bounded, lo=np.asarray(lo), hi=np.asarray(hi)),
        constants=("lo", "hi"),
        id="random-bounds",
    )
    yield Case("Clip", dict(bounded, lo=np.asarray(lo)), constants=("lo",), id="min-only")
    yield Case(
        "Clip", dict(bounded, lo=None, hi=np.asarray(hi)), constants=("hi",), id="max-omitted-min"
    )
    yield Case("Clip", {"x": bounded["x"]}, id="no-bounds")
    yield Case(
        "Clip",
        {"x": bounded["x"]},
        attrs={"min": float(lo), "max": float(hi)},
        opset=10,
        id="opset10-attributes",
    )


@cases("LeakyRelu")
def leaky_relu_cases(rng: np.random.Generator):
    for alpha in (0.01, float(rng.uniform(0.05, 0.5)), 0.0, -0.5):
        x = away(rng.standard_normal(random_shape(rng)), 0)
        yield Case("LeakyRelu", {"x": x}, attrs={"alpha": alpha}, id=f"alpha={alpha:.3g}")


@cases("PRelu")
def prelu_cases(rng: np.random.Generator):
    x = away(rng.standard_normal((2, 3, 4, 5)), 0)
    for shape in [(3, 1, 1), (1,), (5,), (2, 3, 4, 5)]:
        slope = rng.uniform(-0.5, 0.5, size=shape)
        yield Case("PRelu", {"x": x, "slope": slope}, constants=("slope",), id=f"const{shape}")
        yield Case("PRelu", {"x": x, "slope": slope}, wrt=("x", "slope"), id=f"input{shape}")


@cases("HardSwish")
def hard_swish_cases(rng: np.random.Generator):
    yield Case("HardSwish", {"x": away(3 * rng.standard_normal((2, 4, 6)), -3, 3)})


@cases("HardSigmoid")
def hard_sigmoid_cases(rng: np.random.Generator):
    for alpha, beta in [(0.2, 0.5), (1 / 6, 0.5), (float(rng.uniform(0.1, 1)), 0.3), (-0.3, 0.4)]:
        x = away(3 * rng.standard_normal((3, 7)), -beta / alpha, (1 - beta) / alpha)
        yield Case("HardSigmoid", {"x": x}, attrs={"alpha": alpha, "beta": beta}, id=f"{alpha:.3g}")


@cases("Sigmoid", "Tanh", "Softplus", "Exp")
def smooth_cases(rng: np.random.Generator):
    for op in ("Sigmoid", "Tanh", "Softplus", "Exp"):
        yield Case(op, {"x": 2 * rng.standard_normal(random_shape(rng))})


@cases("Erf")
def erf_cases(rng: np.random.Generator):
    # onnx.reference evaluates Erf in float32 even for float64 input (np.vectorize with
    # otypes="f"), so these finite differences carry 1-4% noise; tests/test_kinks.py checks Erf'
    # against torch to 1e-12.
    yield Case("Erf", {"x": rng.standard_normal(random_shape(rng))}, tol=0.1)


@cases("Softmax", "LogSoftmax")
def softmax_cases(rng: np.random.Generator):
    for op in ("Softmax", "LogSoftmax"):
        x = 2 * rng.standard_normal((2, 3, 4))
        yield Case(op, {"x": x}, id="default-axis")
        for axis in (0, 1, -2):
            yield Case(op, {"x": x}, attrs={"axis": axis}, id=f"axis={axis}")


@cases("Elu", "Selu")
def exponential_linear_cases(rng: np.random.Generator):
    x = away(2 * rng.standard_normal((3, 4, 5)), 0)
    yield Case("Elu", {"x": x}, id="alpha=1")
    yield Case("Elu", {"x": x}, attrs={"alpha": 0.4}, id="alpha=0.4")
    yield Case("Selu", {"x": x}, id="default")
    yield Case("Selu", {"x": x}, attrs={"alpha": 1.2, "gamma": 0.7}, id="custom")


@cases("Log", "Sqrt", "Reciprocal", "Abs")
def positive_domain_cases(rng: np.random.Generator):
    positive = np.abs(rng.standard_normal((3, 4))) + 0.5
    yield Case("Log", {"x": positive})
    yield Case("Sqrt", {"x": positive})
    signed = away(rng.standard_normal((3, 4)), 0)
    signed[np.abs(signed) < 0.3] += 0.6
    yield Case("Reciprocal", {"x": signed})
    yield Case("Abs", {"x": away(rng.standard_normal((3, 4)), 0)})


@cases("Pow")
def pow_cases(rng: np.random.Generator):
    x = rng.standard_normal((2, 3, 4))
    positive = np.abs(x) + 0.5
    for p in (2.0, 3.0, 1.0):
        yield Case("Pow", {"x": x, "p": np.asarray(p)}, constants=("p",), id=f"p={p}")
    yield Case("Pow", {"x": x, "p": np.asarray(3, dtype=np.int64)}, id="int-exponent")
    for p in (0.5, -1.5):
        yield Case("Pow", {"x": positive, "p": np.asarray(p)}, constants=("p",), id=f"p={p}")
    yield Case(
        "Pow",
        {"x": positive, "p": rng.uniform(-1, 2, size=(3, 1))},
        constants=("p",),
        id="broadcast-exponent",
    )
    yield Case(
        "Pow",
        {"x": positive, "p": rng.uniform(-1, 2, size=(4,))},
        wrt=("x", "p"),
        id="exponent-as-input",
    )
