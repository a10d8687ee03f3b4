"""Command line: help texts, registration, outputs, bad input exit codes, clean shutdown."""

from __future__ import annotations

import argparse
import io
import json
import signal
import socket
import subprocess
import time

import cv2

from edgesal.runtimes import cli
from edgesal.runtimes.progress import ProgressBar
from edgesal.runtimes.records import RecordReader
from tests.runtimes.clihelp import ROOT, runtime_cmd, start_server


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        runtime_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_register_adds_run_and_records_to_a_foreign_parser():
    parser = argparse.ArgumentParser(prog="edgesal")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "run",
            "m.onnx",
            "--source",
            "clip.mp4",
            "--mem-limit",
            "300MB",
            "--fallback",
            "b.onnx",
            "--fallback",
            "c.onnx",
        ]
    )
    assert args.func is cli.cmd_run and args.mem_limit == 300 * 2**20
    assert args.fallback == ["b.onnx", "c.onnx"]
    args = parser.parse_args(["records", "inspect", "x.salrec"])
    assert args.func is cli.cmd_records_inspect


def test_help_texts():
    text = run("run", "--help").stdout
    for needle in (
        "--source",
        "--temp-limit",
        "--fallback",
        "--serve",
        "--records",
        "examples:",
        "nvarguscamerasrc",
        "exit status",
    ):
        assert needle in text
    assert "torn tail" in run("records", "inspect", "--help").stdout


def test_file_run_writes_video_records_and_summary(models, video, tmp_path):
    proc = run(
        "run",
        str(models["vanilla"]),
        "--source",
        str(video),
        "--record",
        str(tmp_path / "o.avi"),
        "--records",
        str(tmp_path / "o.salrec"),
        "--summary-json",
        str(tmp_path / "s.json"),
        "--display",
        "no",
        "--selfcheck-every",
        "10",
        "--workers",
        "2",
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "frames: 40" in proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 40 and summary["selfchecks"] == 4
    capture = cv2.VideoCapture(str(tmp_path / "o.avi"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    frames = list(RecordReader(tmp_path / "o.salrec").frames())
    assert [f.meta["frame"] for f in frames] == list(range(40))
    assert frames[0].header["models"][0]["method"] == "vanilla"
    assert len(frames[0].header["models"][0]["sha256"]) == 64
    inspect = run("records", "inspect", str(tmp_path / "o.salrec"), "--frames")
    assert inspect.returncode == 0
    assert "1 stream(s), 40 frames, 40 maps" in inspect.stdout
    assert "self-checks: 4" in inspect.stdout and "red thing" in inspect.stdout
    data = json.loads(run("records", "inspect", str(tmp_path / "o.salrec"), "--json").stdout)
    assert data["frames"] == 40 and data["methods"] == {"vanilla": 40}
    extract = run("records", "extract", str(tmp_path / "o.salrec"), str(tmp_path / "maps"))
    assert extract.returncode == 0 and len(list((tmp_path / "maps").glob("*.png"))) == 40


def test_bad_inputs_exit_2_with_clear_messages(models, video, tmp_path):
    cases = [
        (["run", str(models["nosaliency"]), "--source", str(video)], "no saliency output"),
        (["run", str(models["vanilla"]), "--source", str(tmp_path / "none.mp4")], "no such file"),
        (
            ["run", str(models["vanilla"]), "--source", str(video), "--input-size", "32,32"],
            "--input-size",
        ),
        (["run", str(tmp_path / "absent.onnx"), "--source", str(video)], "model file not found"),
        (
            [
                "run",
                str(models["vanilla"]),
                "--source",
                str(video),
                "--record",
                str(tmp_path / "x.gif"),
            ],
            "unknown video suffix",
        ),
        (["records", "inspect", str(video)], "not a .salrec file"),
        (["run", str(models["vanilla"]), "--source", str(video), "--workers", "0"], "at least 1"),
        (
            ["run", str(models["vanilla"]), "--source", str(video), "--display", "yes"],
            "--display yes: no display",
        ),
    ]
    for args, message in cases:
        extra = ["--display", "no"] if args[0] == "run" and "--display" not in args else []
        proc = run(*args, *extra)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (message, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_port_in_use_exits_2(models, video):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run(
            "run",
            str(models["vanilla"]),
            "--source",
            str(video),
            "--display",
            "no",
            "--serve",
            f"127.0.0.1:{port}",
        )
    assert proc.returncode == 2 and f"port {port} is already in use" in proc.stderr


def test_sigint_stops_cleanly_with_a_summary_and_readable_records(models, video, tmp_path):
    records = tmp_path / "live.salrec"
    proc, url = start_server(
        str(models["vanilla"]),
        "--source",
        str(video),
        "--realtime",
        "--loop",
        "--records",
        str(records),
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "stopped by: SIGINT" in err
    frames = int(err.split("frames: ")[1].split()[0])
    assert frames > 5 and len(list(RecordReader(records).frames(decode=False))) == frames


def test_progress_bar_draws_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(10, stream)
    bar.update(10, 20.0)
    bar.close()
    assert "[##############################] 10/10 frames" in stream.getvalue()
    quiet = io.StringIO()
    ProgressBar(10, quiet).update(5, 1.0)
    assert quiet.getvalue() == ""
