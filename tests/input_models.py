"""Small non-image torch models (1D conv, MLP, streaming audio with a cache) and their ONNX export.

Each test compares the exported in-graph gradient with torch autograd on the same module and with
float64 finite differences of the exported ONNX forward; these builders are shared by both.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import torch
from torch import nn


class ConvSeriesNCT(nn.Module):
    """[N, C, T] sensor series -> class scores: two 1D convs with a max pool between, a mean over
    time, a linear head."""

    def __init__(self, channels: int = 4, classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, 8, 5, padding=2)
        self.conv2 = nn.Conv1d(8, 8, 3, stride=2)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        h = torch.tanh(self.conv2(nn.functional.max_pool1d(torch.relu(self.conv1(x)), 2)))
        return self.head(h.mean(dim=2))


class ConvSeriesNTC(ConvSeriesNCT):
    """[N, T, C] (the IMU/ECG layout of Keras models): transposed to [N, C, T] first."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2))


class Tabular(nn.Module):
    """[N, F] rows -> scores: a two-layer perceptron."""

    def __init__(self, features: int = 12, classes: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, classes))

    def forward(self, x):
        return self.net(x)


class StreamingAudio(nn.Module):
    """[N, T, F] features plus a streaming cache [N, K, F] of the previous K frames: the conv
    sees cache ++ features; outputs the scores and the next cache (the last K frames)."""

    def __init__(self, mels: int = 10, context: int = 2, classes: int = 5):
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(mels, 8, context + 1)
        self.head = nn.Linear(8, classes)

    def forward(self, speech, cache):
        frames = torch.cat([cache, speech], dim=1)
        h = torch.relu(self.conv(frames.transpose(1, 2)))
        return self.head(h.mean(dim=2)), frames[:, -self.context :, :]


def to_onnx(
    net: nn.Module, examples: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str]
) -> onnx.ModelProto:
    """``net`` exported by the TorchScript exporter at opset 17 with a symbolic batch axis."""
    buffer = io.BytesIO()
    torch.onnx.export(
        net.eval(),
        examples,
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=inputs,
        output_names=outputs,
        dynamic_axes={name: {0: "N"} for name in inputs + outputs},
    )
    return onnx.load_from_string(buffer.getvalue())


def build(kind: str, seed: int = 0) -> tuple[nn.Module, onnx.ModelProto, dict[str, np.ndarray]]:
    """(torch module, ONNX export, example feeds) for ``nct``, ``ntc``, ``tabular``, ``audio``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if kind == "audio":
        net = StreamingAudio()
        feeds = {
            "speech": rng.standard_normal((1, 20, 10)).astype(np.float32),
            "cache": rng.standard_normal((1, 2, 10)).astype(np.float32),
        }
        outputs = ["logits", "next_cache"]
    else:
        net, shape = {
            "nct": (ConvSeriesNCT(), (1, 4, 32)),
            "ntc": (ConvSeriesNTC(), (1, 32, 4)),
            "tabular": (Tabular(), (1, 12)),
        }[kind]
        feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
        outputs = ["logits"]
    examples = tuple(torch.from_numpy(v) for v in feeds.values())
    return net, to_onnx(net, examples, list(feeds), outputs), feeds


def torch_gradient(net: nn.Module, feeds: dict[str, np.ndarray], wrt: str) -> np.ndarray:
    """d(top score)/d(feeds[wrt]) per batch item by torch autograd (sum over items)."""
    tensors = {k: torch.from_numpy(v.copy()).requires_grad_(k == wrt) for k, v in feeds.items()}
    out = net(*tensors.values())
    scores = out[0] if isinstance(out, tuple) else out
    top = scores.argmax(dim=1)
    scores.gather(1, top[:, None]).sum().backward()
    return tensors[wrt].grad.numpy()
