"""Write a classifier's ONNX graph from a PyTorch state dict, one layer call at a time.

Every Conv absorbs its BatchNorm (``w' = w * g / sqrt(v + eps)``,
``b' = beta - m * g / sqrt(v + eps)``), so the graphs hold only Conv, Clip(0, 6), Add,
GlobalAveragePool, Flatten and Gemm (plus Cast, Sub, Mul and Transpose in front when the model
takes uint8 pixels). Tensor and node names follow the PyTorch module paths, so ``features.18.0``
in the ONNX graph is ``features.18.0`` in torchvision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgesal.errors import ModelLoadError

OPSET = 17
IR_VERSION = 8  # the IR version that introduced opset 17: the widest set of runtimes reads it


@dataclass(frozen=True)
class Tensor:
    """A graph value with its static per-image shape (the batch dimension is implicit)."""

    name: str
    channels: int
    height: int
    width: int


class GraphWriter:
    """Collects nodes and initializers; takes each weight from the state dict exactly once."""

    def __init__(self, state: dict[str, np.ndarray], model: str):
        self.state = state
        self.model = model
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.unused = {k for k in state if not k.endswith("num_batches_tracked")}
        self._clip_bounds: list[str] = []

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The state dict entry ``key`` as float64, checked against ``shape`` when given."""
        if key not in self.state:
            raise ModelLoadError(f"{self.model} weights have no tensor '{key}'")
        value = np.asarray(self.state[key], dtype=np.float64)
        if shape is not None and value.shape != shape:
            raise ModelLoadError(
                f"{self.model} weight '{key}' has shape {value.shape}, the network needs {shape}"
            )
        self.unused.discard(key)
        return value

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        """Append ``op`` named ``name`` whose single output is also called ``name``."""
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def conv_bn(
        self,
        x: Tensor,
        conv: str,
        bn: str,
        out: int,
        kernel: int,
        *,
        stride: int = 1,
        depthwise: bool = False,
        eps: float = 1e-5,
        same: bool = False,
        relu6: bool = True,
    ) -> Tensor:
        """``Conv(x)`` (``out`` channels, ``kernel`` square) with BatchNorm ``bn`` folded in, then
        ``Clip(0, 6)`` if ``relu6``.

        Padding is ``(k - 1) // 2`` on every side, or with ``same`` TensorFlow's 'SAME' rule for
        this input size: ``total = max((ceil(n / s) - 1) * s + k - n, 0)``, odd pixel at the end.
        """
        groups = x.channels if depthwise else 1
        weight = self.take(f"{conv}.weight", (out, x.channels // groups, kernel, kernel))
        gamma, beta, mean, var = (self.take(f"{bn}.{k}", (out,)) for k in _BN_KEYS)
        scale = gamma / np.sqrt(var + eps)
        bias = beta - mean * scale
        if f"{conv}.bias" in self.state:
            bias += self.take(f"{conv}.bias", (out,)) * scale
        pad_h = _pads(x.height, kernel, stride, same)
        pad_w = _pads(x.width, kernel, stride, same)
        y = self.node(
            "Conv",
            [x.name, self.constant(f"{conv}.weight", weight * scale[:, None, None, None])]
            + [self.constant(f"{conv}.bias", bias)],
            conv,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad_h[0], pad_w[0], pad_h[1], pad_w[1]],
            group=groups,
        )
        height = (x.height + sum(pad_h) - kernel) // stride + 1
        width = (x.width + sum(pad_w) - kernel) // stride + 1
        if relu6:
            y = self.node("Clip", [y, *self.clip_bounds()], f"{conv}/relu6")
        return Tensor(y, out, height, width)

    def clip_bounds(self) -> list[str]:
        """Shared scalar initializers 0 and 6 for ReLU6 as ``Clip``."""
        if not self._clip_bounds:
            self._clip_bounds = [self.constant("relu6/min", 0.0), self.constant("relu6/max", 6.0)]
        return self._clip_bounds

    def add(self, a: Tensor, b: Tensor, name: str) -> Tensor:
        return Tensor(self.node("Add", [a.name, b.name], name), a.channels, a.height, a.width)

    def classifier(self, x: Tensor, fc: str, classes: int = 1000) -> str:
        """``logits = Gemm(Flatten(GlobalAveragePool(x)), W^T, b)``; returns ``"logits"``."""
        pooled = self.node("GlobalAveragePool", [x.name], "pool")
        flat = self.node("Flatten", [pooled], "flatten", axis=1)
        weight = self.constant(f"{fc}.weight", self.take(f"{fc}.weight", (classes, x.channels)))
        bias = self.constant(f"{fc}.bias", self.take(f"{fc}.bias", (classes,)))
        self.nodes.append(
            helper.make_node("Gemm", [flat, weight, bias], ["logits"], name=fc, transB=1)
        )
        return "logits"

    def normalize_uint8_hwc(
        self, image: str, mean: list[float], std: list[float], scale: float
    ) -> str:
        """``Transpose((Cast(image) - scale * mean) / (scale * std))``: uint8 NHWC to float NCHW."""
        pixels = self.node("Cast", [image], "preprocess/cast", to=TensorProto.FLOAT)
        shift = self.constant("preprocess/mean", np.asarray(mean) * scale)
        factor = self.constant("preprocess/inv_std", 1.0 / (np.asarray(std) * scale))
        centred = self.node("Sub", [pixels, shift], "preprocess/sub_mean")
        scaled = self.node("Mul", [centred, factor], "preprocess/div_std")
        return self.node("Transpose", [scaled], "preprocess/to_nchw", perm=[0, 3, 1, 2])

    def check_all_used(self) -> None:
        """Every weight must have been placed: otherwise the architecture does not match them."""
        if self.unused:
            listed = ", ".join(sorted(self.unused)[:8])
            raise ModelLoadError(
                f"{self.model} weights hold {len(self.unused)} tensors the network does not use: "
                f"{listed}"
            )


_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _pads(size: int, kernel: int, stride: int, same: bool) -> tuple[int, int]:
    if not same:
        return (kernel - 1) // 2, (kernel - 1) // 2
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2
