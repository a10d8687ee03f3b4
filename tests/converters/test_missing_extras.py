"""A feature whose extra is not installed says which extra to install instead of a traceback
(issue 13): imports are blocked by putting None into ``sys.modules``, as on a demo install."""

from __future__ import annotations

import sys

import onnx
import pytest

from edgesal.cli import main
from edgesal.converters import convert, to_tflite
from edgesal.converters.errors import ConversionError
from tests.models import nchw_cnn

EXTRA = 'pip install "edgesal[tf,tflite]"'


@pytest.fixture
def some_tflite(tmp_path):
    """A valid .tflite file (the project's writer), so only the blocked import can fail."""
    path = tmp_path / "model.tflite"
    path.write_bytes(to_tflite(nchw_cnn()))
    return path


@pytest.mark.parametrize("blocked", ["tflite", "tensorflow", "tf2onnx"])
def test_convert_names_the_extra(monkeypatch, some_tflite, blocked):
    monkeypatch.setitem(sys.modules, blocked, None)
    with pytest.raises(ConversionError) as caught:
        convert(some_tflite)
    assert f"needs '{blocked}', which is not installed: {EXTRA}" in str(caught.value)


def test_cli_convert_right_after_make_demo(monkeypatch, some_tflite, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tflite", None)
    assert main(["convert", str(some_tflite), "-o", str(tmp_path / "out.onnx")]) == 2
    err = capsys.readouterr().err
    assert EXTRA in err and "Traceback" not in err


def test_cli_names_the_extra_for_a_module_missing_deeper_down(monkeypatch, tmp_path, capsys):
    """The TFLite writer imports flatbuffers at module level: the CLI maps that to its extra."""
    for name in [m for m in sys.modules if m.startswith("edgesal.converters.tflite")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flatbuffers", None)
    source = tmp_path / "m.onnx"
    onnx.save(nchw_cnn(), str(source))
    assert main(["export", str(source), "-o", str(tmp_path / "m.tflite")]) == 2
    assert 'pip install "edgesal[tflite]"' in capsys.readouterr().err
