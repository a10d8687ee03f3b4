"""The eval and compare commands: help, registration into a parent CLI, runs, and bad input."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from edgesal.eval.cli import main, register
from edgesal.export import ExportOptions, export_saliency, save
from edgesal.methods import MethodOptions
from tests.eval.models import REGION, region_classifier, region_images, write_images
from tests.models import nchw_cnn

FAST = [
    "--steps", "4", "--road-fractions", "off", "--sensitivity-samples", "0",
    "--sanity-images", "0", "--workers", "0", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save(
        export_saliency(
            region_classifier(),
            ExportOptions(methods=["vanilla", "integrated"], params=MethodOptions(steps=4)),
        ),
        root / "a.sal.onnx",
    )
    save(
        export_saliency(region_classifier(seed=1), ExportOptions(method="vanilla")), root / "b.onnx"
    )
    save(nchw_cnn(), root / "plain.onnx")
    write_images(root / "images", region_images(3))
    (root / "boxes.json").write_text(json.dumps({n: list(REGION) for n in region_images(3)}))
    (root / "empty").mkdir()
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--engine" in text and "--workers" in text
    if command == "eval":
        for flag in ("--boxes", "--records", "--sanity-steps", "--road-fractions", "--controls"):
            assert flag in text


def test_register_adds_both_commands_to_a_parent_parser():
    parser = argparse.ArgumentParser(prog="edgesal")
    register(parser.add_subparsers())
    args = parser.parse_args(["eval", "m.onnx", "--images", "x", "-o", "out"])
    assert callable(args.func) and args.steps == 20 and args.engine == "local"
    args = parser.parse_args(["compare", "a.onnx", "b.onnx", "--images", "x", "-o", "out"])
    assert callable(args.func) and args.top_k == 0.1


def test_eval_runs_and_writes_the_report(capsys, files, tmp_path):
    code, out, err = run(
        capsys, "eval", files / "a.sal.onnx", "--images", files / "images",
        "--boxes", files / "boxes.json", "--tolerance", "1.5", "-o", tmp_path, *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert "vanilla:" in out and "pointing 1.000" in out and "control random:" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["options"]["road_fractions"] == [] and report["sanity"] is None
    assert (tmp_path / "report.html").is_file()


def test_compare_runs(capsys, files, tmp_path):
    code, out, err = run(
        capsys, "compare", files / "a.sal.onnx", files / "b.onnx", "--images", files / "images",
        "-o", tmp_path, "--workers", "0", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "vanilla: spearman" in out and "top-1 agreement 1.000" in out


BAD = [
    (["--images", "{root}/empty"], "--images {root}/empty: no image files"),
    (["--images", "{root}/nowhere"], "--images {root}/nowhere: no such folder"),
    ([], "give --images FOLDER (or --records FILE)"),
    (["--images", "{root}/images", "--boxes", "{root}/nobox.json"], "no such file"),
    (["--images", "{root}/images", "--steps", "0"], "--steps 0: must be >= 1"),
    (["--images", "{root}/images", "--road-fractions", "0.5,1.5"], "--road-fractions"),
    (["--images", "{root}/images", "--controls", "edges"], "--controls"),
    (["--images", "{root}/images", "--sanity-steps", "0,9"], "--sanity-steps 0,9"),
    (["--images", "{root}/images", "--engine", "local", "--workers", "-1"], "--workers -1"),
]


@pytest.mark.parametrize(("flags", "message"), BAD)
def test_bad_input_is_a_clear_error(capsys, files, tmp_path, flags, message):
    flags = [f.format(root=files) for f in flags]
    sanity = ["--sanity-images", "1"] if "--sanity-steps" in flags else []  # the last one wins
    code, _, err = run(capsys, "eval", files / "a.sal.onnx", "-o", tmp_path, *FAST, *sanity, *flags)
    assert code == 2
    assert message.format(root=files) in err


def test_images_without_boxes(capsys, files, tmp_path):
    boxes = tmp_path / "some.json"
    boxes.write_text(json.dumps({"noise0.png": [0, 0, 4, 4]}))
    code, _, err = run(
        capsys, "eval", files / "a.sal.onnx", "--images", files / "images", "--boxes", boxes,
        "-o", tmp_path / "out", *FAST,
    )  # fmt: skip
    assert code == 2
    assert "no boxes for 2 of 3 images (noise1.png, noise2.png)" in err
    assert "the pointing game needs a box for every image" in err


def test_not_a_saliency_model(capsys, files, tmp_path):
    code, _, err = run(
        capsys, "eval", files / "plain.onnx", "--images", files / "images", "-o", tmp_path, *FAST
    )
    assert code == 2
    assert "plain.onnx: model has no saliency output" in err and "edgesal export" in err


def test_missing_and_corrupt_model(capsys, files, tmp_path):
    code, _, err = run(
        capsys, "eval", tmp_path / "none.onnx", "--images", files / "images", "-o", tmp_path
    )
    assert code == 2 and "none.onnx: no such file" in err
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01junk" * 10)
    code, _, err = run(
        capsys, "eval", tmp_path / "junk.onnx", "--images", files / "images", "-o", tmp_path
    )
    assert code == 2 and "junk.onnx" in err


def test_a_tensor_target_has_no_class_probability(capsys, files, tmp_path):
    model = export_saliency(region_classifier(), ExportOptions(target="output:logits:sum"))
    save(model, tmp_path / "t.onnx")
    code, _, err = run(
        capsys, "eval", tmp_path / "t.onnx", "--images", files / "images", "-o", tmp_path, *FAST
    )
    assert code == 2 and "target 'output:logits:sum' explains a tensor, not a class" in err


def test_unreadable_image(capsys, files, tmp_path):
    folder = tmp_path / "images"
    write_images(folder, region_images(1))
    (folder / "broken.png").write_bytes(b"not a png")
    code, _, err = run(
        capsys, "eval", files / "a.sal.onnx", "--images", folder, "-o", tmp_path, *FAST
    )
    assert code == 2 and "broken.png: not a readable image file" in err


def test_compare_needs_a_common_method(capsys, files, tmp_path):
    ig = export_saliency(region_classifier(), ExportOptions(method="integrated"))
    save(ig, tmp_path / "ig.onnx")
    code, _, err = run(
        capsys, "compare", files / "b.onnx", tmp_path / "ig.onnx", "--images", files / "images",
        "-o", tmp_path, "--workers", "0",
    )  # fmt: skip
    assert code == 2 and "no method in common" in err


def test_grey_and_odd_sized_images_are_cropped(capsys, files, tmp_path):
    import cv2

    folder = tmp_path / "odd"
    folder.mkdir()
    cv2.imwrite(str(folder / "grey.png"), np.full((50, 70), 128, np.uint8))
    code, _, err = run(
        capsys, "eval", files / "a.sal.onnx", "--images", folder, "-o", tmp_path, *FAST
    )
    assert code == 0, err
