"""A streaming audio model (a cache input beside the features) on the device."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgesal import metadata
from edgesal.eval.series import evaluate_samples
from edgesal.export import ExportOptions, export_saliency
from edgesal.runtimes.audio import FeatureExtractor, FrontEnd
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.signal_pipeline import SignalPipeline
from tests import input_models
from tests.audio import tone

pytestmark = pytest.mark.slow  # builds the model with torch


def test_streaming_model_runs_with_its_cache_at_zero(tmp_path):
    """A model with a streaming cache input (tests/input_models.py): the device explains each
    window with the cache at its zero state, the same map onnxruntime gives for a zero cache."""
    _, plain, _ = input_models.build("audio")
    front = FrontEnd(sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=10)
    model = export_saliency(plain, ExportOptions(input="speech", modality="audio"))
    metadata.write(model, {"audio": asdict(front)})
    path = tmp_path / "stream.sal.onnx"
    onnx.save(model, path)
    pipe = SignalPipeline(MethodChain.load([str(path)]))
    assert pipe.windowing.window == front.window_samples(20)
    window = tone.clip(1, 900.0, rate=8000)[: pipe.windowing.window].astype(np.float32)
    result = pipe.process(window)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features = FeatureExtractor(front)(window)[None]
    zero = np.zeros((1, 2, 10), np.float32)
    (expected,) = session.run(["saliency"], {"speech": features, "cache": zero})
    np.testing.assert_allclose(result.saliency, expected[0], rtol=1e-5, atol=1e-6)


def test_eval_samples_feeds_the_cache_zeros(tmp_path):
    """``edgesal eval --samples`` on the streaming model: the cache input gets zeros, and the
    curve's first point is the model's probability with a zero cache."""
    _, plain, feeds = input_models.build("audio")
    model = export_saliency(plain, ExportOptions(input="speech", modality="audio"))
    path = tmp_path / "stream.sal.onnx"
    onnx.save(model, path)
    speech = np.random.default_rng(2).standard_normal((3, 20, 10)).astype(np.float32)
    np.save(tmp_path / "s.npy", speech)
    report = evaluate_samples(str(path), str(tmp_path / "s.npy"), str(tmp_path / "r"), steps=5,
                              plots=0)  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    zero = np.zeros((1, 2, 10), np.float32)
    (logits,) = session.run(["logits"], {"speech": speech[:1], "cache": zero})
    first = report["samples"][0]
    probs = np.exp(logits[0] - logits[0].max())
    probs /= probs.sum()
    assert first["curves"]["vanilla"]["deletion"][0] == pytest.approx(probs[first["target"]])
