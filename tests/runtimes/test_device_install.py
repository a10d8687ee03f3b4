"""Device install profiles: ``pip install '.[device]'`` / ``'.[device-litert]'`` into a clean venv
pulls only what a device needs, and ``edgesal run`` works there on a video file.

Slow (a real pip install from PyPI into a new venv); run by CI like every slow test.
"""

from __future__ import annotations

import subprocess
import venv

import pytest

from edgesal.runtimes.records import RecordReader
from tests.runtimes import synthetic_tflite
from tests.runtimes.clihelp import ROOT

NOT_ON_A_DEVICE = ("onnx", "torch", "tensorflow", "tf2onnx", "scikit-learn", "scikit-image")


def installed(python: str) -> set[str]:
    out = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split("==")[0].lower() for line in out.splitlines()}


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["device", "device-litert"])
def test_device_profile_installs_and_runs(profile, models, video, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{ROOT}[{profile}]"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    packages = installed(python)
    heavy = sorted(p for p in NOT_ON_A_DEVICE if p in packages)
    assert not heavy, f"the {profile} profile pulls in {heavy}"
    if profile == "device":
        model = models["vanilla"]
        assert "onnxruntime" in packages
    else:
        pytest.importorskip("ai_edge_litert", reason="building the test .tflite needs its schema")
        model = synthetic_tflite.build(tmp_path / "m.sal.tflite", size=32)
        assert "ai-edge-litert" in packages and "onnxruntime" not in packages
    records = tmp_path / "r.salrec"
    edgesal = str(env_dir / "bin" / "edgesal")
    proc = subprocess.run(
        [
            edgesal,
            "run",
            str(model),
            "--source",
            str(video),
            "--display",
            "no",
            "--records",
            str(records),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "frames: 40" in proc.stderr
    assert len(list(RecordReader(records).frames())) == 40
    inspect = subprocess.run(
        [edgesal, "records", "inspect", str(records)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert inspect.returncode == 0 and "40 frames" in inspect.stdout
