"""``edgesal eval MODEL --samples FILE``: deletion/insertion over time steps and features for
series and tabular exports, checked against curves recomputed by hand with onnxruntime, a random
ranking as the control, the series plot with its band, and named errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgesal.errors import InputError
from edgesal.eval.perturb import auc
from edgesal.eval.series import evaluate_samples, read_samples
from edgesal.runtimes.model import probabilities
from tests.eval import series_models as sm


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    for kind in ("series", "tabular"):
        onnx.save(sm.exported(kind), folder / f"{kind}.onnx")
    np.save(folder / "series.npy", sm.bump_samples(5))
    rows = np.random.default_rng(1).standard_normal((5, sm.F)).astype(np.float32)
    np.savetxt(folder / "tabular.csv", rows, delimiter=",")
    return folder


def class_prob(model_path, x: np.ndarray, target: int) -> float:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return float(probabilities(session.run(["logits"], {"x": x[None]})[0][0])[target])


def test_series_deletion_over_time_steps(folder, tmp_path):
    model = folder / "series.onnx"
    report = evaluate_samples(
        str(model),
        str(folder / "series.npy"),
        str(tmp_path),
        steps=8,
        deletion_baseline="zeros",
        insertion_canvas="zeros",
        plots=1,
    )
    assert report["map_axes"] == ["T"] and report["units"] == sm.T
    method, random = report["methods"]["gradxinput"], report["controls"]["random"]
    assert method["deletion_auc"]["mean"] < 0.5 * random["deletion_auc"]["mean"]
    assert method["insertion_auc"]["mean"] > random["insertion_auc"]["mean"]
    # recompute one deletion point by hand: the top 8 time steps (both channels) set to zero
    x = np.load(folder / "series.npy")[0]
    sample = report["samples"][0]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    saliency = session.run(["saliency"], {"x": x[None]})[0][0]
    deleted = x.copy()
    deleted[np.argsort(-saliency, kind="stable")[:8]] = 0.0
    curve = sample["curves"]["gradxinput"]["deletion"]
    assert curve[1] == pytest.approx(class_prob(model, deleted, sample["target"]), abs=1e-6)
    assert curve[0] == pytest.approx(sample["probability"], abs=1e-6)
    assert curve[-1] == pytest.approx(class_prob(model, np.zeros_like(x), sample["target"]))
    assert method["deletion_auc"]["per_sample"][0] == pytest.approx(auc(np.array(curve)))
    assert (tmp_path / "sample_0.png").stat().st_size > 0 and (tmp_path / "curves.png").exists()
    assert json.loads((tmp_path / "report.json").read_text())["modality"] == "series"
    page = (tmp_path / "report.html").read_text()
    assert "gradxinput" in page and "random (control)" in page and page.count("<img") == 2


def test_tabular_mean_baseline_is_the_feature_mean(folder, tmp_path):
    model = folder / "tabular.onnx"
    rows = read_samples(str(folder / "tabular.csv"), (sm.F,))
    report = evaluate_samples(
        str(model),
        str(folder / "tabular.csv"),
        str(tmp_path),
        steps=12,
        deletion_baseline="mean",
        insertion_canvas="mean",
        plots=0,
    )
    assert report["units"] == sm.F
    sample = report["samples"][2]
    last = sample["curves"]["gradxinput"]["deletion"][-1]
    assert last == pytest.approx(class_prob(model, rows.mean(axis=0), sample["target"]), abs=1e-6)
    method, random = report["methods"]["gradxinput"], report["controls"]["random"]
    assert method["deletion_auc"]["mean"] < random["deletion_auc"]["mean"]
    # only features 2 and 7 matter: after 2 of 12 steps the sample is as good as deleted
    curve = np.array(sample["curves"]["gradxinput"]["deletion"])
    assert curve[2] == pytest.approx(last, abs=1e-6)


@pytest.mark.slow
def test_cli(folder, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "edgesal.eval", "eval", str(folder / "tabular.onnx"),
         "--samples", str(folder / "tabular.csv"), "-o", str(tmp_path / "r"), "--steps", "4"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "gradxinput: deletion_auc" in done.stdout and "random: deletion_auc" in done.stdout


def test_bad_inputs(folder, tmp_path):
    with pytest.raises(InputError, match=r"shape \[5, 12\], the model takes samples of \[64, 2\]"):
        evaluate_samples(str(folder / "series.onnx"), str(folder / "tabular.csv"), str(tmp_path))
    with pytest.raises(InputError, match="no such file"):
        read_samples(str(tmp_path / "absent.npy"), (3,))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not numeric samples"):
        read_samples(str(tmp_path / "obj.npy"), (1,))


def test_image_models_are_sent_to_images(tmp_path):
    from tests.runtimes import synthetic

    image = synthetic.build(tmp_path / "img.onnx")
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(InputError, match="explains an image input; evaluate images with --images"):
        evaluate_samples(str(image), str(tmp_path / "x.npy"), str(tmp_path / "o"))


def test_nct_series_with_a_map_per_channel(tmp_path):
    """[N, C, T] export without a channel reduction: units are (channel, step) cells."""
    model = tmp_path / "nct.onnx"
    onnx.save(sm.exported("series_nct"), model)
    np.save(tmp_path / "x.npy", sm.bump_samples(3).transpose(0, 2, 1))
    report = evaluate_samples(str(model), str(tmp_path / "x.npy"), str(tmp_path / "r"), steps=8,
                              deletion_baseline="zeros", plots=0)  # fmt: skip
    assert report["map_axes"] == ["C", "T"] and report["units"] == sm.C * sm.T
    method, random = report["methods"]["gradxinput"], report["controls"]["random"]
    assert method["deletion_auc"]["mean"] < 0.5 * random["deletion_auc"]["mean"]
