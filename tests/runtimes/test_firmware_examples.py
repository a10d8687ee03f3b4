"""Every firmware example runs in its simulation mode (video file as camera, fake heat)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from edgesal.runtimes.records import RecordReader
from tests.runtimes import synthetic, synthetic_tflite
from tests.runtimes.clihelp import ROOT

EXAMPLES = ROOT / "firmware_examples"


def example(path: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_heat_cycle(records_path) -> None:
    reader = RecordReader(records_path)
    events = reader.events()
    levels = [e["to_level"] for e in events]
    assert levels and max(levels) >= 2, events
    assert levels[-1] == 0, "the governor must recover once the fake zone cools"
    assert any("temperature" in e["reason"] for e in events)
    assert len(list(reader.frames(decode=False))) > 20


def test_raspberry_pi_simulation(models, video, tmp_path):
    # The Pi example's point is LiteRT: the dev extras install ai-edge-litert, so the run must be
    # on the .tflite model (checked in the records header below), never silently on ONNX.
    model = synthetic_tflite.build(tmp_path / "pi.sal.tflite", size=32)
    proc = example(
        "raspberry_pi/pi_saliency.py",
        str(model),
        "--simulate",
        str(video),
        "--seconds",
        "6",
        "--serve",
        "127.0.0.1:0",
        "--records",
        str(tmp_path / "pi.salrec"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "stopped by: SIGINT" in proc.stderr
    check_heat_cycle(tmp_path / "pi.salrec")
    ran = RecordReader(tmp_path / "pi.salrec").headers()[0]["models"][0]
    assert ran["model"] == str(model) and ran["backend"].startswith("ai-edge-litert"), ran


def test_jetson_simulation_falls_back_to_cpu(models, video, tmp_path):
    proc = example(
        "jetson/jetson_saliency.py",
        str(models["multi"]),
        "--simulate",
        str(video),
        "--seconds",
        "6",
        "--serve",
        "127.0.0.1:0",
        "--trt-cache",
        str(tmp_path / "trt"),
        "--records",
        str(tmp_path / "j.salrec"),
    )
    assert proc.returncode == 0, proc.stderr
    check_heat_cycle(tmp_path / "j.salrec")
    methods = {f.meta["method"] for f in RecordReader(tmp_path / "j.salrec").frames(decode=False)}
    assert {"integrated", "vanilla"} <= methods  # the hot phase switched to a cheaper method


def test_jetson_csi_pipeline_string():
    sys.path.insert(0, str(EXAMPLES / "jetson"))
    try:
        from jetson_saliency import csi_pipeline
    finally:
        sys.path.pop(0)
    text = csi_pipeline(1, 1920, 1080, 30)
    assert text.startswith("nvarguscamerasrc sensor-id=1 !") and "appsink drop=1" in text
    assert "width=1920,height=1080,framerate=30/1" in text


def test_field_diagnostic_rotates_storage(models, video, tmp_path):
    out = tmp_path / "records"
    proc = example(
        "field_diagnostic/field_box.py",
        str(models["vanilla"]),
        "--simulate",
        str(video),
        "--seconds",
        "5",
        "--out",
        str(out),
        "--file-size",
        "8000",
        "--keep",
        "20000",
        "--serve",
        "127.0.0.1:0",
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.glob("field-*.salrec"))
    rotations = int(re.search(r"records: (\d+) rotations", proc.stderr).group(1))
    assert rotations >= 3 and len(files) < rotations + 1, proc.stderr[-1500:]
    assert sum(f.stat().st_size for f in files) <= 20000 + 8000 * 1.5
    for f in files:
        frames = list(RecordReader(f).frames())
        assert frames and RecordReader(f).truncated_bytes == 0
        assert all(fr.header["box"] == "field" for fr in frames)


def test_robot_control_loop_steers_towards_the_red_square(models, tmp_path):
    frames = []
    for i in range(30):
        frame = synthetic.colour_frames(2)[1].copy()
        frame[:] = 20
        x = 5 if i < 15 else 90  # the red object jumps from the left to the right
        frame[30:60, x : x + 30] = (0, 0, 230)
        frames.append(frame)
    clip = synthetic.write_video(tmp_path / "robot.avi", frames)
    proc = example(
        "robot/control_loop.py", str(models["vanilla"]), "--simulate", str(clip), "--ticks", "30"
    )
    assert proc.returncode == 0, proc.stderr
    ticks = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(ticks) == 30 and all(t["label"] == "red thing" for t in ticks)
    left = [t["steer"] for t in ticks[2:14] if t["steer"] is not None]
    right = [t["steer"] for t in ticks[17:] if t["steer"] is not None]
    assert left and right
    assert max(left) < -0.3 and min(right) > 0.3


@pytest.mark.parametrize("name", ["raspberry_pi", "jetson", "field_diagnostic", "robot"])
def test_every_example_has_a_readme_with_a_simulation_section(name):
    text = (EXAMPLES / name / "README.md").read_text()
    assert "## Simulation" in text and "--simulate" in text
