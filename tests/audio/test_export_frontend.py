"""``edgesal export --audio-frontend FILE``: the front end goes into ``edgesal.audio`` and
``edgesal run`` reads it; fields that describe no front end, or another feature count than the
input reads, are refused by name."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import onnx
import pytest

from edgesal.cli import main
from edgesal.runtimes.model import MethodChain
from edgesal.runtimes.signal_pipeline import SignalPipeline
from tests.audio import tone


@pytest.fixture()
def plain(tmp_path):
    path = tmp_path / "tone.onnx"
    onnx.save(tone.classifier(tone.fitted_offset(), rank=3), path)
    return path


def export(plain, front: dict, tmp_path, capsys) -> tuple[int, str]:
    (tmp_path / "front.json").write_text(json.dumps(front))
    out, front_file = tmp_path / "t.sal.onnx", tmp_path / "front.json"
    code = main(["export", str(plain), "-o", str(out), "--input", "mel", "--modality", "audio",
                 "--audio-frontend", str(front_file)])  # fmt: skip
    return code, capsys.readouterr().err


def test_front_end_from_the_export_flag_runs(plain, tmp_path, capsys):
    code, err = export(plain, asdict(tone.FRONT), tmp_path, capsys)
    assert code == 0, err
    pipe = SignalPipeline(MethodChain.load([str(tmp_path / "t.sal.onnx")]))
    assert pipe.input.front == tone.FRONT
    window = tone.clip(1, 2000.0)[: pipe.windowing.window].astype(np.float32)
    result = pipe.process(window)
    assert int(np.argmax(result.saliency.sum(axis=0))) in range(
        tone.tone_band(2000.0) - 1, tone.tone_band(2000.0) + 2
    )


def test_bad_front_ends_are_named(plain, tmp_path, capsys):
    code, err = export(plain, {**asdict(tone.FRONT), "n_mels": 20}, tmp_path, capsys)
    assert code == 2 and "makes 20 features per frame, input 'mel' [1, 98, 40]" in err
    code, err = export(plain, {"hop": 160}, tmp_path, capsys)
    assert code == 2 and "--audio-frontend: edgesal.audio has unknown field(s) ['hop']" in err
