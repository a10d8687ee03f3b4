"""`edgesal export` runtime-metadata flags: a model without edgesal metadata gets preprocessing
and class names that the device runtime then uses without flags."""

from __future__ import annotations

import re

import onnx
import pytest

from edgesal import metadata
from edgesal.cli import main
from edgesal.errors import InputError
from edgesal.export.pipeline import _checked_labels
from edgesal.runtimes.model import MethodChain
from tests.models import nchw_cnn


@pytest.fixture
def plain(tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx.save(nchw_cnn(classes=5), str(path))
    return path


@pytest.fixture
def labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("red\ngreen\n\nblue\nyellow\nwhite\n")
    return path


def test_flags_reach_the_metadata_and_the_runtime(plain, labels, tmp_path):
    out = tmp_path / "cnn.sal.onnx"
    flags = ["--mean", "0.4,0.5,0.6", "--std", "0.2,0.25,0.3", "--color", "BGR"]
    flags += ["--pixel-scale", "1", "--resize-shorter", "20", "--labels", str(labels)]
    assert main(["export", str(plain), "-o", str(out), *flags]) == 0
    meta = metadata.read(onnx.load(str(out)))
    assert meta["preprocess"] == {
        "size": [16, 16],
        "layout": "NCHW",
        "mean": [0.4, 0.5, 0.6],
        "std": [0.2, 0.25, 0.3],
        "color": "BGR",
        "pixel_scale": 1.0,
        "resize_shorter": 20,
    }
    assert meta["labels"] == ["red", "green", "blue", "yellow", "white"]
    contract = MethodChain.load([str(out)])[0].contract
    assert contract.preprocess.color == "BGR" and tuple(contract.preprocess.mean) == (0.4, 0.5, 0.6)
    assert contract.preprocess.resize_shorter == 20 and contract.label(3) == "yellow"


def test_without_flags_the_model_keeps_its_own_metadata(plain, tmp_path):
    model = onnx.load(str(plain))
    metadata.write(model, {"preprocess": {"mean": [0.1], "std": [0.2]}, "labels": list("abcde")})
    onnx.save(model, str(plain))
    out = tmp_path / "cnn.sal.onnx"
    assert main(["export", str(plain), "-o", str(out)]) == 0
    meta = metadata.read(onnx.load(str(out)))
    assert meta["preprocess"] == {"mean": [0.1], "std": [0.2]}
    assert meta["labels"] == list("abcde")
    assert main(["export", str(plain), "-o", str(out), "--color", "BGR"]) == 0
    merged = metadata.read(onnx.load(str(out)))["preprocess"]
    assert merged["mean"] == [0.1] and merged["color"] == "BGR"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--std", "0,1,1"], r"--std 0.0,1.0,1.0: every value must be > 0"),
        (["--mean", "0.1,0.2"], r"--mean: 2 values for an image with 3 channels"),
        (["--pixel-scale", "0"], r"--pixel-scale 0.0: must be > 0"),
        (["--resize-shorter", "-1"], r"--resize-shorter -1: must be >= 0"),
        (["--labels", "missing.txt"], r"--labels missing.txt: no such file"),
    ],
)
def test_bad_flags_name_the_flag(plain, tmp_path, capsys, flags, message):
    assert main(["export", str(plain), "-o", str(tmp_path / "o.onnx"), *flags]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_label_count_must_match_the_scores(plain, tmp_path, capsys):
    short = tmp_path / "four.txt"
    short.write_text("a\nb\nc\nd\n")
    assert main(["export", str(plain), "-o", str(tmp_path / "o.onnx"), "--labels", str(short)]) == 2
    assert "4 names for output 'logits', which scores 5 classes" in capsys.readouterr().err


def test_empty_or_binary_label_files_are_refused(plain, tmp_path, capsys):
    empty, binary = tmp_path / "empty.txt", tmp_path / "bin.txt"
    empty.write_text("\n\n")
    binary.write_bytes(b"\xff\xfe\x00\x80")
    for path, message in [(empty, "no class names"), (binary, "not UTF-8 text")]:
        assert (
            main(["export", str(plain), "-o", str(tmp_path / "o.onnx"), "--labels", str(path)]) == 2
        )
        assert message in capsys.readouterr().err


def test_api_refuses_unknown_preprocess_fields():
    from edgesal.errors import InputError
    from edgesal.export import ExportOptions, export_saliency

    with pytest.raises(InputError, match=r"unknown field\(s\) \['scale'\]"):
        export_saliency(nchw_cnn(classes=5), ExportOptions(preprocess={"scale": 2.0}))


def test_labels_as_a_json_list_like_the_device_flag(plain, tmp_path, capsys):
    """`edgesal export --labels` and `edgesal run --labels` read the same formats."""
    listed, broken = tmp_path / "labels.json", tmp_path / "broken.json"
    listed.write_text('["red", "green", "blue", "yellow", "white"]')
    broken.write_text('["red", ')
    out = tmp_path / "cnn.sal.onnx"
    assert main(["export", str(plain), "-o", str(out), "--labels", str(listed)]) == 0
    assert metadata.read(onnx.load(str(out)))["labels"][4] == "white"
    assert main(["export", str(plain), "-o", str(out), "--labels", str(broken)]) == 2
    assert "not a JSON list of names" in capsys.readouterr().err


def test_labels_are_not_counted_against_a_symbolic_class_axis():
    """A score output [N, C] with C symbolic has no known class count: labels pass unchecked
    (a symbol used to reach math.prod and fail with a garbled count)."""
    h = onnx.helper
    f = onnx.TensorProto.FLOAT
    graph = h.make_graph(
        [h.make_node("Identity", ["x"], ["scores"])],
        "g",
        [h.make_tensor_value_info("x", f, ["N", "C"])],
        [h.make_tensor_value_info("scores", f, ["N", "C"])],
    )
    model = h.make_model(graph)
    assert _checked_labels(["a", "b"], model, "scores") == ["a", "b"]
    fixed = h.make_model(
        h.make_graph(
            [h.make_node("Identity", ["x"], ["scores"])],
            "g",
            [h.make_tensor_value_info("x", f, [1, 3])],
            [h.make_tensor_value_info("scores", f, [1, 3])],
        )
    )
    with pytest.raises(InputError, match="2 names for output 'scores', which scores 3"):
        _checked_labels(["a", "b"], fixed, "scores")
