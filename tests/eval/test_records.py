"""Auditing a device's records: recorded by the real device runtime, read with its own reader."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgesal.eval.cli import main
from edgesal.export import ExportOptions, export_saliency, save
from edgesal.methods import MethodOptions
from tests.eval.models import region_classifier, write_images


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """The runtime ran a two-method model on 4 frames (40x30, cropped to 32x32) and recorded."""
    root = tmp_path_factory.mktemp("device")
    model = export_saliency(
        region_classifier(),
        ExportOptions(methods=["vanilla", "integrated"], params=MethodOptions(steps=4)),
    )
    save(model, root / "a.sal.onnx")
    save(
        export_saliency(region_classifier(seed=5), ExportOptions(method="vanilla")), root / "b.onnx"
    )
    rng = np.random.default_rng(0)
    write_images(
        root / "frames",
        {f"f{i}.png": rng.integers(0, 256, (30, 40, 3), np.uint8) for i in range(4)},
    )
    command = [
        sys.executable, "-m", "edgesal.runtimes", "run", str(root / "a.sal.onnx"),
        "--source", str(root / "frames"), "--records", str(root / "a.salrec"), "--display", "no",
        "--smooth", "0", "--threads", "1", "--selfcheck-every", "2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return root


def _eval(capsys, *argv):
    code = main(["eval", *map(str, argv), "--no-progress", "--workers", "0"])
    return code, capsys.readouterr()


def test_device_maps_match_this_machines(capsys, device, tmp_path):
    code, (out, err) = _eval(
        capsys, device / "a.sal.onnx", "--records", device / "a.salrec", "--images",
        device / "frames", "-o", tmp_path, "--road-fractions", "off", "--steps", "4",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kind"] == "records" and report["frames"] == 4
    assert report["device"]["maps"] == 4 and report["device"]["selfchecks"] == 2
    assert [i["frame"] for i in report["images"]] == [0, 1, 2, 3]
    assert all(i["method"] == "vanilla" for i in report["images"])  # the main output's map
    fidelity = report["summary"]["fidelity"]
    assert fidelity["spearman"]["min"] > 0.99  # 8-bit quantized on the device, that is all
    assert report["summary"]["top1_agreement"] == 1.0
    methods = report["summary"]["methods"]
    device_auc = methods["device"]["deletion_auc"]["mean"]
    assert device_auc == pytest.approx(methods["workstation"]["deletion_auc"]["mean"], abs=0.02)
    assert "Device maps vs this machine" in (tmp_path / "report.html").read_text()


def test_records_alone_are_summarized(capsys, device, tmp_path):
    code, (_, err) = _eval(
        capsys, device / "a.sal.onnx", "--records", device / "a.salrec", "-o", tmp_path
    )
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["images"] == [] and report["device"]["frames"] == 4
    assert report["records"]["recorded_as"] == [str(device / "a.sal.onnx")] * 2


def test_records_of_another_model_are_refused(capsys, device, tmp_path):
    code, (_, err) = _eval(
        capsys, device / "b.onnx", "--records", device / "a.salrec", "-o", tmp_path
    )
    assert code == 2
    assert "a.salrec was recorded with" in err and "a.sal.onnx (sha256" in err
    assert "not with" in err and "b.onnx (sha256" in err


def test_not_a_records_file(capsys, device, tmp_path):
    junk = tmp_path / "junk.salrec"
    junk.write_bytes(b"hello")
    code, (_, err) = _eval(capsys, device / "a.sal.onnx", "--records", junk, "-o", tmp_path)
    assert code == 2 and "junk.salrec" in err and "not a .salrec file" in err


def test_frames_that_are_not_the_devices(capsys, device, tmp_path):
    other = tmp_path / "frames"
    write_images(other, {f"f{i}.png": np.zeros((20, 20, 3), np.uint8) for i in range(4)})
    code, (_, err) = _eval(
        capsys, device / "a.sal.onnx", "--records", device / "a.salrec", "--images", other,
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 2 and "frame 0 was 40x30 but f0.png is 20x20" in err
    cv2.imwrite(str(other / "f0.png"), np.zeros((30, 40, 3), np.uint8))
    for i in (1, 2, 3):
        (other / f"f{i}.png").unlink()
    code, (_, err) = _eval(
        capsys, device / "a.sal.onnx", "--records", device / "a.salrec", "--images", other,
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 2 and "--images holds only 1 readable images" in err
