"""Fixtures: the tone model (tests/audio/tone.py) and wav clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audio import tone
from tests.runtimes import synthetic


@pytest.fixture(scope="session")
def tone_model(tmp_path_factory) -> Path:
    return tone.build(tmp_path_factory.mktemp("audio") / "tone.sal.onnx")


@pytest.fixture(scope="session")
def tone_wav(tmp_path_factory) -> Path:
    """3 s: 1 s noise, 1 s noise + 1 kHz tone, 1 s noise (16 kHz mono)."""
    noise = tone.clip(3, None, seed=5)
    with_tone = tone.clip(3, 1000.0, seed=5)
    samples = noise.copy()
    samples[16000:32000] = with_tone[16000:32000]
    return tone.write_wav(tmp_path_factory.mktemp("wav") / "tone.wav", samples, 16000)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    return {"vanilla": synthetic.build(tmp_path_factory.mktemp("img") / "vanilla.onnx")}
