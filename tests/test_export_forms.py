"""``edgesal export --for onnxruntime-cpu|litert|generic``: one map in every form.

The default .onnx file carries the masks onnxruntime's x86 CPU kernels keep blocked, so a plain
``ort.InferenceSession(path)`` runs the fast form; the generic file keeps the portable masks;
the TFLite converter, int8 quantization and GPU providers turn the fast form back (exactly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgesal.cli import main
from edgesal.converters.tflite.convert import to_tflite
from tests.converters.tflite_harness import interpreter
from tests.models import nchw_cnn

IMAGE = np.random.default_rng(4).standard_normal((1, 3, 16, 16)).astype(np.float32)


def _export(tmp_path: Path, name: str, *flags: str) -> Path:
    source = tmp_path / "m.onnx"
    if not source.exists():
        onnx.save(nchw_cnn(seed=2), str(source))
    out = tmp_path / name
    assert main(["export", str(source), "-o", str(out), "--method", "guided", *flags]) == 0
    return out


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _plain_session(path: Path) -> list[np.ndarray]:
    """The README's two lines: a default onnxruntime session on the file."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": IMAGE}
    )


def test_default_file_carries_the_blocked_masks_and_the_same_maps(tmp_path):
    fast = _export(tmp_path, "fast.onnx")
    generic = _export(tmp_path, "generic.onnx", "--for", "generic")
    litert = _export(tmp_path, "litert.onnx", "--for", "litert")
    assert "HardSigmoid" in _ops(fast) and not {"Greater", "Less", "And"} & _ops(fast)
    assert {"Greater", "Cast"} <= _ops(generic) and "HardSigmoid" not in _ops(generic)
    assert _ops(litert) == _ops(generic)
    for want, got in zip(_plain_session(generic), _plain_session(fast), strict=True):
        np.testing.assert_array_equal(got, want)


def test_tflite_from_either_form_is_the_same_model(tmp_path):
    fast = to_tflite(onnx.load(str(_export(tmp_path, "fast.onnx"))))
    generic = to_tflite(onnx.load(str(_export(tmp_path, "generic.onnx", "--for", "generic"))))
    outs = []
    for data in (fast, generic):
        it = interpreter(data)
        outs.append(it.get_signature_runner()(image=IMAGE.transpose(0, 2, 3, 1).copy()))
    assert sorted(outs[0]) == sorted(outs[1])
    for name in outs[0]:
        np.testing.assert_array_equal(outs[0][name], outs[1][name])
    tflite_out = _export(tmp_path, "m.tflite")
    assert tflite_out.read_bytes() == generic


def test_onnxruntime_cpu_form_is_refused_for_a_tflite_file(tmp_path, capsys):
    source = tmp_path / "m.onnx"
    onnx.save(nchw_cnn(), str(source))
    code = main(
        ["export", str(source), "-o", str(tmp_path / "m.tflite"), "--for", "onnxruntime-cpu"]
    )
    assert code == 2
    assert "--for onnxruntime-cpu" in capsys.readouterr().err


@pytest.mark.parametrize("runtime", ["tensorrt", ""])
def test_unknown_runtime_is_refused(tmp_path, runtime):
    source = tmp_path / "m.onnx"
    onnx.save(nchw_cnn(), str(source))
    with pytest.raises(SystemExit):
        main(["export", str(source), "-o", str(tmp_path / "s.onnx"), "--for", runtime])
