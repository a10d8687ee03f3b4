"""Engines give identical results; a killed audit resumes without recomputing finished tasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edgesal.eval.audit import evaluate
from edgesal.eval.engines import LocalEngine, RayEngine, SerialEngine, make_engine, run_tasks
from edgesal.eval.options import EvalOptions
from edgesal.eval.store import ResultStore
from edgesal.eval.tasks import Job
from edgesal.export import ExportOptions, export_saliency, save
from edgesal.methods import MethodOptions
from tests.eval.models import (
    onnx_twin,
    region_classifier,
    region_images,
    smooth_images,
    torch_net,
    write_images,
)

OPTIONS = EvalOptions(
    steps=5,
    road_fractions=(0.3, 0.6),
    sensitivity_samples=2,
    sanity_images=2,
    sanity_steps="every",
)


def _numbers(report: dict) -> str:
    """Everything but the run facts (engine, timing), as canonical JSON."""
    return json.dumps({k: v for k, v in report.items() if k != "run"}, sort_keys=True)


@pytest.fixture(scope="module")
def model():
    return export_saliency(
        onnx_twin(torch_net()),
        ExportOptions(methods=["vanilla", "integrated"], params=MethodOptions(steps=4)),
    )


@pytest.fixture(scope="module")
def serial(model, tmp_path_factory):
    return evaluate(model, smooth_images(5), tmp_path_factory.mktemp("serial"), OPTIONS)


def test_local_pool_gives_the_serial_numbers(model, serial, tmp_path):
    local = evaluate(model, smooth_images(5), tmp_path, OPTIONS, engine=LocalEngine(2))
    assert local["run"]["engine"] == "local"
    assert local["run"]["computed"] == local["run"]["tasks"] == 5 + 1 + 2 * 3
    assert _numbers(local) == _numbers(serial)


def test_a_second_run_reads_everything_back(model, serial, tmp_path):
    first = evaluate(model, smooth_images(5), tmp_path, OPTIONS)
    again = evaluate(model, smooth_images(5), tmp_path, OPTIONS)
    assert again["run"]["resumed"] == again["run"]["tasks"] and again["run"]["computed"] == 0
    assert _numbers(again) == _numbers(first) == _numbers(serial)
    changed = evaluate(
        model, smooth_images(5), tmp_path, EvalOptions(**{**OPTIONS.to_json(), "steps": 4})
    )
    assert changed["run"]["resumed"] == 0  # other settings: a fresh work folder


def test_store_ignores_torn_or_foreign_files(tmp_path):
    store = ResultStore(tmp_path)
    store.save("a", {"x": 1}, {"m": np.ones(3, np.float32)})
    numbers, arrays = store.load("a")
    assert numbers == {"x": 1} and arrays["m"].tolist() == [1, 1, 1]
    store.path("b").write_bytes(b"PK\x03\x04 torn")
    assert store.load("b") is None and store.load("missing") is None


def test_make_engine():
    assert isinstance(make_engine("local", 0), SerialEngine)
    assert isinstance(make_engine("local", 3), LocalEngine)
    assert isinstance(make_engine("ray", None, "auto"), RayEngine)


@pytest.mark.slow
def test_killed_audit_resumes_without_recomputing(tmp_path):
    """SIGKILL the CLI (its whole process group) once results start to land, run it again."""
    size = 96
    model = export_saliency(
        region_classifier(size=size),
        ExportOptions(methods=["vanilla", "integrated"], params=MethodOptions(steps=8)),
    )
    save(model, tmp_path / "m.sal.onnx")
    write_images(tmp_path / "images", region_images(8, size=size))
    out = tmp_path / "report"
    command = [
        sys.executable, "-m", "edgesal.eval", "eval", str(tmp_path / "m.sal.onnx"),
        "--images", str(tmp_path / "images"), "-o", str(out), "--workers", "1",
        "--sanity-images", "0", "--sensitivity-samples", "6", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not list(out.glob(".work/*/*.npz")) and time.time() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(out.glob(".work/*/*.npz")))
    assert 1 <= finished < 8, f"caught after {finished} of 8 images: not between first and last"
    assert not (out / "report.json").exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["resumed"] == finished
    assert report["run"]["computed"] == 8 - finished
    fresh = subprocess.run([*command[:-1], "--fresh", "-o", str(tmp_path / "fresh")], timeout=300)
    assert fresh.returncode == 0
    reference = json.loads((tmp_path / "fresh" / "report.json").read_text())
    assert reference["run"]["computed"] == 8 and reference["run"]["resumed"] == 0
    assert report["images"] == reference["images"]


@pytest.mark.slow
def test_ray_engine_gives_the_local_numbers(model, serial, tmp_path):
    ray = pytest.importorskip("ray", reason="ray is the optional 'ray' extra")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = evaluate(model, smooth_images(5), tmp_path, OPTIONS, engine=RayEngine())
        job = Job(b"", "none", OPTIONS)
        assert run_tasks(RayEngine(), job, [], None, False, "nothing")[1]["tasks"] == 0
    finally:
        ray.shutdown()
    assert result["run"]["engine"] == "ray"
    assert _numbers(result) == _numbers(serial)
