"""EfficientNet-Lite0 (Tan & Le 2019; the 'lite' variant for mobile accelerators).

The layout of the ``efficientnet-lite-pytorch`` port of lukemelas' EfficientNet-PyTorch: MBConv
blocks without squeeze-excitation, ReLU6 instead of swish, stem (32) and head (1280) not scaled.
Convolutions use TensorFlow's 'SAME' padding, which for stride 2 puts the odd pixel at the
bottom/right; it is computed from the image size and written as asymmetric Conv pads.
BatchNorm eps is 1e-3.
"""

from __future__ import annotations

from edgesal.zoo.layers import GraphWriter, Tensor

STAGES = [  # repeats, kernel, first stride, expansion, output channels
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
EPS = 1e-3


def body(g: GraphWriter, x: Tensor) -> str:
    """Append the network to ``g`` after the normalized NCHW image ``x``; returns the logits."""
    x = g.conv_bn(x, "_conv_stem", "_bn0", 32, 3, stride=2, eps=EPS, same=True)
    index = 0
    for repeats, kernel, first_stride, expand, channels in STAGES:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            x = _mbconv(g, x, f"_blocks.{index}", kernel, stride, expand, channels)
            index += 1
    x = g.conv_bn(x, "_conv_head", "_bn1", 1280, 1, eps=EPS, same=True)
    return g.classifier(x, "_fc")


def _mbconv(
    g: GraphWriter, x: Tensor, path: str, kernel: int, stride: int, expand: int, out: int
) -> Tensor:
    """``[1x1 ReLU6] -> kxk depthwise ReLU6 -> 1x1 linear``, plus ``x`` when shapes allow."""
    hidden = x.channels * expand
    y = x
    if expand != 1:
        y = g.conv_bn(y, f"{path}._expand_conv", f"{path}._bn0", hidden, 1, eps=EPS, same=True)
    y = g.conv_bn(
        y,
        f"{path}._depthwise_conv",
        f"{path}._bn1",
        hidden,
        kernel,
        stride=stride,
        depthwise=True,
        eps=EPS,
        same=True,
    )
    y = g.conv_bn(
        y, f"{path}._project_conv", f"{path}._bn2", out, 1, eps=EPS, same=True, relu6=False
    )
    if stride == 1 and out == x.channels:
        y = g.add(x, y, f"{path}/add")
    return y
