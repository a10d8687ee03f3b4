"""The CLI end to end on small models: formats, convert, info, ops, zoo list."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgesal.cli import main
from edgesal.onnx_io import default_opset
from tests.models import nchw_cnn


def _model(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(nchw_cnn(), str(path))
    return path


def _opset11_model(tmp_path):
    """The small CNN declared at opset 11 (every op it uses has the same form there)."""
    model = nchw_cnn()
    model.opset_import[0].version = 11
    model.ir_version = 6
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "old.onnx"
    onnx.save(model, str(path))
    return path


def _run(path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})


def test_export_to_tflite_by_suffix(tmp_path, capsys):
    path = _model(tmp_path)
    assert main(["export", str(path), "-o", str(tmp_path / "m.sal.tflite")]) == 0
    data = (tmp_path / "m.sal.tflite").read_bytes()
    assert data[4:8] == b"TFL3"


def test_export_all_methods_writes_one_file_each(tmp_path, capsys):
    path = _model(tmp_path)
    out = tmp_path / "m.sal.onnx"
    assert (
        main(
            [
                "export",
                str(path),
                "-o",
                str(out),
                "--method",
                "all",
                "--steps",
                "2",
                "--samples",
                "2",
            ]
        )
        == 0
    )
    written = sorted(p.name for p in tmp_path.glob("m.sal.*.onnx"))
    assert written == sorted(
        f"m.sal.{m}.onnx"
        for m in [
            "vanilla",
            "gradxinput",
            "guided",
            "integrated",
            "smoothgrad",
            "gradcam",
            "gradcampp",
        ]
    )


def test_convert_onnx_passes_through_with_checks(tmp_path, capsys):
    path = _model(tmp_path)
    assert main(["convert", str(path), "-o", str(tmp_path / "c.onnx")]) == 0
    converted = onnx.load(str(tmp_path / "c.onnx"))
    assert not any(n.op_type == "BatchNormalization" for n in converted.graph.node)


def test_info_and_ops(tmp_path, capsys):
    path = _model(tmp_path)
    main(["export", str(path), "-o", str(tmp_path / "s.onnx")])
    capsys.readouterr()
    assert main(["info", str(tmp_path / "s.onnx")]) == 0
    out = capsys.readouterr().out
    assert "output saliency" in out and "meta   method: vanilla" in out
    assert main(["ops"]) == 0
    assert "Conv" in capsys.readouterr().out


@pytest.mark.parametrize("opset", [13, 17])
def test_convert_onnx_upgrades_to_requested_opset(tmp_path, capsys, opset):
    """--opset is honoured for ONNX input: an opset-11 model comes out at the requested opset,
    computing the same thing, and the message reports the opset read back from the model."""
    path, out = _opset11_model(tmp_path), tmp_path / "new.onnx"
    assert main(["convert", str(path), "-o", str(out), "--opset", str(opset)]) == 0
    converted = onnx.load(str(out))
    assert default_opset(converted) == opset
    assert converted.ir_version >= helper.find_min_ir_version_for(list(converted.opset_import))
    onnx.checker.check_model(converted, full_check=True)
    assert f"nodes, opset {opset})" in capsys.readouterr().out
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x)[0], _run(path, x)[0], rtol=1e-5, atol=1e-6)


def test_convert_message_reports_the_opset_written(tmp_path, capsys):
    """Without --opset an ONNX model keeps its own opset, raised to edgesal's floor (13) when
    older; the message reports what the written file holds."""
    out = tmp_path / "new.onnx"
    assert main(["convert", str(_opset11_model(tmp_path)), "-o", str(out)]) == 0
    written = default_opset(onnx.load(str(out)))
    assert written == 13
    assert capsys.readouterr().out.strip().endswith(f"nodes, opset {written})")
    newer = tmp_path / "m.onnx"
    model = nchw_cnn()
    model.opset_import[0].version = 18
    onnx.save(model, str(newer))
    assert main(["convert", str(newer), "-o", str(out)]) == 0
    assert default_opset(onnx.load(str(out))) == 18


@pytest.mark.parametrize(
    "opset, reason",
    [
        ("13", r"converting down is not supported \(ask for opset 17 or newer\)"),
        ("12", "converting down is not supported"),
        ("999", "knows opsets up to"),
    ],
)
def test_convert_onnx_refuses_an_opset_it_cannot_reach(tmp_path, capsys, opset, reason):
    """A downgrade, or an opset the installed onnx does not know: one line naming the file and
    both opsets, exit status 2, nothing written."""
    path, out = _model(tmp_path), tmp_path / "c.onnx"
    assert main(["convert", str(path), "-o", str(out), "--opset", opset]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgesal: error: {path}: cannot convert the model from opset 17 to ")
    assert f"to opset {opset}: " in err
    assert re.search(reason, err), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_convert_onnx_below_the_gradient_floor(tmp_path, capsys):
    """Upgrading an opset-11 model to 12 is possible but below what edgesal works with (13)."""
    path = _opset11_model(tmp_path)
    assert main(["convert", str(path), "-o", str(tmp_path / "c.onnx"), "--opset", "12"]) == 2
    err = capsys.readouterr().err
    assert "from opset 11 to opset 12: edgesal needs opset 13 or newer" in err


def _with_lrn_output(tmp_path):
    """The small CNN with a second output through LRN, which has no TFLite lowering; it is off
    the path from the image to the scores, so the saliency export itself succeeds."""
    model = nchw_cnn()
    model.graph.node.append(helper.make_node("LRN", ["r1"], ["features"], name="lrn", size=3))
    model.graph.output.append(
        helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8, 16, 16])
    )
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "lrn.onnx"
    onnx.save(model, str(path))
    return path


def test_export_to_tflite_refuses_op_without_lowering(tmp_path, capsys):
    """--format tflite on a model with an operator TFLite builtins cannot express: a clean
    message naming the op and its node, exit status 2, no traceback, no file."""
    out = tmp_path / "lrn.sal.tflite"
    code = main(["export", str(_with_lrn_output(tmp_path)), "-o", str(out), "--format", "tflite"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("edgesal: error: cannot convert to TFLite builtins")
    assert "  - LRN (node 'lrn')" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()
    assert main(["export", str(tmp_path / "lrn.onnx"), "-o", str(tmp_path / "s.onnx")]) == 0


PARSER_WITHOUT_TOOLKIT = """
import sys
HEAVY = {"onnx", "onnxruntime", "torch", "tensorflow", "tf2onnx", "tflite", "tokenizers"}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{name} is blocked: a device-only install")

sys.meta_path.insert(0, Blocker())
from edgesal.cli import build_parser
from edgesal.options import ExportOptions

args = build_parser().parse_args(["export", "m.onnx", "-o", "m.sal.onnx"])
d = ExportOptions()
assert (args.method, args.target, args.normalize) == (d.method, d.target, d.normalize), args
assert (args.boxes_format, args.boxes_scale) == (d.boxes_format, d.boxes_scale), args
print(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY))
"""


def test_parser_builds_without_the_toolkit():
    """Device-only installs (numpy, OpenCV, one backend) build the whole parser: every option
    dataclass the flags read their defaults from is importable without onnx."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", PARSER_WITHOUT_TOOLKIT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
