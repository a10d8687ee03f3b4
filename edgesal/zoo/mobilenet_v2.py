"""MobileNetV2 (Sandler et al. 2018) in torchvision's layout: inverted residuals, ReLU6, 224x224.

Stem 3x3/2 conv to 32 channels, 17 inverted-residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear
projection, ``x + block(x)`` when stride is 1 and channels match), 1x1 conv to 1280, global
average pool, FC. BatchNorm eps is PyTorch's 1e-5 and padding is symmetric, ``(k - 1) // 2``.
"""

from __future__ import annotations

from edgesal.zoo.layers import GraphWriter, Tensor

SETTINGS = [  # expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def body(g: GraphWriter, x: Tensor) -> str:
    """Append the network to ``g`` after the normalized NCHW image ``x``; returns the logits."""
    x = g.conv_bn(x, "features.0.0", "features.0.1", 32, 3, stride=2)
    index = 1
    for expand, channels, repeats, first_stride in SETTINGS:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            x = _inverted_residual(g, x, f"features.{index}.conv", expand, channels, stride)
            index += 1
    x = g.conv_bn(x, f"features.{index}.0", f"features.{index}.1", 1280, 1)
    return g.classifier(x, "classifier.1")


def _inverted_residual(
    g: GraphWriter, x: Tensor, path: str, expand: int, out: int, stride: int
) -> Tensor:
    """``[1x1 ReLU6] -> 3x3 depthwise ReLU6 -> 1x1 linear``, plus ``x`` when shapes allow."""
    hidden = x.channels * expand
    y, layer = x, 0
    if expand != 1:
        y = g.conv_bn(y, f"{path}.0.0", f"{path}.0.1", hidden, 1)
        layer = 1
    y = g.conv_bn(
        y, f"{path}.{layer}.0", f"{path}.{layer}.1", hidden, 3, stride=stride, depthwise=True
    )
    y = g.conv_bn(y, f"{path}.{layer + 1}", f"{path}.{layer + 2}", out, 1, relu6=False)
    if stride == 1 and out == x.channels:
        y = g.add(x, y, f"{path.removesuffix('.conv')}/add")
    return y
