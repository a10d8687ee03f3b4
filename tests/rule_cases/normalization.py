"""Cases for edgesal/autodiff/rules/normalization.py."""

import numpy as np

from tests.gradcheck import Case, cases


def _batch_norm_inputs(rng: np.random.Generator, shape: tuple) -> dict:
    c = shape[1]
    return {
        "x": rng.standard_normal(shape),
        "scale": rng.standard_normal(c),
        "bias": rng.standard_normal(c),
        "mean": rng.standard_normal(c),
        "var": rng.uniform(0.2, 2.0, size=c),
    }


@cases("BatchNormalization")
def batch_norm_cases(rng: np.random.Generator):
    params = ("scale", "bias", "mean", "var")
    for shape in [(2, 3, 4, 5), (4, 6), (1, 2, 3, 2, 2)]:
        inputs = _batch_norm_inputs(rng, shape)
        eps = float(rng.choice([1e-5, 1e-3]))
        yield Case(
            "BatchNormalization",
            inputs,
            attrs={"epsilon": eps},
            constants=params,
            id=f"{shape}-constant",
        )
    inputs = _batch_norm_inputs(rng, (2, 3, 4, 4))
    yield Case("BatchNormalization", inputs, id="parameters-as-graph-inputs")


@cases("InstanceNormalization")
def instance_norm_cases(rng: np.random.Generator):
    for shape in [(2, 3, 4, 5), (3, 2, 6), (1, 2, 2, 3, 2)]:
        c = shape[1]
        inputs = {
            "x": rng.standard_normal(shape),
            "scale": rng.standard_normal(c),
            "bias": rng.standard_normal(c),
        }
        eps = float(rng.choice([1e-5, 1e-2]))
        yield Case(
            "InstanceNormalization",
            inputs,
            attrs={"epsilon": eps},
            constants=("scale", "bias"),
            id=f"{shape}",
        )
        yield Case(
            "InstanceNormalization",
            inputs,
            attrs={"epsilon": eps},
            wrt=("x", "scale", "bias"),
            id=f"{shape}-all-inputs",
        )


@cases("LayerNormalization")
def layer_norm_cases(rng: np.random.Generator):
    shape = (2, 3, 4, 5)
    x = rng.standard_normal(shape)
    for axis in (-1, 1, 2, -3):
        normalized = shape[axis:]
        inputs = {
            "x": x,
            "scale": rng.standard_normal(normalized),
            "bias": rng.standard_normal(normalized),
        }
        eps = float(rng.choice([1e-5, 1e-2]))
        attrs = {"axis": axis, "epsilon": eps}
        yield Case(
            "LayerNormalization",
            inputs,
            attrs=attrs,
            constants=("scale", "bias"),
            id=f"axis={axis}",
        )
        yield Case(
            "LayerNormalization",
            inputs,
            attrs=attrs,
            wrt=("x", "scale", "bias"),
            id=f"axis={axis}-all-inputs",
        )
    broadcast_scale = {"x": x, "scale": rng.standard_normal(5)}
    yield Case(
        "LayerNormalization",
        broadcast_scale,
        attrs={"axis": 2},
        wrt=("x", "scale"),
        id="broadcast-scale-no-bias",
    )
