"""Loopback-only HTTP helpers for the web view tests: raw requests, stream readers, a fake pipeline.

Every helper refuses an address that is not 127.0.0.1: the tests send no traffic elsewhere.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time

import numpy as np

from edgesal.runtimes.frameboard import FrameBoard

LOOPBACK = "127.0.0.1"


def status_fixture() -> dict:
    """The shape of ``Runner.status()`` with made-up numbers (read by /status.json, /metrics)."""
    governor = {
        "temperature_c": 41.0,
        "rss_bytes": 1 << 20,
        "levels": 3,
        "decisions": [],
        "state": {"level": 0, "saliency_every": 1, "paused": False, "scale": 1.0},
    }
    return {
        "frames": 7,
        "maps": 7,
        "fps": 25.0,
        "latency_ms": {"p50": 3.0, "p95": 5.0},
        "model_ms": {"p50": 2.0, "p95": 4.0},
        "governor": governor,
        "last": [],
    }


def connect(port: int, tls: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    if tls is not None:
        return http.client.HTTPSConnection(LOOPBACK, port, timeout=10, context=tls)
    return http.client.HTTPConnection(LOOPBACK, port, timeout=10)


def request(
    port: int,
    path: str,
    headers: dict | None = None,
    method: str = "GET",
    body: bytes | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """(status, headers, body) of one request; a stream's body is left unread."""
    conn = connect(port, tls)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        streaming = response.getheader("Content-Type", "").startswith("multipart/")
        data = b"" if streaming else response.read()
        return response.status, response.headers, data
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 10.0, limit: int = 1 << 20) -> bytes:
    """Send DATA on a fresh connection; everything the server answers before it closes or resets."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        chunks = []
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # a truncated request ends here, not at a timeout
            while (chunk := sock.recv(65536)) and sum(map(len, chunks)) < limit:
                chunks.append(chunk)  # a stream never ends: stop after ``limit`` bytes
        except OSError:  # closed at once, reset, or timed out: what came so far
            pass
        return b"".join(chunks)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


class StreamReader(threading.Thread):
    """Reads ``/stream.mjpg`` and counts complete JPEGs until stopped."""

    def __init__(self, port: int, headers: dict | None = None):
        super().__init__(daemon=True)
        self.port, self.headers = port, headers or {}
        self.images = 0
        self.status = None
        self._halt = threading.Event()

    def run(self) -> None:
        conn = connect(self.port)
        try:
            conn.request("GET", "/stream.mjpg", headers=self.headers)
            response = conn.getresponse()
            self.status = response.status
            buffer = b""
            while response.status == 200 and not self._halt.is_set():
                buffer += response.read1(65536)
                while (end := buffer.find(b"\xff\xd9")) >= 0:
                    self.images += buffer.rfind(b"\xff\xd8", 0, end) >= 0
                    buffer = buffer[end + 2 :]
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def stalled_stream(port: int, headers: dict | None = None) -> socket.socket:
    """Open ``/stream.mjpg`` with a tiny receive buffer and never read from it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((LOOPBACK, port))
    lines = [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(
        "\r\n".join(["GET /stream.mjpg HTTP/1.1", "Host: 127.0.0.1", *lines, "", ""]).encode()
    )
    return sock


class FakePipeline(threading.Thread):
    """Publishes noisy frames to a board at ``fps`` and records how long each publish took."""

    def __init__(self, board: FrameBoard, fps: float = 25.0, shape: tuple[int, int] = (480, 640)):
        super().__init__(daemon=True)
        self.board, self.fps, self.shape = board, fps, shape
        self.published = 0
        self.publish_s: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (*self.shape, 3), np.uint8) for _ in range(4)]
        while not self._halt.wait(1 / self.fps):
            start = time.perf_counter()
            self.board.publish(frames[self.published % 4], force=True)
            self.publish_s.append(time.perf_counter() - start)
            self.published += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
