"""The real model: Silero VAD's weights from the ``silero-vad`` wheel (tests/audio/silero.py).

The re-assembled spectrogram-input graph equals Silero's own ONNX file; the device front end
equals Silero's in-graph STFT; the exported gradient equals float64 finite differences; on the
device the map of a half-silent, half-voiced window sits on the voiced half."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from edgesal.export import ExportOptions, export_saliency
from edgesal.runtimes.audio import FeatureExtractor
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.records import RecordReader
from edgesal.runtimes.signal_pipeline import SignalPipeline
from tests.audio import silero
from tests.audio.test_cli import run
from tests.audio.tone import write_wav
from tests.converters.test_third_party import as_float64

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source():
    return silero.original()


@pytest.fixture(scope="module")
def clip_chunks():
    """Silero's chunking of a voiced clip: 31 chunks of 64 context + 512 new samples."""
    x = np.concatenate([np.zeros(64), silero.half_voiced(3)]).astype(np.float32)
    return x, np.stack([x[512 * i : 512 * i + 576] for i in range(silero.CHUNKS)])


def test_reassembled_graph_equals_silero(source, clip_chunks):
    _, chunks = clip_chunks
    probs, spec = silero.silero_spectrogram(source, chunks)
    model = silero.reassembled(source, chunk_output=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = spec.transpose(0, 2, 1).reshape(1, 1, 4 * silero.CHUNKS, 129)
    scores, per_chunk = session.run(["scores", "chunk_probs"], {"spec": feed})
    np.testing.assert_allclose(per_chunk[:, 0], probs, atol=1e-5)
    assert probs[16:].mean() > 3 * probs[:15].mean()  # it hears the vowel
    np.testing.assert_allclose(scores[0], [1 - probs.mean(), probs.mean()], atol=1e-6)


def test_front_end_equals_silero_stft(source, clip_chunks):
    """Per chunk, silero pads by reflection (128 both sides) and drops the first frame; the
    numpy front end on the same padded chunk gives the same magnitudes. On a continuous window
    the device reads real samples where silero reflects (the last 64 of every 4th frame): the
    other three frames of each chunk are the same."""
    x, chunks = clip_chunks
    _, spec = silero.silero_spectrogram(source, chunks)
    extract = FeatureExtractor(silero.FRONT)
    for i, chunk in enumerate(chunks):
        ours = extract(np.pad(chunk.astype(np.float64), 128, mode="reflect"))[1:]
        np.testing.assert_allclose(ours.T, spec[i], rtol=1e-4, atol=1e-4 * spec[i].max())
    device = extract(x[: silero.FRONT.window_samples(4 * silero.CHUNKS)])
    silero_frames = spec.transpose(0, 2, 1)  # [S, 4, 129]
    for j in range(3):
        np.testing.assert_allclose(
            device[j::4], silero_frames[:, j], rtol=1e-4, atol=1e-4 * spec.max()
        )


def test_exported_gradient_equals_finite_differences(source):
    model = silero.reassembled(source)
    options = ExportOptions(
        method="vanilla", input="spec", target="class:1", reduce="none", normalize="none"
    )
    saliency = export_saliency(model, options)
    spec = FeatureExtractor(silero.FRONT)(silero.half_voiced(4))[None, None]
    session = ort.InferenceSession(saliency.SerializeToString(), providers=["CPUExecutionProvider"])
    grad = session.run(["saliency"], {"spec": spec})[0].reshape(spec.shape)
    reference = ReferenceEvaluator(as_float64(model))
    x64, eps = spec.astype(np.float64), 1e-4
    cells = np.argsort(-np.abs(grad).ravel())[:4].tolist() + [5000, 9000]
    for flat in cells:
        idx = np.unravel_index(flat, spec.shape)
        up, down = x64.copy(), x64.copy()
        up[idx] += eps
        down[idx] -= eps
        f_up = reference.run(["scores"], {"spec": up})[0][0, 1]
        f_down = reference.run(["scores"], {"spec": down})[0][0, 1]
        expected = (f_up - f_down) / (2 * eps)
        assert grad[idx] == pytest.approx(expected, rel=2e-3, abs=1e-6 * float(np.abs(grad).max()))


def test_device_map_sits_on_the_voiced_half(tmp_path):
    model = silero.build(tmp_path / "vad.sal.onnx", method="gradxinput")
    pipe = SignalPipeline(MethodChain.load([str(model)]))
    assert pipe.windowing.window == 16000
    result = pipe.process(silero.half_voiced(5).astype(np.float32))
    assert result.saliency.shape == (124, 129)
    over_time = result.saliency.sum(axis=1)
    assert over_time[62:].sum() > 0.6 * over_time.sum()
    assert 0.3 < result.inference.probs[1] < 0.7  # a synthetic vowel: VAD is unsure, not deaf


def test_cli_run_on_the_real_model(tmp_path):
    model = silero.build(tmp_path / "vad.sal.onnx", method="gradxinput")
    wav = write_wav(tmp_path / "v.wav", np.concatenate([silero.half_voiced(6)] * 2), 16000)
    records = tmp_path / "v.salrec"
    done = run(str(model), "--source", str(wav), "--records", str(records))
    assert done.returncode == 0, done.stderr
    frames = list(RecordReader(records).frames())
    assert len(frames) == 2 and all(f.saliency.shape == (124, 129) for f in frames)
    assert frames[0].meta["method"] == "gradxinput"
