"""The device runtime imports and runs with numpy, OpenCV and one backend only.

A subprocess installs a ``sys.meta_path`` finder that refuses onnx (the builder), TensorFlow,
PyTorch and every part of edgesal but the runtime (``edgesal`` itself, an empty namespace, and
``edgesal.runtimes``), then runs a whole pipeline on a video file through the CLI. A second
run also blocks onnxruntime and runs a .tflite model on LiteRT alone.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgesal.runtimes.records import RecordReader
from tests.runtimes import synthetic_tflite
from tests.runtimes.clihelp import ROOT

BLOCKER = """
import sys
BLOCKED = set(sys.argv[1].split(","))
DEVICE = ("edgesal", "edgesal.runtimes")

def blocked(name):
    if name in DEVICE or name.startswith("edgesal.runtimes."):
        return False
    return name.split(".")[0] in BLOCKED

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ImportError(f"{name} is blocked on this simulated device")
        return None

sys.meta_path.insert(0, Blocker())
from edgesal.runtimes.cli import main
code = main(sys.argv[2:])
loaded = sorted(m for m in sys.modules if blocked(m))
assert not loaded, loaded
print("heavy modules loaded:", loaded)
sys.exit(code)
"""
HEAVY = "onnx,tensorflow,torch,edgesal,tf2onnx,jax"


def run_blocked(blocked: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, blocked, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_onnx_pipeline_without_onnx_tensorflow_torch(models, video, tmp_path):
    records = tmp_path / "r.salrec"
    proc = run_blocked(
        HEAVY,
        "run",
        str(models["multi"]),
        "--source",
        str(video),
        "--display",
        "no",
        "--records",
        str(records),
        "--record",
        str(tmp_path / "o.avi"),
        "--selfcheck-every",
        "5",
    )
    assert proc.returncode == 0, proc.stderr
    assert "heavy modules loaded: []" in proc.stdout
    assert len(list(RecordReader(records).frames())) == 40


def test_blocker_really_blocks(models, video):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER.replace("from edgesal.runtimes.cli import main", "import onnx"),
            "onnx",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "blocked on this simulated device" in proc.stderr


def test_tflite_pipeline_with_litert_only(video, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="LiteRT backend needs ai-edge-litert installed")
    model = synthetic_tflite.build(tmp_path / "m.tflite", size=32)
    proc = run_blocked(
        HEAVY + ",onnxruntime",
        "run",
        str(model),
        "--source",
        str(video),
        "--display",
        "no",
        "--records",
        str(tmp_path / "t.salrec"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "ai-edge-litert/XNNPACK" in proc.stderr
    frames = list(RecordReader(tmp_path / "t.salrec").frames())
    assert len(frames) == 40 and frames[0].saliency.shape == (32, 32)
