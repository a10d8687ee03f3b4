"""Integrated gradients (Sundararajan et al. 2017) and SmoothGrad (Smilkov et al. 2017).

Both run all their samples as one batched forward+backward pass inside the graph.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edgesal.errors import InputError
from edgesal.methods.base import METHODS, MethodContext, method, split_items
from edgesal.options import INTEGRATIONS


def path_points(steps: int, integration: str) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) on [0, 1] with sum(weights) == 1 (Riemann trapezoid or Gauss-Legendre)."""
    if steps < 1:
        raise InputError(f"--steps {steps}: integrated gradients needs at least 1 step")
    if integration == "trapezoid":
        if steps < 2:
            raise InputError("--steps 1: the trapezoid rule needs at least 2 points")
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return alphas, weights
    if integration == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    raise InputError(f"--integration {integration}: choose one of {', '.join(INTEGRATIONS)}")


@method("integrated", "integrated gradients (Sundararajan et al. 2017)")
def integrated(ctx: MethodContext, x: str, copies: int) -> str:
    """A = (x - x') * sum_k w_k dS/dx(x' + a_k (x - x')): a path integral with completeness."""
    b = ctx.b
    shape = ctx.shape(x)
    alphas, weights = path_points(ctx.options.steps, ctx.options.integration)
    steps, rest = len(alphas), list(shape[1:])
    dtype = ctx.dtype(x)
    reference = baseline(ctx, x, copies)
    diff = b.Sub(x, reference)
    along = b.Mul(
        b.const(alphas.reshape([1, steps] + [1] * len(rest)).astype(dtype), hint="alphas"),
        b.Reshape(diff, b.ints([shape[0], 1, *rest])),
    )
    start = b.Reshape(reference, b.ints([-1, 1, *rest]))
    points = b.Reshape(b.Add(start, along), b.ints([shape[0] * steps, *rest]))
    grads = split_items(b, ctx.gradient(points, copies * steps), (shape[0] * steps, *rest), steps)
    weighted = b.Mul(
        grads, b.const(weights.reshape([1, steps] + [1] * len(rest)).astype(dtype), hint="w")
    )
    return b.Mul(diff, b.reduce("ReduceSum", weighted, [1], keepdims=0))


def baseline(ctx: MethodContext, x: str, copies: int = 1) -> str:
    """The IG reference point x': zeros, a blur of x, a constant, or an image file; ``x`` holds
    ``copies`` samples per item (SmoothGrad's noisy copies)."""
    spec = ctx.options.baseline
    shape = ctx.shape(x)
    dtype = ctx.dtype(x)
    item = (1, *shape[1:])
    if ctx.image.modality == "tokens":  # ids decide per position (edgesal/tokens/baseline.py)
        # the tokens modality is edgesal.tokens.export.TokenInput, which sits above this layer
        return ctx.image.reference(ctx.b, spec, ctx.info, x, copies)  # type: ignore[attr-defined]
    if spec == "zeros":
        return ctx.b.const(np.zeros(item, dtype), hint="baseline")
    if spec == "blur":
        return blurred(ctx, x)
    try:
        return ctx.b.const(np.full(item, float(spec), dtype), hint="baseline")
    except ValueError:
        pass
    return ctx.b.const(_image_baseline(ctx, Path(spec), item).astype(dtype), hint="baseline")


def blurred(ctx: MethodContext, x: str, sigma: float | None = None) -> str:
    """Gaussian blur of x in the graph: separable depthwise convs with reflected borders."""
    b = ctx.b
    layout = ctx.image.layout
    shape = ctx.shape(x)
    height, width = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    channels = shape[1] if layout == "NCHW" else shape[3]
    sigma = sigma or max(1.0, min(height, width) / 32.0)
    radius = min(int(np.ceil(3 * sigma)), (min(height, width) - 1))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(ctx.dtype(x))
    nchw = x if layout == "NCHW" else b.Transpose(x, perm=[0, 3, 1, 2])
    padded = b.Pad(nchw, b.ints([0, 0, radius, radius, 0, 0, radius, radius]), mode="reflect")
    rows = np.tile(taps.reshape(1, 1, -1, 1), (channels, 1, 1, 1))
    cols = np.tile(taps.reshape(1, 1, 1, -1), (channels, 1, 1, 1))
    out = b.Conv(padded, b.const(rows, hint="blur_rows"), group=channels)
    out = b.Conv(out, b.const(cols, hint="blur_cols"), group=channels)
    return out if layout == "NCHW" else b.Transpose(out, perm=[0, 2, 3, 1])


def _image_baseline(ctx: MethodContext, path: Path, item: tuple[int, ...]) -> np.ndarray:
    import cv2

    from edgesal.metadata import preprocess
    from edgesal.runtimes.contract import image_tensor

    if not path.is_file():
        raise InputError(f"--baseline {path}: not zeros, blur, a number, or an existing image file")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"--baseline {path}: not a readable image")
    pre = preprocess(ctx.metadata, f"--baseline {path}")
    if pre is None:
        raise InputError(
            f"--baseline {path}: the model has no edgesal preprocess metadata, so the image "
            "cannot be converted to the model's input space"
        )
    size = (item[2], item[3]) if ctx.image.layout == "NCHW" else (item[1], item[2])
    pre = replace(pre, size=size)
    array = image_tensor(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pre)
    if array.shape != item:
        raise InputError(f"--baseline {path}: gives {array.shape}, the input needs {item}")
    return array


@method("smoothgrad", "SmoothGrad: vanilla averaged over noisy copies (Smilkov et al. 2017)")
def smoothgrad(ctx: MethodContext, x: str, copies: int) -> str:
    """A = mean_k dS/dx(x + sigma * range(x) * e_k), e_k ~ N(0, 1) drawn at export time."""
    return smoothed(ctx, "vanilla", x, ctx.options.samples)


def smoothed(ctx: MethodContext, base: str, x: str, samples: int) -> str:
    """Average (or average the squares of) method ``base`` over ``samples`` noisy copies of x."""
    if samples <= 0:
        raise InputError(f"--samples/--smooth {samples}: SmoothGrad needs at least 1 sample")
    if ctx.options.sigma < 0:
        raise InputError(f"--sigma {ctx.options.sigma}: the noise level must be >= 0")
    b = ctx.b
    shape = ctx.shape(x)
    n, rest = shape[0], list(shape[1:])
    dtype = ctx.dtype(x)
    noise = np.random.default_rng(ctx.options.seed).standard_normal((1, samples, *rest))
    axes = list(range(1, len(shape)))
    spread = b.Sub(b.reduce("ReduceMax", x, axes), b.reduce("ReduceMin", x, axes))
    stdev = b.Mul(spread, b.const(np.asarray(ctx.options.sigma, dtype)))
    scaled = b.Mul(
        b.Reshape(stdev, b.ints([n, 1] + [1] * len(rest))),
        b.const(noise.astype(dtype), hint="noise"),
    )
    noisy = b.Add(b.Reshape(x, b.ints([n, 1, *rest])), scaled)
    flat = b.Reshape(noisy, b.ints([n * samples, *rest]))
    each = METHODS[base].build(ctx, flat, samples)  # Grad-CAM maps have one channel
    maps = split_items(b, each, ctx.shape(each), samples)
    if ctx.options.squared:
        maps = b.Mul(maps, maps)
    return b.reduce("ReduceMean", maps, [1], keepdims=0)
