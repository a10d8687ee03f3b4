"""Pinned tie behaviour of the max rules, checked against torch.autograd on inputs full of ties.

MaxPool and GlobalMaxPool follow torch's max_pool: one winner per window, the first maximum in
scan order; a pixel that wins several overlapping windows gets the sum of their gradients.
ReduceMax/ReduceMin follow torch.amax/amin: the gradient is split evenly among tied maxima.
Both the float64 reference evaluation and the float32 onnxruntime run of the emitted graph are
compared. Also covers geometries that onnx.reference gets wrong (SAME_LOWER, ceil_mode windows
that would start in the padding), which the finite-difference cases cannot use.
"""

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from tests.gradcheck import Case, build_gradient, run_reference


def tied(rng: np.random.Generator, shape, levels: int = 3) -> np.ndarray:
    """Integers from a few levels: most windows hold several equal maxima."""
    return rng.integers(0, levels, size=shape).astype(np.float64)


def edgesal_grads(case: Case, dy: np.ndarray, reference: bool = True) -> list[np.ndarray]:
    """Gradient of <dy, op(x)> from the emitted graph: [float64 reference,] float32 onnxruntime."""
    x = case.inputs["x"]
    grads = []
    if reference:
        grads.append(run_reference(build_gradient(case, "x", [dy]), {"x": x})[-1])
    model = build_gradient(case, "x", [dy], dtype=np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    grads.append(session.run(None, {"x": x.astype(np.float32)})[-1].astype(np.float64))
    return grads


def torch_grad(fn, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    xt = torch.tensor(x, requires_grad=True)
    fn(xt).backward(torch.tensor(dy))
    return xt.grad.numpy()


POOLS = [  # kernel, stride, padding, ceil_mode, spatial shape
    (2, 2, 0, False, (6, 6)),  # windows tile the input: the SpaceToDepth form
    (3, 3, 0, False, (6, 9)),
    (3, 2, 1, False, (7, 8)),  # overlapping: one pixel can win up to four windows
    (3, 1, 1, False, (5, 5)),  # stride 1: one pixel can win up to nine windows
    (3, 2, 0, True, (8, 8)),
    (5, 1, 2, False, (6, 7)),
]


@pytest.mark.parametrize("kernel,stride,pad,ceil,spatial", POOLS)
def test_maxpool_ties_match_torch(kernel, stride, pad, ceil, spatial):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = tied(rng, (2, 3, *spatial))
    expected_fn = lambda t: F.max_pool2d(t, kernel, stride, pad, ceil_mode=ceil)  # noqa: E731
    dy = rng.standard_normal(expected_fn(torch.tensor(x)).shape)
    expected = torch_grad(expected_fn, x, dy)
    attrs = {"kernel_shape": [kernel] * 2, "strides": [stride] * 2, "pads": [pad] * 4}
    case = Case("MaxPool", {"x": x}, attrs={**attrs, "ceil_mode": int(ceil)})
    for got in edgesal_grads(case, dy):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_overlapping_winner_accumulates():
    """A single maximum inside four 3x3/stride-2 windows receives the sum of their gradients."""
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    dy = np.array([[[[1.0, 2.0], [4.0, 8.0]]]])
    case = Case("MaxPool", {"x": x}, attrs={"kernel_shape": [3, 3], "strides": [2, 2]})
    for got in edgesal_grads(case, dy):
        assert got[0, 0, 2, 2] == 15.0
        assert np.count_nonzero(got) == 1


def test_all_equal_window_goes_to_first_in_scan_order():
    x = np.zeros((1, 1, 4, 4))
    dy = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    # Window (i, j) covers rows 2i-1..2i+1 and columns 2j-1..2j+1; its first real pixel wins.
    expected = np.zeros((4, 4))
    expected[:2, :2] = [[1.0, 2.0], [3.0, 4.0]]
    for got in edgesal_grads(Case("MaxPool", {"x": x}, attrs=attrs), dy):
        np.testing.assert_array_equal(got[0, 0], expected)
    np.testing.assert_array_equal(
        torch_grad(lambda t: F.max_pool2d(t, 3, 2, 1), x, dy)[0, 0], expected
    )


def test_maxpool_1d_dilated_ties_match_torch():
    rng = np.random.default_rng(7)
    x = tied(rng, (2, 2, 17))
    dy = rng.standard_normal((2, 2, 8))
    expected = torch_grad(lambda t: F.max_pool1d(t, 3, 2, 1, dilation=2), x, dy)
    attrs = {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "dilations": [2]}
    for got in edgesal_grads(Case("MaxPool", {"x": x}, attrs=attrs), dy):
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("kernel,spatial", [(4, (7, 8)), (3, (8, 6)), (2, (5, 5))])
def test_maxpool_same_lower_matches_torch(kernel, spatial):
    """SAME_LOWER puts the odd padding row in front (onnx.reference miscomputes it)."""
    rng = np.random.default_rng(kernel)
    x = tied(rng, (1, 2, *spatial))
    pads = []
    for n in spatial:
        total = max(0, (-(-n // 2) - 1) * 2 + kernel - n)
        pads.append((total - total // 2, total // 2))
    padding = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])

    def expected_fn(t):
        return F.max_pool2d(F.pad(t, padding, value=-np.inf), kernel, 2)

    dy = rng.standard_normal(expected_fn(torch.tensor(x)).shape)
    expected = torch_grad(expected_fn, x, dy)
    attrs = {"kernel_shape": [kernel] * 2, "strides": [2, 2], "auto_pad": "SAME_LOWER"}
    for got in edgesal_grads(Case("MaxPool", {"x": x}, attrs=attrs), dy, reference=False):
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 9)])
def test_global_max_pool_ties_match_torch(shape):
    rng = np.random.default_rng(len(shape))
    x = tied(rng, shape, levels=2)
    spatial = shape[2:]
    dy = rng.standard_normal(shape[:2] + (1,) * len(spatial))
    pool = F.max_pool2d if len(spatial) == 2 else F.max_pool1d
    expected = torch_grad(lambda t: pool(t, spatial), x, dy)
    # onnx.reference mis-shapes GlobalMaxPool on 3-D inputs, so only onnxruntime runs those.
    for got in edgesal_grads(Case("GlobalMaxPool", {"x": x}), dy, reference=len(shape) == 4):
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([2, 3], 0), ([-1], 0)])
def test_reduce_max_min_split_ties_like_amax(op, axes, keepdims):
    rng = np.random.default_rng(len(axes) + keepdims)
    x = tied(rng, (2, 3, 4, 5))
    reducer = torch.amax if op == "ReduceMax" else torch.amin
    fn = lambda t: reducer(t, dim=axes, keepdim=bool(keepdims))  # noqa: E731
    dy = rng.standard_normal(fn(torch.tensor(x)).shape)
    expected = torch_grad(fn, x, dy)
    case = Case(op, {"x": x}, attrs={"axes": axes, "keepdims": keepdims}, opset=17)
    for got in edgesal_grads(case, dy):
        np.testing.assert_allclose(got, expected, atol=1e-5)
