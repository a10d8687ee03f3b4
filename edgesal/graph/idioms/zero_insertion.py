"""Zero insertion: dy spread to stride s with s-1 zeros between its elements.

The gradient of a strided depthwise convolution is written as this spread followed by a
stride-1 Conv with the flipped kernel (``edgesal/autodiff/rules/conv.py``). Its ONNX form is a
ConvTranspose whose 1x1 kernel of ones, one group per channel, only moves each element to
``i * s``:

    ConvTranspose(dy, ones[C, 1, 1, 1], group=C, strides=[s, s]),  s > 1, no pads

:func:`emit` writes it; :func:`stride` recognizes it, for the TFLite lowerings
(``converters/tflite/ops/conv.py`` folds it into the conv that follows,
``converters/tflite/quantized.py`` writes it as PAD + DEPTH_TO_SPACE on int8).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from edgesal.graph.builder import Builder
from edgesal.graph.info import attrs


def emit(b: Builder, dy: str, channels: int, strides: Sequence[int], dtype: np.dtype) -> str:
    """ConvTranspose(dy, ones[C, 1, 1...], group=C, strides): dy moved to i*s, zeros between."""
    ones = b.const(np.ones((channels, 1) + (1,) * len(strides), dtype=dtype), hint="ones")
    return b.ConvTranspose(dy, ones, group=channels, strides=list(strides))


def stride(node: onnx.NodeProto, weight: np.ndarray | None, in_shape: Sequence[int]) -> int | None:
    """s when ``node`` (input of shape ``in_shape``, constant ``weight`` or None) is a zero
    insertion with one stride s > 1 on every spatial axis, else None."""
    names = list(node.input)
    while names and not names[-1]:
        names.pop()
    if node.op_type != "ConvTranspose" or node.domain or len(names) != 2 or weight is None:
        return None
    a = attrs(node)
    nd = len(in_shape) - 2
    strides = list(a.get("strides", [1] * nd))
    channels = in_shape[1] if nd >= 1 else -1
    plain = (
        weight.shape == (channels, 1) + (1,) * nd
        and np.all(weight == 1)
        and int(a.get("group", 1)) == channels
        and len(strides) == nd
        and len(set(strides)) == 1
        and strides[0] > 1
        and not any(a.get("pads", [0]))
        and not any(a.get("output_padding", [0]))
        and not a.get("output_shape")
        and a.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
        and all(d == 1 for d in a.get("dilations", [1] * nd))
    )
    return int(strides[0]) if plain else None
