"""Cases for edgesal/autodiff/rules/pooling.py (MaxPool inputs have distinct values: no ties)."""

import numpy as np

from tests.gradcheck import Case, cases


def distinct(rng: np.random.Generator, shape) -> np.ndarray:
    """Values spaced 0.1 apart in random order: no ties, so max is differentiable at the point."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) - size / 2) * 0.1


# (kernel, strides, extra attributes, spatial shape); every window starts inside the input.
WINDOWS = [
    ([2, 2], [2, 2], {}, (6, 8)),
    ([3, 3], [2, 2], {"pads": [1, 1, 1, 1]}, (7, 8)),
    ([3, 3], [1, 1], {"pads": [1, 1, 1, 1]}, (5, 6)),
    ([5, 5], [1, 1], {"pads": [2, 2, 2, 2]}, (6, 5)),
    ([3, 3], [2, 2], {"ceil_mode": 1}, (8, 7)),
    ([3, 2], [2, 3], {"pads": [1, 0, 1, 1]}, (7, 9)),
    ([2, 2], [3, 3], {}, (8, 7)),
    ([3, 3], [2, 2], {"auto_pad": "SAME_UPPER"}, (8, 7)),
    ([3, 3], [2, 2], {"auto_pad": "VALID"}, (7, 8)),
    ([3], [2], {"pads": [1, 1]}, (11,)),
    ([2, 2, 2], [2, 2, 2], {}, (4, 5, 4)),
]


@cases("MaxPool")
def max_pool(rng: np.random.Generator):
    for i, (kernel, strides, extra, spatial) in enumerate(WINDOWS):
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), *spatial)
        attrs = {"kernel_shape": kernel, "strides": strides, **extra}
        yield Case("MaxPool", {"x": distinct(rng, shape)}, attrs=attrs, id=f"w{i}")
    dilated = {"kernel_shape": [3, 3], "strides": [1, 2], "dilations": [2, 2], "pads": [2, 1, 2, 1]}
    yield Case("MaxPool", {"x": distinct(rng, (1, 2, 9, 8))}, attrs=dilated, id="dilated")
    ceil_dilated = {"kernel_shape": [2, 3], "strides": [2, 2], "dilations": [1, 2], "ceil_mode": 1}
    yield Case("MaxPool", {"x": distinct(rng, (1, 2, 8, 9))}, attrs=ceil_dilated, id="ceil-dilated")
    two_outputs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    yield Case(
        "MaxPool", {"x": distinct(rng, (1, 2, 6, 6))}, attrs=two_outputs, n_outputs=2, id="indices"
    )
    yield Case(
        "MaxPool", {"x": distinct(rng, (1, 3, 7, 7))}, attrs=two_outputs, opset=13, id="opset13"
    )


@cases("AveragePool")
def average_pool(rng: np.random.Generator):
    for i, (kernel, strides, extra, spatial) in enumerate(WINDOWS):
        for include in (0, 1):
            shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), *spatial)
            attrs = {"kernel_shape": kernel, "strides": strides, "count_include_pad": include}
            yield Case(
                "AveragePool",
                {"x": rng.standard_normal(shape)},
                attrs={**attrs, **extra},
                id=f"w{i}-cip{include}",
            )
    for include in (0, 1):
        attrs = {
            "kernel_shape": [3, 3],
            "strides": [2, 2],
            "dilations": [2, 1],
            "pads": [1, 1, 2, 1],
            "ceil_mode": 1,
            "count_include_pad": include,
        }
        yield Case(
            "AveragePool",
            {"x": rng.standard_normal((1, 2, 9, 8))},
            attrs=attrs,
            opset=19,
            id=f"dilated-ceil-cip{include}",
        )


@cases("LpPool")
def lp_pool(rng: np.random.Generator):
    for p in (1, 2, 3):
        attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "p": p}
        yield Case("LpPool", {"x": rng.standard_normal((1, 2, 7, 6))}, attrs=attrs, id=f"p{p}")
    attrs = {"kernel_shape": [3, 2], "pads": [1, 0, 1, 1], "p": 2}
    yield Case("LpPool", {"x": rng.standard_normal((2, 3, 5, 6))}, attrs=attrs, id="stride1")


@cases("GlobalAveragePool", "GlobalMaxPool")
def global_pools(rng: np.random.Generator):
    for shape in [(2, 3, 5, 4), (1, 4, 7), (1, 2, 3, 2, 4)]:
        yield Case("GlobalAveragePool", {"x": rng.standard_normal(shape)}, id=f"{len(shape)}d")
    # onnx.reference's GlobalMaxPool mis-shapes non-4-D inputs; 3-D is checked against torch in
    # tests/test_maxpool_ties.py.
    for shape in [(2, 3, 5, 4), (1, 5, 1, 9)]:
        yield Case("GlobalMaxPool", {"x": distinct(rng, shape)}, id=f"{shape}")


def _random_window(rng: np.random.Generator) -> tuple[dict, tuple[int, ...]]:
    """Drawn pooling geometry (overlapping or not) and an input shape that fits the window."""
    kernel = [int(k) for k in rng.integers(1, 5, 2)]
    strides = [int(s) for s in rng.integers(1, 4, 2)]
    attrs: dict = {"kernel_shape": kernel, "strides": strides}
    mode = rng.choice(["explicit", "SAME_UPPER", "VALID", "ceil"])
    if mode == "explicit":
        attrs["pads"] = [int(rng.integers(0, k)) for k in kernel + kernel]
    else:
        if mode == "ceil":
            attrs["ceil_mode"] = 1
        else:
            attrs["auto_pad"] = str(mode)
        # a stride above the kernel lets a ceil-mode window start past the input (onnxruntime and
        # PyTorch drop it, ONNX shape inference keeps it: edgesal refuses that node) and makes
        # onnx.reference pad SAME by a negative amount
        attrs["strides"] = strides = [min(s, k) for s, k in zip(strides, kernel, strict=True)]
    spatial = [int(k + rng.integers(0, 2 * s + 3)) for k, s in zip(kernel, strides, strict=True)]
    return attrs, (int(rng.integers(1, 3)), int(rng.integers(1, 4)), *spatial)


@cases("MaxPool")
def max_pool_random_geometry(rng: np.random.Generator):
    for i in range(10):
        attrs, shape = _random_window(rng)
        yield Case("MaxPool", {"x": distinct(rng, shape)}, attrs=attrs, id=f"drawn{i}-{attrs}")


@cases("AveragePool")
def average_pool_random_geometry(rng: np.random.Generator):
    for i in range(10):
        attrs, shape = _random_window(rng)
        attrs["count_include_pad"] = int(rng.integers(2))
        yield Case("AveragePool", {"x": rng.standard_normal(shape)}, attrs=attrs, id=f"drawn{i}")
