"""HTTP view of a running pipeline (stdlib only), bound to 127.0.0.1 unless told otherwise.

``/``             status page: the MJPEG stream and live numbers (polls ``/status.json``)
``/stream.mjpg``  overlay frames as ``multipart/x-mixed-replace`` JPEGs
``/frame.jpg``    the latest overlay frame
``/status.json``  fps, latency p50/p95, temperature, memory, governor state, last predictions
``/metrics``      the same numbers in the Prometheus text format
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from edgesal.runtimes.errors import OutputError
from edgesal.runtimes.status_page import PAGE as STATUS_PAGE

log = logging.getLogger("edgesal.runtimes.server")
PAGE = STATUS_PAGE.encode()
BOUNDARY = "edgesalframe"


def parse_address(spec: str) -> tuple[str, int]:
    """``8080``, ``:8080``, ``127.0.0.1:8080`` or ``0.0.0.0:8080`` -> (host, port)."""
    host, _, port = spec.rpartition(":")
    host = host or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise OutputError(f"--serve {spec}: expected [HOST:]PORT with PORT in 0..65535")
    return host, int(port)


class FrameBoard:
    """The latest overlay frame, JPEG-encoded only while someone is watching."""

    def __init__(self, quality: int = 80):
        self.quality = quality
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self.viewers = 0
        self._last_request = 0.0

    def watch(self, change: int) -> None:
        with self._cond:
            self.viewers += change

    def wanted(self) -> bool:
        return self.viewers > 0 or time.time() - self._last_request < 5.0

    def publish(self, image: np.ndarray, force: bool = False) -> None:
        if not (force or self.wanted()):
            return
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._jpeg, self._seq = jpeg.tobytes(), self._seq + 1
                self._cond.notify_all()

    def latest(self) -> bytes | None:
        self._last_request = time.time()
        return self._jpeg

    def wait_next(self, seq: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._seq != seq, timeout)
            return self._seq, self._jpeg


def metrics_text(status: dict) -> str:
    """Prometheus exposition of the status numbers."""
    g = status["governor"]
    lines = []

    def metric(name: str, kind: str, value, help_text: str, labels: str = "") -> None:
        if value is None:
            return
        if not any(line.startswith(f"# TYPE {name} ") for line in lines):
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        lines.append(f"{name}{labels} {float(value):g}")

    for key, help_text in (
        ("frames", "frames shown"),
        ("maps", "saliency maps computed"),
        ("dropped", "live frames dropped for newer ones"),
        ("corrupt", "undecodable frames skipped"),
        ("reopens", "times the source was reopened"),
        ("selfchecks", "counterfactual self-checks run"),
        ("unfaithful", "frames whose map failed the self-check"),
    ):
        metric(f"edgesal_{key}_total", "counter", status.get(key), help_text)
    metric("edgesal_fps", "gauge", status["fps"], "frames per second over the last seconds")
    for q in ("p50", "p95"):
        quantile = f'{{quantile="{0.5 if q == "p50" else 0.95}"}}'
        for key, name in (
            ("latency_ms", "edgesal_latency_seconds"),
            ("model_ms", "edgesal_model_seconds"),
        ):
            value = status[key][q]
            metric(name, "summary", None if value is None else value / 1000, "seconds", quantile)
    metric("edgesal_temperature_celsius", "gauge", g["temperature_c"], "hottest thermal zone")
    metric("edgesal_rss_bytes", "gauge", g["rss_bytes"], "resident memory of the runtime")
    metric("edgesal_governor_level", "gauge", g["state"]["level"], "budget governor level")
    metric("edgesal_saliency_every", "gauge", g["state"]["saliency_every"], "map every N frames")
    metric("edgesal_paused", "gauge", int(g["state"]["paused"]), "inference paused by the governor")
    return "\n".join(lines) + "\n"


class StatusServer:
    """Serves the board and a status callable on a background thread."""

    def __init__(self, address: str, board: FrameBoard, status: Callable[[], dict]):
        host, port = parse_address(address)
        self.board, self.status = board, status
        self._stopping = threading.Event()
        handler = _handler(self)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OutputError(f"--serve {address}: port {port} is already in use") from exc
            raise OutputError(f"--serve {address}: cannot listen: {exc}") from exc
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}/"

    def start(self) -> StatusServer:
        self._thread.start()
        log.info("serving the status page on %s", self.url)
        return self

    def close(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(PAGE, "text/html; charset=utf-8")
            elif path == "/status.json":
                body = json.dumps(server.status(), default=_plain).encode()
                self._send(body, "application/json")
            elif path == "/metrics":
                self._send(metrics_text(server.status()).encode(), "text/plain; version=0.0.4")
            elif path == "/frame.jpg":
                jpeg = server.board.latest()
                if jpeg is None:
                    self._send(b"no frame yet", "text/plain", 503)
                else:
                    self._send(jpeg, "image/jpeg")
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(b"not found", "text/plain", 404)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            board, seq = server.board, -1
            board.watch(+1)
            try:
                while not server._stopping.is_set():
                    seq, jpeg = board.wait_next(seq)
                    if jpeg is None:
                        continue
                    head = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    ).encode()
                    self.wfile.write(head + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                board.watch(-1)

    return Handler


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
