"""Audio on the device: wav windows -> front end -> prediction and a time x frequency map,
drawn over the spectrogram and stored in .salrec (version 2, kind time_frequency)."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest

from edgesal.converters import to_tflite
from edgesal.eval.series import evaluate_samples
from edgesal.runtimes.audio import FeatureExtractor
from edgesal.runtimes.audio_sources import Windowing, open_audio_source, read_wav
from edgesal.runtimes.errors import SourceError
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.pipeline import PipelineConfig
from edgesal.runtimes.records import RecordReader
from edgesal.runtimes.runner import Runner
from edgesal.runtimes.selfcheck import CheckConfig
from edgesal.runtimes.signal_pipeline import SignalPipeline, SignalRecordsSink, stream_header
from tests.audio import tone


def pipeline(model, **config) -> SignalPipeline:
    return SignalPipeline(MethodChain.load([str(model)]), PipelineConfig(**config))


def band_share(saliency: np.ndarray, band: int, width: int = 2) -> float:
    per_band = saliency.sum(axis=0)
    return float(per_band[max(band - width, 0) : band + width + 1].sum() / per_band.sum())


@pytest.mark.parametrize("hz", [700.0, 1000.0, 2500.0])
def test_map_of_a_tone_sits_on_its_band(tone_model, hz):
    pipe = pipeline(tone_model)
    window = tone.clip(1, hz, seed=11)[: pipe.windowing.window].astype(np.float32)
    result = pipe.process(window)
    assert result.label == "tone"
    assert result.saliency.shape == (tone.FRAMES, tone.FRONT.n_mels)
    band = tone.tone_band(hz)
    assert abs(int(np.argmax(result.saliency.sum(axis=0))) - band) <= 1
    assert band_share(result.saliency, band) > 0.9
    assert result.overlay.shape == (320, 640, 3)


def test_rank_3_audio_export(tmp_path):
    """``--modality audio`` on an [N, T, F] input: layout from the export's axes metadata."""
    pipe = pipeline(tone.build(tmp_path / "t3.onnx", rank=3))
    assert pipe.input.layout == "NTF"
    result = pipe.process(tone.clip(1, 1500.0)[: pipe.windowing.window].astype(np.float32))
    assert result.label == "tone"
    assert band_share(result.saliency, tone.tone_band(1500.0)) > 0.9


def test_a_window_without_its_own_map_shows_none(tone_model):
    """The governor's rate step skips maps; the last window's map must not be drawn over the
    next window's spectrogram (images keep showing the last map, audio must not)."""
    pipe = pipeline(tone_model)
    window = tone.clip(1, 1000.0, seed=9)[: pipe.windowing.window].astype(np.float32)
    assert pipe.process(window, 0).saliency is not None
    job = pipe.prepare(window, 1)
    job.want_map = False
    result = pipe.finish(pipe.run(job))
    assert result.label == "tone" and result.saliency is None and not result.fresh_map
    assert pipe.render(result).shape == (320, 640, 3)


def test_the_window_feeds_the_front_end_features(tone_model):
    pipe = pipeline(tone_model)
    window = tone.clip(1, None, seed=2)[: pipe.windowing.window].astype(np.float32)
    result = pipe.process(window)
    assert result.label == "noise"
    np.testing.assert_array_equal(result.values, FeatureExtractor(tone.FRONT)(window))


def test_wav_run_records_time_frequency_maps(tone_model, tone_wav, tmp_path):
    pipe = pipeline(tone_model, selfcheck=CheckConfig(every=1, fraction=0.05))
    source = open_audio_source(str(tone_wav), pipe.windowing)
    path = tmp_path / "a.salrec"
    sink = SignalRecordsSink(pipe, path, {"source": str(tone_wav), **stream_header(pipe)})
    summary = Runner(pipe, source, [sink]).run(handle_signals=False)
    assert summary.frames == 3 and summary.maps == 3
    reader = RecordReader(path)
    header = reader.headers()[0]
    assert header["version"] == 2 and header["modality"] == "audio"
    assert header["audio"]["sample_rate"] == 16000 and header["input_size"] == [98, 40]
    frames = list(reader.frames())
    assert [f.meta["label"] for f in frames] == ["noise", "tone", "noise"]
    assert {f.kind for f in frames} == {"time_frequency"}
    starts = [f.meta["map"]["start"] for f in frames]
    np.testing.assert_allclose(starts, [0, 15920 / 16000, 2 * 15920 / 16000])
    toned = frames[1]
    assert toned.saliency.shape == (98, 40)
    assert band_share(toned.saliency, tone.tone_band(1000.0)) > 0.9
    assert toned.meta["faithful"] is True  # removing the band removes the tone


def test_wav_at_another_rate_is_resampled_and_logged(tone_model, tmp_path, caplog):
    pipe = pipeline(tone_model)
    wav = tone.write_wav(tmp_path / "44k.wav", tone.clip(1.2, 1000.0, rate=44100), 44100, 2)
    with caplog.at_level(logging.WARNING):
        source = open_audio_source(str(wav), pipe.windowing)
    assert "resampled from 44100 Hz to the model's 16000 Hz" in caplog.text
    window = next(iter(source)).image
    assert window.shape == (pipe.windowing.window,)
    result = pipe.process(window)
    assert result.label == "tone"
    assert band_share(result.saliency, tone.tone_band(1000.0)) > 0.9
    with pytest.raises(SourceError, match="sampled at 44100 Hz but the model expects 16000 Hz"):
        open_audio_source(str(wav), pipe.windowing, resample_rate=False)


def test_wav_reader_formats_and_bad_files(tmp_path):
    x = tone.clip(0.1, 440.0)
    samples, rate = read_wav(tone.write_wav(tmp_path / "s.wav", x, 8000, channels=2))
    assert rate == 8000
    np.testing.assert_allclose(samples, x, atol=1 / 32767)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(SourceError, match="needs a .fmt . and a .data. chunk"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(SourceError, match="no such wav file"):
        open_audio_source(str(tmp_path / "absent.wav"), Windowing(16000, 16000, 8000))


class FakeStream:
    """sounddevice.InputStream stand-in: start() feeds 2.5 s of a tone in 1000-sample blocks."""

    def __init__(self, samplerate, channels, dtype, device, callback):
        assert (samplerate, channels, dtype) == (16000, 1, "float32")
        self.callback, self.stopped = callback, False

    def start(self):
        x = tone.clip(2.5, 1000.0).astype(np.float32)
        for i in range(0, x.size, 1000):
            self.callback(x[i : i + 1000, None], 1000, None, None)

    def stop(self):
        self.stopped = True

    def close(self):
        pass


def test_microphone_through_sounddevice(tone_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(InputStream=FakeStream))
    pipe = pipeline(tone_model)
    source = open_audio_source("mic", pipe.windowing)
    assert source.live
    window = next(iter(source)).image
    source.close()
    assert window.shape == (pipe.windowing.window,)
    assert pipe.process(window).label == "tone"


def test_microphone_without_sounddevice_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(SourceError, match="pip install sounddevice"):
        open_audio_source("mic:1", Windowing(16000, 16000, 8000))


def test_eval_samples_on_audio_features(tmp_path):
    """``edgesal eval --samples`` on an audio export: deletion over time-frequency cells."""
    model = tone.build(tmp_path / "t3.onnx", rank=3)
    extract = FeatureExtractor(tone.FRONT)
    size = tone.FRONT.window_samples(tone.FRAMES)
    clips = [tone.clip(1, hz, seed=i)[:size] for i, hz in enumerate((600.0, 1200.0, 3000.0))]
    np.save(tmp_path / "features.npy", np.stack([extract(c) for c in clips]))
    report = evaluate_samples(str(model), str(tmp_path / "features.npy"), str(tmp_path / "r"),
                              steps=10, deletion_baseline="mean", insertion_canvas="mean",
                              plots=0)  # fmt: skip
    assert report["modality"] == "audio" and report["units"] == tone.FRAMES * tone.FRONT.n_mels
    method, random = report["methods"]["vanilla"], report["controls"]["random"]
    assert method["deletion_auc"]["mean"] < random["deletion_auc"]["mean"]
    assert method["insertion_auc"]["mean"] > random["insertion_auc"]["mean"]


def test_tflite_audio_model_gives_the_same_map(tmp_path):
    """The same audio export as .tflite (edgesal's converter, metadata carried) on LiteRT."""
    pytest.importorskip("ai_edge_litert")
    onnx_path = tone.build(tmp_path / "t.onnx", rank=3)
    tflite_path = tmp_path / "t.tflite"
    tflite_path.write_bytes(to_tflite(str(onnx_path)))
    window = tone.clip(1, 1000.0, seed=8)[: tone.FRONT.window_samples(tone.FRAMES)]
    maps = [
        pipeline(p).process(window.astype(np.float32)).saliency for p in (onnx_path, tflite_path)
    ]
    np.testing.assert_allclose(maps[1], maps[0], atol=1e-4)
