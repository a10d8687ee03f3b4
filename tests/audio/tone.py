"""A small audio model built for the tests: it scores how peaked the log-mel spectrum is.

``s = mean_t max_f relu(x[t, f] - (x[t, f-1] + x[t, f+1]) / 2)`` (a spectral-peak filter, the
strongest peak per frame, averaged over time); the logits are ``(noise, tone) = k (c - s, s - c)``
with ``c`` fitted between a noise clip and a tone clip. Its gradient runs through the strongest
peak of every frame, so a faithful map of a tone-plus-noise clip sits on the tone's mel band.
Used where a published model does not suit a property (the real model is silero VAD's,
tests/audio/silero.py).
"""

from __future__ import annotations

import wave
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgesal import metadata
from edgesal.export import ExportOptions, export_saliency
from edgesal.runtimes.audio import FeatureExtractor, FrontEnd, hz_to_mel, mel_to_hz

FRONT = FrontEnd(
    sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40, log="ln",
    log_offset=1e-6,
)  # fmt: skip
FRAMES = 98  # 1 s: 97 hops + one 400-sample frame = 15920 samples
LABELS = ["noise", "tone"]


def clip(seconds: float, tone_hz: float | None, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """White noise (rms 0.05) plus, when given, a sine of amplitude 0.3."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    x = 0.05 * rng.standard_normal(t.size)
    if tone_hz:
        x += 0.3 * np.sin(2 * np.pi * tone_hz * t)
    return x


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.repeat(pcm, channels).tobytes())
    return path


def tone_band(hz: float, front: FrontEnd = FRONT) -> int:
    """Index of the mel filter whose centre is nearest ``hz``."""
    low, high = hz_to_mel(front.fmin, front.mel_scale), hz_to_mel(front.top_hz, front.mel_scale)
    centres = mel_to_hz(np.linspace(low, high, front.n_mels + 2), front.mel_scale)[1:-1]
    return int(np.argmin(np.abs(centres - hz)))


def peak_score(features: np.ndarray) -> float:
    inner = features[:, 1:-1] - 0.5 * (features[:, :-2] + features[:, 2:])
    padded = np.maximum(inner, 0)
    return float(padded.max(axis=1).mean())


def classifier(offset: float, gain: float = 4.0, rank: int = 4) -> onnx.ModelProto:
    """input 'mel' [1, 1, T, F] (``rank`` 3: [1, T, F]) -> logits [1, 2] (noise, tone)."""
    weights = {
        "peak": np.array([[[[-0.5, 1.0, -0.5]]]], np.float32),
        "w": np.array([[-gain], [gain]], np.float32),
        "b": np.array([gain * offset, -gain * offset], np.float32),
        "channel": np.array([1], np.int64),
    }
    shape = [1, 1, FRAMES, FRONT.n_mels] if rank == 4 else [1, FRAMES, FRONT.n_mels]
    planes = "mel" if rank == 4 else "mel4"
    nodes = [helper.make_node("Unsqueeze", ["mel", "channel"], ["mel4"])] if rank == 3 else []
    nodes += [
        helper.make_node("Conv", [planes, "peak"], ["p"]),  # valid: F - 2 inner bands
        helper.make_node("Relu", ["p"], ["r"]),
        helper.make_node("ReduceMax", ["r"], ["m"], axes=[3], keepdims=0),
        helper.make_node("ReduceMean", ["m"], ["s"], axes=[2], keepdims=0),
        helper.make_node("Gemm", ["s", "w", "b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tone",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def fitted_offset() -> float:
    """c between the scores of a noise window and a 1 kHz tone window."""
    extract = FeatureExtractor(FRONT)
    size = FRONT.window_samples(FRAMES)
    noise = peak_score(extract(clip(1, None, seed=1)[:size]))
    tone = peak_score(extract(clip(1, 1000.0, seed=1)[:size]))
    assert tone > noise + 1.0, (noise, tone)
    return 0.5 * (noise + tone)


def build(path: Path, method: str = "vanilla", front: FrontEnd = FRONT, rank: int = 4) -> Path:
    """The exported saliency model with ``edgesal.audio`` and labels in its metadata; rank 3
    is exported as ``--modality audio`` (axes N,T,F)."""
    options = ExportOptions(method=method, input="mel", modality="audio" if rank == 3 else None)
    model = export_saliency(classifier(fitted_offset(), rank=rank), options)
    metadata.write(model, {"audio": asdict(front), "labels": LABELS})
    onnx.save(model, str(path))
    return path
