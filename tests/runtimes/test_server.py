"""HTTP view: endpoints, MJPEG stream, port in use; the page in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import cv2
import numpy as np
import pytest

from edgesal.runtimes.errors import OutputError
from edgesal.runtimes.frameboard import FrameBoard
from edgesal.runtimes.server import StatusServer, parse_address
from tests.runtimes import synthetic
from tests.runtimes.clihelp import start_server, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def moving_clip(path, count: int = 60):
    frames = []
    for i in range(count):
        frame = np.full((120, 160, 3), 30, np.uint8)
        frame[40:80, 5 + 2 * i : 45 + 2 * i] = (0, 0, 220)
        frames.append(frame)
    return synthetic.write_video(path, frames)


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    clip = moving_clip(tmp_path_factory.mktemp("web") / "moving.avi")
    proc, url = start_server(
        str(models["vanilla"]),
        "--source",
        str(clip),
        "--realtime",
        "--loop",
        "--selfcheck-every",
        "5",
    )
    end = time.time() + 20
    while json.loads(get(url + "status.json"))["frames"] < 3 and time.time() < end:
        time.sleep(0.1)
    yield url
    stop(proc)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_status_json_and_metrics_are_live(served):
    first = json.loads(get(served + "status.json"))
    time.sleep(0.6)
    second = json.loads(get(served + "status.json"))
    assert second["frames"] > first["frames"] > 0
    assert second["fps"] > 5 and second["latency_ms"]["p95"] is not None
    assert second["method"] == "vanilla" and second["backend"].startswith("onnxruntime")
    assert second["governor"]["state"]["level"] == 0 and second["last"][0]["label"]
    assert second["selfchecks"] > 0
    metrics = get(served + "metrics").decode()
    frames = int(float(re.search(r"^edgesal_frames_total (\S+)$", metrics, re.M).group(1)))
    assert frames >= second["frames"]
    assert 'edgesal_latency_seconds{quantile="0.95"}' in metrics
    assert "# TYPE edgesal_fps gauge" in metrics


def test_mjpeg_stream_delivers_changing_jpegs(served):
    with urllib.request.urlopen(served + "stream.mjpg", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        images, buffer = [], b""
        while len(images) < 3:
            buffer += response.read1(65536)
            while (start := buffer.find(b"\xff\xd8")) >= 0 and (
                end := buffer.find(b"\xff\xd9", start)
            ) >= 0:
                images.append(cv2.imdecode(np.frombuffer(buffer[start : end + 2], np.uint8), 1))
                buffer = buffer[end + 2 :]
    assert all(img is not None and img.shape == (120, 160, 3) for img in images)
    assert not np.array_equal(images[0], images[-1])
    assert get(served + "frame.jpg")[:2] == b"\xff\xd8"


def test_page_and_unknown_path(served):
    page = get(served).decode()
    assert "/stream.mjpg" in page and "/status.json" in page
    with pytest.raises(urllib.error.HTTPError, match="404"):
        get(served + "nothing")


def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OutputError, match=f"port {port} is already in use"):
            StatusServer(f"127.0.0.1:{port}", FrameBoard(), dict)


def test_address_parsing():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":9000") == ("127.0.0.1", 9000)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_address("[::1]:8080") == ("::1", 8080)
    with pytest.raises(OutputError, match="--serve"):
        parse_address("localhost:http")
    with pytest.raises(OutputError, match="IPv6 address in brackets"):
        parse_address("::1:8080")


def test_ipv6_loopback_is_served():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = StatusServer("[::1]:0", FrameBoard(), lambda: {"frames": 3}).start()
    except OutputError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert server.url.startswith("http://[::1]:")
        assert json.loads(get(server.url + "status.json")) == {"frames": 3}
    finally:
        server.close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_status_page_in_headless_chromium(served):
    """The browser shows a changing MJPEG image and numbers refreshed by repeated polling."""
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=6000",
                "--dump-dom",
                served,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        ).stdout
    status = json.loads(get(served + "status.json"))
    updates = int(re.search(r'id="stream-updates">(\d+)<', dom).group(1))
    assert updates >= 1, "the MJPEG image did not change in the browser"
    assert re.search(r'id="stream-state" class="ok">live<', dom)
    polled = re.search(r'id="updated">[^<]*\(frame (\d+), update #(\d+)\)<', dom)
    assert polled and int(polled.group(2)) >= 3, "status numbers were not refreshed repeatedly"
    assert 0 < int(polled.group(1)) <= status["frames"]
    fps = float(re.search(r'id="fps">([\d.]+)<', dom).group(1))
    assert fps > 5
    assert re.search(r'id="latency">[\d.]+ / [\d.]+<', dom)
    assert "<td>red thing</td>" in dom  # last predictions table filled
