"""Cases for edgesal/autodiff/rules/conv.py: every strategy, pad mode and remainder geometry.

onnx.reference evaluates a grouped ConvTranspose wrongly when a group has more than one output
channel, so the finite-difference cases avoid emitting or differentiating one; those
configurations are checked against torch.autograd in tests/test_conv_rule_torch.py.
"""

import numpy as np

from tests.gradcheck import Case, cases


def _conv(rng, op, x_shape, w_shape, const=True, **attrs) -> Case:
    label = ",".join(f"{k}={v}" for k, v in attrs.items())
    return Case(
        op,
        {"x": rng.standard_normal(x_shape), "w": rng.standard_normal(w_shape)},
        attrs=attrs,
        constants=("w",) if const else (),
        id=f"x{list(x_shape)}-w{list(w_shape)}-{label}" + ("" if const else "-runtime_w"),
    )


@cases("Conv")
def conv_stride_one(rng: np.random.Generator):
    """Stride 1: the flipped Conv, incl. pads larger than the kernel span (dy is cropped)."""
    yield _conv(rng, "Conv", (2, 2, 7, 8), (3, 2, 3, 3), pads=[1, 1, 1, 1])
    yield _conv(rng, "Conv", (1, 2, 6, 7), (3, 2, 3, 2), pads=[0, 1, 2, 0], dilations=[2, 1])
    yield _conv(rng, "Conv", (1, 4, 5, 6), (6, 2, 3, 3), group=2, pads=[3, 1, 0, 2])
    yield _conv(rng, "Conv", (1, 3, 6, 5), (6, 1, 2, 2), group=3, auto_pad="SAME_UPPER")
    yield _conv(rng, "Conv", (1, 3, 6, 5), (3, 1, 4, 3), group=3, auto_pad="SAME_LOWER")
    yield _conv(rng, "Conv", (1, 3, 5, 5), (2, 3, 1, 1), kernel_shape=[1, 1])
    yield _conv(rng, "Conv", (1, 2, 6, 6), (2, 2, 3, 3), const=False, pads=[1, 1, 1, 1])
    yield Case(
        "Conv",
        {
            "x": rng.standard_normal((1, 2, 5, 5)),
            "w": rng.standard_normal((3, 2, 3, 3)),
            "b": rng.standard_normal(3),
        },
        attrs={"pads": [1, 1, 1, 1]},
        constants=("w", "b"),
        id="with-bias",
    )


@cases("Conv")
def conv_strided_depthwise(rng: np.random.Generator):
    """Strided depthwise (zero insertion): odd and even sizes, TF-style and SAME pads."""
    yield _conv(rng, "Conv", (1, 3, 9, 8), (3, 1, 5, 5), group=3, strides=[2, 2], pads=[2] * 4)
    yield _conv(rng, "Conv", (1, 2, 8, 8), (2, 1, 3, 3), group=2, strides=[2, 2], pads=[0, 0, 1, 1])
    yield _conv(rng, "Conv", (1, 2, 11, 7), (2, 1, 3, 3), group=2, strides=[3, 2], dilations=[2, 1])
    yield _conv(
        rng, "Conv", (1, 2, 7, 9), (2, 1, 4, 3), group=2, strides=[2, 3], auto_pad="SAME_LOWER"
    )
    yield _conv(rng, "Conv", (1, 2, 7, 6), (2, 1, 3, 3), group=2, strides=[2, 1], auto_pad="VALID")
    yield _conv(rng, "Conv", (1, 2, 8, 7), (2, 1, 3, 3), const=False, group=2, strides=[2, 2])


@cases("Conv")
def conv_strided_other(rng: np.random.Generator):
    """Other strided convs (ConvTranspose): stems, 1x1 stride 2, skipped remainder rows."""
    yield _conv(rng, "Conv", (1, 3, 9, 8), (4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])
    yield _conv(rng, "Conv", (1, 2, 8, 9), (3, 2, 3, 3), strides=[2, 2], auto_pad="VALID")
    yield _conv(rng, "Conv", (1, 2, 7, 7), (3, 2, 1, 1), strides=[2, 2])
    yield _conv(rng, "Conv", (1, 2, 9, 9), (2, 2, 2, 3), strides=[3, 2], auto_pad="SAME_UPPER")


@cases("Conv")
def conv_other_ranks(rng: np.random.Generator):
    """1-D and 3-D convolutions through the same code."""
    yield _conv(rng, "Conv", (2, 2, 9), (3, 2, 3), strides=[2], pads=[1, 0])
    yield _conv(rng, "Conv", (1, 3, 10), (3, 1, 5), group=3, strides=[2], auto_pad="SAME_UPPER")
    yield _conv(rng, "Conv", (1, 2, 8), (2, 2, 2), dilations=[3], pads=[2, 2])
    yield _conv(rng, "Conv", (1, 2, 4, 5, 3), (2, 1, 3, 2, 1), group=2, strides=[1, 2, 1])
    yield _conv(rng, "Conv", (1, 2, 4, 4, 3), (3, 2, 3, 3, 2), pads=[1, 0, 1, 1, 1, 0])


@cases("ConvTranspose")
def conv_transpose(rng: np.random.Generator):
    """Strides, dilations, output_padding, SAME, output_shape (larger than natural) and 1-D."""
    op = "ConvTranspose"
    yield _conv(rng, op, (2, 2, 4, 5), (2, 3, 3, 3), pads=[1, 1, 1, 1])
    yield _conv(rng, op, (1, 2, 4, 4), (2, 3, 3, 3), strides=[2, 2], output_padding=[1, 0])
    yield _conv(rng, op, (1, 2, 3, 4), (2, 2, 4, 3), strides=[2, 3], pads=[1, 0, 2, 1])
    yield _conv(rng, op, (1, 3, 4, 3), (3, 1, 3, 3), group=3, strides=[2, 2], dilations=[1, 2])
    yield _conv(rng, op, (1, 2, 3, 4), (2, 2, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER")
    yield _conv(rng, op, (1, 2, 3, 4), (2, 2, 3, 2), strides=[2, 2], auto_pad="SAME_LOWER")
    yield _conv(rng, op, (1, 2, 4), (2, 2, 3), strides=[2], output_shape=[10])
    yield _conv(rng, op, (1, 2, 5), (2, 3, 2), strides=[3], dilations=[2], pads=[1, 2])
    yield _conv(rng, op, (1, 2, 3, 3), (2, 2, 3, 3), const=False, strides=[2, 2])


def _random_conv(rng: np.random.Generator) -> Case:
    """One Conv with drawn geometry: dense or depthwise, kernel 1-4, stride 1-3, dilation 1-2,
    explicit pads below the kernel span or an auto_pad mode, and a size that fits the window."""
    channels = int(rng.integers(1, 4))
    depthwise = bool(rng.integers(2))
    out_channels = channels if depthwise else int(rng.integers(1, 4))
    kernel = [int(k) for k in rng.integers(1, 5, 2)]
    strides = [int(s) for s in rng.integers(1, 4, 2)]
    dilations = [int(d) for d in rng.integers(1, 3, 2)]
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    attrs: dict = {"strides": strides, "dilations": dilations}
    if depthwise:
        attrs["group"] = channels
    mode = rng.choice(["explicit", "SAME_UPPER", "SAME_LOWER", "VALID"])
    if mode == "explicit":
        attrs["pads"] = [int(rng.integers(0, s)) for s in span + span]
    else:  # onnxruntime runs no dilated SAME conv; onnx.reference pads SAME by a negative
        # amount when the stride exceeds the span
        attrs["auto_pad"] = str(mode)
        attrs["dilations"] = dilations = [1, 1]
        span = kernel
        attrs["strides"] = strides = [min(s, k) for s, k in zip(strides, span, strict=True)]
    spatial = [int(s + rng.integers(0, 2 * st + 3)) for s, st in zip(span, strides, strict=True)]
    w_shape = (out_channels, 1 if depthwise else channels, *kernel)
    return _conv(rng, "Conv", (int(rng.integers(1, 3)), channels, *spatial), w_shape, **attrs)


@cases("Conv")
def conv_random_geometry(rng: np.random.Generator):
    """Drawn shapes and attributes on top of the hand-picked ones above (seeded per op type)."""
    for _ in range(12):
        yield _random_conv(rng)
