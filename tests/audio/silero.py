"""A real audio model from PyPI: Silero VAD (``silero-vad`` wheel, MIT), re-assembled to read a
magnitude spectrogram, so the device computes the spectrogram and the map is time x frequency.

``silero_vad_16k_sequence.onnx`` takes chunks of 576 samples (64 of context + 512 new), pads each
by reflection, takes a 256-point STFT in-graph (a Conv with a fixed Hann-windowed DFT basis,
magnitude, 4 frames per chunk), runs four Conv1d+ReLU encoder layers per chunk, one LSTM over the
chunks and a Conv1d+Sigmoid head: one speech probability per chunk. The LSTM op has no gradient
rule in edgesal, so this file rebuilds the same computation from the file's own weights in
operators that have one: the spectrogram [1, 1, 4 S, 129] is the input, the encoder runs per
chunk as 2-D convolutions with a width-1 kernel, the LSTM is unrolled over the S chunks (gates
i, o, f, c as ONNX defines them), and the window's score is the mean speech probability, offered
as two classes (silence, speech). :func:`test_silero` checks it equals the original on the same
spectrogram.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgesal import metadata
from edgesal.export import ExportOptions, export_saliency
from edgesal.runtimes.audio import FrontEnd
from edgesal.zoo.weights import WheelFile, fetch

SILERO = WheelFile(
    requirement="silero-vad==6.2.3",
    member="silero_vad/data/silero_vad_16k_sequence.onnx",
    sha256="9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
)
# The device front end: silero's STFT (periodic Hann, 256 points, hop 128, magnitude).
FRONT = FrontEnd(
    sample_rate=16000, n_fft=256, win_length=256, hop_length=128, window="hann", power=1.0,
    n_mels=0, log="none",
)  # fmt: skip
CHUNKS = 31  # 4 frames each: 124 frames = 16000 samples, 1 s
HIDDEN = 128
LABELS = ["silence", "speech"]
STFT_OUTPUT = "/stft/Sqrt_output_0"


def original() -> onnx.ModelProto:
    return onnx.load(str(fetch(SILERO, progress=False)))


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _lstm_step(t: int, nodes: list, h: str | None, c: str | None) -> tuple[str, str]:
    """One ONNX LSTM step (gate order i, o, f, c; no peepholes): gates = x W^T + h R^T + b,
    c' = f c + i tanh(g), h' = o tanh(c')."""
    p = f"t{t}_"
    nodes.append(helper.make_node("Gather", ["xw", f"i{t}"], [p + "x"], axis=0))
    gates = p + "x"
    if h is not None:
        nodes.append(helper.make_node("MatMul", [h, "r_t"], [p + "hr"]))
        nodes.append(helper.make_node("Add", [p + "x", p + "hr"], [p + "g"]))
        gates = p + "g"
    names = [p + k for k in ("i", "o", "f", "c")]
    nodes.append(helper.make_node("Split", [gates, "split4"], [n + "_pre" for n in names], axis=1))
    for name, op in zip(names, ("Sigmoid", "Sigmoid", "Sigmoid", "Tanh"), strict=True):
        nodes.append(helper.make_node(op, [name + "_pre"], [name]))
    nodes.append(helper.make_node("Mul", [p + "i", p + "c"], [p + "ic"]))
    cell = p + "ic"
    if c is not None:
        nodes.append(helper.make_node("Mul", [p + "f", c], [p + "fc"]))
        nodes.append(helper.make_node("Add", [p + "fc", p + "ic"], [p + "cell"]))
        cell = p + "cell"
    nodes.append(helper.make_node("Tanh", [cell], [p + "tc"]))
    nodes.append(helper.make_node("Mul", [p + "o", p + "tc"], [p + "h"]))
    return p + "h", cell


def reassembled(source: onnx.ModelProto, chunk_output: bool = False) -> onnx.ModelProto:
    """input 'spec' [1, 1, 4 CHUNKS, 129] -> 'scores' [1, 2] (and 'chunk_probs' [CHUNKS, 1])."""
    w = weights(source)
    lstm = next(n for n in source.graph.node if n.op_type == "LSTM")
    w_ih, w_hh, bias = (w[name][0] for name in lstm.input[1:4])
    init = {
        "shape_in": np.array([CHUNKS, 4, 129], np.int64),
        "shape_4d": np.array([CHUNKS, 129, 4, 1], np.int64),
        "shape_enc": np.array([CHUNKS, HIDDEN], np.int64),
        "w_t": w_ih.T.copy(),
        "r_t": w_hh.T.copy(),
        "b": (bias[: 4 * HIDDEN] + bias[4 * HIDDEN :]).astype(np.float32),
        "split4": np.full(4, HIDDEN, np.int64),
        "head_w": w["output.weight"].reshape(1, HIDDEN),
        "head_b": w["output.bias"],
        "one": np.ones((1, 1), np.float32),
        **{f"i{t}": np.array([t], np.int64) for t in range(CHUNKS)},
    }
    nodes = [
        helper.make_node("Reshape", ["spec", "shape_in"], ["chunks"]),
        helper.make_node("Transpose", ["chunks"], ["freq_first"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["freq_first", "shape_4d"], ["e_in"]),
    ]
    previous = "e_in"
    for k, stride in enumerate((1, 2, 2, 1)):
        kernel, bias_k = w[f"encoder.{k}.weight"], w[f"encoder.{k}.bias"]
        init[f"enc{k}_w"], init[f"enc{k}_b"] = kernel[..., None], bias_k
        nodes.append(
            helper.make_node(
                "Conv",
                [previous, f"enc{k}_w", f"enc{k}_b"],
                [f"enc{k}"],
                strides=[stride, 1],
                pads=[1, 0, 1, 0],
            )  # fmt: skip
        )
        nodes.append(helper.make_node("Relu", [f"enc{k}"], [f"enc{k}_r"]))
        previous = f"enc{k}_r"
    nodes.append(helper.make_node("Reshape", [previous, "shape_enc"], ["enc"]))
    nodes.append(helper.make_node("Gemm", ["enc", "w_t", "b"], ["xw"]))
    h = c = None
    hidden = []
    for t in range(CHUNKS):
        h, c = _lstm_step(t, nodes, h, c)
        hidden.append(h)
    nodes += [
        helper.make_node("Concat", hidden, ["hs"], axis=0),
        helper.make_node("Relu", ["hs"], ["hs_r"]),
        helper.make_node("Gemm", ["hs_r", "head_w", "head_b"], ["logit"], transB=1),
        helper.make_node("Sigmoid", ["logit"], ["chunk_probs"]),
        helper.make_node("ReduceMean", ["chunk_probs"], ["p"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["q", "p"], ["scores"], axis=1),
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2])]
    if chunk_output:
        outputs.append(helper.make_tensor_value_info("chunk_probs", TensorProto.FLOAT, [CHUNKS, 1]))
    graph = helper.make_graph(
        nodes,
        "silero_vad_spectrogram",
        [helper.make_tensor_value_info("spec", TensorProto.FLOAT, [1, 1, 4 * CHUNKS, 129])],
        outputs,
        [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def build(path: Path, method: str = "vanilla") -> Path:
    """The exported saliency model (speech class) with the front end in its metadata."""
    options = ExportOptions(method=method, input="spec", target="class:1")
    model = export_saliency(reassembled(original()), options)
    metadata.write(model, {"audio": asdict(FRONT), "labels": LABELS})
    onnx.save(model, str(path))
    return path


def silero_spectrogram(source: onnx.ModelProto, chunks: np.ndarray) -> np.ndarray:
    """Silero's own in-graph STFT magnitude of [S, 576] chunks: [S, 129, 4]."""
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(source.SerializeToString())
    model.graph.output.append(helper.make_empty_tensor_value_info(STFT_OUTPUT))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    zeros = np.zeros((1, 1, HIDDEN), np.float32)
    probs, spec = session.run(
        ["speech_probs", STFT_OUTPUT], {"input": chunks, "h": zeros, "c": zeros}
    )
    return probs, spec


def voiced(samples: int, f0: float = 130.0, rate: int = 16000) -> np.ndarray:
    """A synthetic vowel: harmonics of a wobbling ``f0`` shaped by formants at 700, 1200 and
    2600 Hz, amplitude-modulated at 4 Hz (a syllable rate)."""
    t = np.arange(samples) / rate
    f = f0 * (1 + 0.08 * np.sin(2 * np.pi * 2.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / rate
    formants = ((700, 150), (1200, 200), (2600, 300))

    def envelope(hz: float) -> float:
        return sum(np.exp(-(((hz - centre) / width) ** 2)) for centre, width in formants)

    harmonics = sum(envelope(k * f0) * np.sin(k * phase) for k in range(1, 40))
    return harmonics * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))


def half_voiced(seed: int = 0) -> np.ndarray:
    """1 s at 16 kHz: faint noise, a synthetic vowel in the second half."""
    x = 0.003 * np.random.default_rng(seed).standard_normal(16000)
    x[8000:] += 0.15 * voiced(8000)
    return x
