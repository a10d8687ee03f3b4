"""The numpy front end against independent float64 references: a direct DFT (explicit sums of
cosines and sines), mel triangles evaluated filter by filter from their published definitions,
scipy's FFT resampler, and FunASR's LFR / Kaldi CMVN conventions written out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesal.runtimes.audio import (
    FeatureExtractor,
    FrontEnd,
    hz_to_mel,
    lfr,
    mel_filters,
    mel_to_hz,
    resample,
    window_function,
)
from edgesal.runtimes.errors import ModelError
from edgesal.runtimes.signal_inputs import feature_hz

RNG = np.random.default_rng(7)


def direct_power(samples, front: FrontEnd) -> np.ndarray:
    """|sum_n w[n] x[t hop + n] e^{-2 pi i k n / n_fft}|^power, one frame and bin at a time."""
    x = np.asarray(samples, np.float64)
    if front.center:
        x = np.pad(x, front.n_fft // 2, mode="reflect")
    n = np.arange(front.win_length)
    w = window_function(front.window, front.win_length)
    count = 1 + (x.size - front.win_length) // front.hop_length
    out = np.empty((count, front.n_fft // 2 + 1))
    for t in range(count):
        frame = w * x[t * front.hop_length : t * front.hop_length + front.win_length]
        for k in range(front.n_fft // 2 + 1):
            re = np.sum(frame * np.cos(2 * np.pi * k * n / front.n_fft))
            im = -np.sum(frame * np.sin(2 * np.pi * k * n / front.n_fft))
            out[t, k] = np.hypot(re, im) ** front.power
    return out


def triangle(freq: float, lo: float, mid: float, hi: float) -> float:
    """A mel filter's weight at ``freq``: 0 outside (lo, hi), rising to 1 at mid."""
    if lo < freq <= mid:
        return (freq - lo) / (mid - lo)
    if mid < freq < hi:
        return (hi - freq) / (hi - mid)
    return 0.0


@pytest.mark.parametrize("scale,norm", [("htk", "none"), ("slaney", "slaney")])
def test_mel_filters_match_the_triangle_definition(scale, norm):
    front = FrontEnd(sample_rate=16000, n_fft=256, win_length=256, n_mels=12, fmin=60,
                     fmax=7000, mel_scale=scale, mel_norm=norm)  # fmt: skip
    edges = mel_to_hz(np.linspace(hz_to_mel(60, scale), hz_to_mel(7000, scale), 14), scale)
    freqs = np.arange(129) * 16000 / 256
    expected = np.array([[triangle(f, *edges[m : m + 3]) for f in freqs] for m in range(12)])
    if norm == "slaney":
        expected *= 2.0 / (edges[2:] - edges[:-2])[:, None]
    np.testing.assert_allclose(mel_filters(front), expected, rtol=1e-10, atol=1e-12)


def test_mel_scales_published_values():
    assert hz_to_mel(1000.0, "htk") == pytest.approx(999.9855, abs=1e-3)  # 2595 log10(1+10/7)
    assert hz_to_mel(1000.0, "slaney") == pytest.approx(15.0)
    assert hz_to_mel(6400.0, "slaney") == pytest.approx(42.0)  # 15 + 27 (log step 6.4)
    for scale in ("htk", "slaney"):
        hz = np.array([0.0, 300.0, 999.0, 1001.0, 8000.0])
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz, scale), scale), hz, atol=1e-8)


@pytest.mark.parametrize(
    "front",
    [
        FrontEnd(
            n_fft=64, win_length=64, hop_length=16, window="hann", power=1.0, n_mels=0, log="none"
        ),  # fmt: skip
        FrontEnd(
            n_fft=64,
            win_length=48,
            hop_length=20,
            window="hamming",
            power=2.0,
            n_mels=0,
            log="none",
            center=True,
        ),  # fmt: skip
        FrontEnd(
            n_fft=64,
            win_length=40,
            hop_length=10,
            window="povey",
            n_mels=0,
            log="none",
            preemphasis=0.97,
        ),  # fmt: skip
    ],
)
def test_spectrum_matches_a_direct_dft(front):
    x = RNG.uniform(-1, 1, 400)
    expected_input = x
    if front.preemphasis:
        expected_input = np.concatenate([x[:1] * (1 - 0.97), x[1:] - 0.97 * x[:-1]])
    got = FeatureExtractor(front)(x)
    expected = direct_power(expected_input, front)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5 * expected.max())


@pytest.mark.parametrize("log", ["ln", "log10", "db"])
def test_log_mel_features_equal_the_reference_chain(log):
    front = FrontEnd(sample_rate=8000, n_fft=128, win_length=100, hop_length=40, n_mels=10,
                     log=log, log_offset=1e-6)  # fmt: skip
    x = RNG.standard_normal(1000) * 0.1
    mel = direct_power(x, front) @ mel_filters(front).T + 1e-6
    expected = {"ln": np.log, "log10": np.log10, "db": lambda v: 10 * np.log10(v)}[log](mel)
    np.testing.assert_allclose(FeatureExtractor(front)(x), expected, atol=2e-4)


def test_lfr_stacks_frames_as_funasr():
    feats = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    got = lfr(feats, 3, 2)  # frames i*2-1 .. i*2+1, clamped
    rows = [[0, 0, 1], [1, 2, 3], [3, 4, 5], [5, 6, 6]]
    np.testing.assert_array_equal(got, np.stack([feats[r].ravel() for r in rows]))


def test_cmvn_from_json_and_kaldi_files(tmp_path):
    front = FrontEnd(n_fft=64, win_length=64, hop_length=32, n_mels=4, sample_rate=8000,
                     lfr_m=2, lfr_n=1)  # fmt: skip
    x = RNG.standard_normal(500)
    plain = FeatureExtractor(front)(x)
    mean, std = RNG.standard_normal(8), RNG.uniform(0.5, 2, 8)
    (tmp_path / "cmvn.json").write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
    kaldi = (
        "<Nnet>\n<AddShift> 8 8\n<LearnRateCoef> 0 [ {} ]\n"
        "<Rescale> 8 8\n<LearnRateCoef> 0 [ {} ]\n</Nnet>"
    )
    (tmp_path / "am.mvn").write_text(
        kaldi.format(" ".join(map(str, -mean)), " ".join(map(str, 1 / std)))
    )
    for name in ("cmvn.json", "am.mvn"):
        got = FeatureExtractor(FrontEnd(**{**front.__dict__, "cmvn": name}), tmp_path)(x)
        np.testing.assert_allclose(got, (plain - mean) / std, rtol=1e-5, atol=1e-5)
    (tmp_path / "bad.json").write_text(json.dumps({"mean": [0.0] * 3, "std": [1.0] * 3}))
    with pytest.raises(ModelError, match="3 shifts and 3 scales for 8 features"):
        FeatureExtractor(FrontEnd(**{**front.__dict__, "cmvn": "bad.json"}), tmp_path)


def test_bad_front_end_metadata_is_named():
    with pytest.raises(ModelError, match="unknown field"):
        FrontEnd.from_meta({"sample_rat": 16000}, "m.onnx")
    with pytest.raises(ModelError, match="window 'kaiser'"):
        FrontEnd.from_meta({"window": "kaiser"}, "m.onnx")
    with pytest.raises(ModelError, match="fmax"):
        FrontEnd.from_meta({"fmax": 9000, "sample_rate": 16000}, "m.onnx")
    with pytest.raises(ModelError, match="n_fft .512.: expected int"):
        FrontEnd.from_meta({"n_fft": "512"}, "m.onnx")
    with pytest.raises(ModelError, match="center 1: expected bool"):
        FrontEnd.from_meta({"center": 1}, "m.onnx")
    with pytest.raises(ModelError, match="must be a JSON object"):
        FrontEnd.from_meta(["sample_rate"], "m.onnx")
    assert FrontEnd.from_meta({"fmin": 20, "power": 1}, "m.onnx").fmin == 20.0
    with pytest.raises(ModelError, match="n_fft <= 65536"):  # would allocate per frame
        FrontEnd.from_meta({"n_fft": 1 << 30}, "m.onnx")


@pytest.mark.parametrize("rate,target", [(44100, 16000), (8000, 16000), (16000, 12000)])
def test_resample_equals_scipy_and_keeps_the_tone(rate, target):
    signal = pytest.importorskip("scipy.signal")
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 1000 * t) + 0.1 * RNG.standard_normal(t.size)
    got = resample(x, rate, target)
    np.testing.assert_allclose(got, signal.resample(x, got.size), atol=1e-9)
    spectrum = np.abs(np.fft.rfft(got))
    assert np.argmax(spectrum) * target / got.size == pytest.approx(1000, abs=2)


@pytest.mark.slow  # imports torch
def test_centered_power_spectrum_equals_torch_stft():
    """torch.stft (reflect padding, periodic Hann, window = n_fft) as a third-party reference."""
    torch = pytest.importorskip("torch")
    front = FrontEnd(n_fft=128, win_length=128, hop_length=32, center=True, n_mels=0, log="none")
    x = RNG.standard_normal(2000)
    spec = torch.stft(
        torch.from_numpy(x),
        n_fft=128,
        hop_length=32,
        window=torch.hann_window(128, periodic=True, dtype=torch.float64),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    expected = (spec.abs() ** 2).numpy().T
    got = FeatureExtractor(front)(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * expected.max())


def test_view_frequency_labels_are_the_filter_peaks():
    """The spectrogram view labels feature rows with the frequency where each filter peaks."""
    front = FrontEnd(n_fft=512, win_length=400, n_mels=40, sample_rate=16000)
    peaks = np.argmax(mel_filters(front), axis=1) * 16000 / 512
    np.testing.assert_allclose(feature_hz(front), peaks, atol=16000 / 512)
    linear = FrontEnd(n_fft=256, win_length=256, n_mels=0)
    assert feature_hz(linear)[[0, 1, -1]].tolist() == [0.0, 62.5, 8000.0]


@pytest.mark.parametrize("rate,bins,low", [(16000, 80, 20.0), (8000, 23, 64.0)])
def test_kaldi_fbank_equals_kaldi_native_fbank(rate, bins, low):
    """Kaldi's fbank (k2-fsa's kaldi-native-fbank, the front end of FunASR/WeNet/sherpa models):
    per-frame DC removal and pre-emphasis, povey window, mel triangles in mel, log floor eps."""
    knf = pytest.importorskip("kaldi_native_fbank")
    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.frame_opts.samp_freq = rate
    options.mel_opts.num_bins = bins
    options.mel_opts.low_freq = low
    fbank = knf.OnlineFbank(options)
    x = RNG.uniform(-1, 1, rate) * 10000.0
    fbank.accept_waveform(rate, x.tolist())
    fbank.input_finished()
    expected = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    win, hop = rate * 25 // 1000, rate * 10 // 1000
    front = FrontEnd(sample_rate=rate, n_fft=1 << (win - 1).bit_length(), win_length=win,
                     hop_length=hop, window="povey", preemphasis=0.97, remove_dc=True,
                     frame_preemphasis=True, n_mels=bins, fmin=low, mel_scale="kaldi",
                     log="ln", log_floor=1.1920929e-07)  # fmt: skip
    got = FeatureExtractor(front)(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=5e-4)
