"""Control "maps" that must fail the checks: a Sobel edge detector and a random map.

An edge detector is the textbook map that looks plausible but ignores the model (Adebayo et al.
2018); a uniform random map is the chance level for deletion, insertion and the pointing game.
The Sobel control is built as ONNX operators appended to the model being evaluated, so it goes
through exactly the path a real method goes through (randomize weights, re-export, run, compare).
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
from onnx import helper

from edgesal.graph.builder import Builder
from edgesal.onnx_io import default_opset

SOBEL_OUTPUT = "edgesal_control_sobel"
_SOBEL = np.array(
    [[[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]], [[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]]], np.float32
)


def add_sobel_output(model: onnx.ModelProto, image: str, layout: str) -> onnx.ModelProto:
    """``model`` (modified in place and returned) with output ``edgesal_control_sobel`` [N, H, W]:

    S = sqrt(Gx^2 + Gy^2) / max(S), Gx, Gy = Sobel 3x3 of the channel mean of input ``image``
    (edge-replicated borders). It depends on the pixels only, never on a weight of the model.
    """
    b = Builder(model.graph, default_opset(model), prefix="edgesal_control")
    x = b.Cast(image, to=onnx.TensorProto.FLOAT)
    if layout == "NHWC":
        x = b.Transpose(x, perm=[0, 3, 1, 2])
    grey = b.reduce("ReduceMean", x, [1])
    padded = b.Pad(grey, b.ints([0, 0, 1, 1, 0, 0, 1, 1]), mode="edge")
    grads = b.Conv(padded, b.const(_SOBEL, hint="sobel"))
    magnitude = b.Sqrt(b.reduce("ReduceSum", b.Mul(grads, grads), [1], keepdims=0))
    peak = b.Max(b.reduce("ReduceMax", magnitude, [1, 2]), b.const(np.float32(1e-12)))
    model.graph.node.append(helper.make_node("Div", [magnitude, peak], [SOBEL_OUTPUT]))
    model.graph.output.append(
        helper.make_tensor_value_info(SOBEL_OUTPUT, onnx.TensorProto.FLOAT, None)
    )
    return model


def random_map(shape: tuple[int, int], key: str, seed: int) -> np.ndarray:
    """Uniform [0, 1) noise, the same for the same image ``key`` and ``seed`` in any process."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return rng.random(shape, dtype=np.float32)
