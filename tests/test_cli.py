"""The CLI end to end on small models: formats, convert, info, ops, zoo list."""

from __future__ import annotations

import onnx

from edgesal.cli import main
from tests.models import nchw_cnn


def _model(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(nchw_cnn(), str(path))
    return path


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
