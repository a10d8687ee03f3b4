"""HTTP(S) view of a running pipeline (stdlib only), bound to 127.0.0.1 unless told otherwise.

``/``             status page: the MJPEG stream and live numbers (polls ``/status.json``)
``/stream.mjpg``  overlay frames as ``multipart/x-mixed-replace`` JPEGs
``/frame.jpg``    the latest overlay frame
``/status.json``  fps, latency p50/p95, temperature, memory, governor state, last predictions
``/metrics``      the same numbers in the Prometheus text format
``/login``        with a token: a form that trades the token for an HttpOnly session cookie

With a token (webauth.py) every route but ``/login`` answers 401 without
``Authorization: Bearer TOKEN`` or the cookie. Any other path is 404: routes are a fixed table,
never a file lookup.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import http.client
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import numpy as np

from edgesal.runtimes.errors import OutputError
from edgesal.runtimes.frameboard import FrameBoard
from edgesal.runtimes.status_page import LOGIN_PAGE, UNAUTHORIZED_PAGE
from edgesal.runtimes.status_page import PAGE as STATUS_PAGE
from edgesal.runtimes.webauth import (
    COOKIE,
    Gate,
    WebOptions,
    check_exposure,
    is_loopback,
    parse_address,
)

log = logging.getLogger("edgesal.runtimes.server")
PAGE = STATUS_PAGE.encode()
UNAUTHORIZED = UNAUTHORIZED_PAGE.encode()
BOUNDARY = "edgesalframe"
MAX_REQUEST_LINE = 4096  # bytes of "GET /path HTTP/1.1"; longer -> 414
MAX_HEADER_BYTES = 16384  # bytes of all header lines together; more -> 431
MAX_LOGIN_BODY = 1024  # bytes of the login form; more -> 413
WRONG_LOGIN_LOG_S = 10.0  # at most one log line per this many seconds about wrong tokens


def login_page(note: str = "") -> bytes:
    """The login form, with an optional (escaped) note such as "Wrong token."."""
    return LOGIN_PAGE.replace("{note}", escape(note)).encode()


def _inline_hashes(tag: str, *pages: str) -> str:
    """CSP source list admitting exactly the inline ``<tag>`` blocks of PAGES, by SHA-256."""
    blocks = {b for page in pages for b in re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)}
    digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks)
    return " ".join(sorted(f"'sha256-{d}'" for d in digests)) or "'none'"


CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"script-src {_inline_hashes('script', STATUS_PAGE, LOGIN_PAGE)}; "
    f"style-src {_inline_hashes('style', STATUS_PAGE, LOGIN_PAGE)}; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)


def metrics_text(status: dict) -> str:
    """Prometheus exposition of the status numbers."""
    g = status["governor"]
    lines: list[str] = []

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


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` of them; TLS handshakes happen in
    the connection's own thread, so a slow handshake never holds up ``accept``."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # listen backlog: fewer dropped SYNs while a flood is being closed

    def __init__(self, address, handler, options: WebOptions, family: int):
        self.address_family = family
        self.options = options
        self._connections = threading.BoundedSemaphore(options.max_connections)
        self._rate = _TokenBucket(options.max_rate)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        over = not self._rate.take() and f"over {self.options.max_rate:g} connections/s"
        if over or not self._connections.acquire(blocking=False):
            over = over or f"over {self.options.max_connections} open connections"
            log.debug("%s: closing one from %s at once", over, client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            request.settimeout(self.options.timeout)
            if self.options.tls is not None:
                request = self.options.tls.wrap_socket(request, server_side=True)
            self.finish_request(request, client_address)
        except Exception as exc:  # a hostile or broken client: its connection only
            log.debug("connection from %s ended: %r", client_address[0], exc)
        finally:
            self.shutdown_request(request)
            self._connections.release()


class _TokenBucket:
    """At most ``rate`` takes per second on average, in bursts of up to ``rate`` (one thread)."""

    def __init__(self, rate: float):
        self.rate, self.tokens, self.stamp = rate, rate, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class StatusServer:
    """Serves the board and a status callable on a background thread.

    Loopback without a token, or any address with one (:func:`check_exposure`); see
    docs/security.md for what each limit in :class:`WebOptions` protects.
    """

    def __init__(
        self,
        address: str,
        board: FrameBoard,
        status: Callable[[], dict],
        options: WebOptions | None = None,
    ):
        host, port = parse_address(address)
        self.options = options or WebOptions()
        check_exposure(address, self.options)
        self.board, self.status = board, status
        self.gate = Gate(self.options.token)
        self.streams = threading.BoundedSemaphore(self.options.max_clients)
        self._stopping = threading.Event()
        self._wrong_logins, self._wrong_logged, self._lock = 0, -WRONG_LOGIN_LOG_S, threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.httpd = _Server((host, port), _handler(self), self.options, family)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OutputError(f"--serve {address}: port {port} is already in use") from exc
            raise OutputError(f"--serve {address}: cannot listen: {exc}") from exc
        bound = self.httpd.server_address
        self.address: tuple[str, int] = (str(bound[0]), int(bound[1]))
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.options.tls else "http"
        host = self.address[0]
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.address[1]}/"

    def start(self) -> StatusServer:
        self._thread.start()
        log.info("serving the status page on %s", self.url)
        if self.options.tls is None and not is_loopback(self.address[0]):
            log.warning(
                "plain HTTP beyond loopback: the token and the frames cross the network "
                "readable by anyone on it; add --tls-cert and --tls-key"
            )
        return self

    def wrong_login(self, client: str) -> None:
        """Log wrong tokens at /login, at most once per ``WRONG_LOGIN_LOG_S`` with their count,
        so that guessing cannot flood the log."""
        with self._lock:
            self._wrong_logins += 1
            now = time.monotonic()
            if now - self._wrong_logged < WRONG_LOGIN_LOG_S:
                return
            count, self._wrong_logins, self._wrong_logged = self._wrong_logins, 0, now
        log.warning("web view: %d wrong token(s) at /login, the last from %s", count, client)

    def close(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.board.close()


def _handler(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    gate, options = server.gate, server.options
    cookie_flags = "; Secure" if options.tls else ""

    class Handler(BaseHTTPRequestHandler):
        timeout = options.timeout
        raw_requestline: bytes  # set by handle_one_request before parse_request

        def version_string(self) -> str:
            return "edgesal"  # no Python version for a scanner to match

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s " + format, self.address_string(), *args)

        def parse_request(self) -> bool:
            """The stdlib parser, with the request line and the header block kept small and
            HTTP/0.9 refused (its answers carry no status line and no security headers)."""
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return False
            words = self.raw_requestline.split()
            if len(words) != 3 or words[2] not in (b"HTTP/1.0", b"HTTP/1.1"):
                self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
                self.send_error(HTTPStatus.BAD_REQUEST, "expected: METHOD PATH HTTP/1.x")
                return False
            stream = self.rfile
            self.rfile = _HeaderBudget(stream, MAX_HEADER_BYTES)  # type: ignore[assignment]
            try:
                return super().parse_request()
            finally:
                self.rfile = stream

        def end_headers(self) -> None:
            for name, value in SECURITY_HEADERS:
                self.send_header(name, value)
            super().end_headers()

        def _send(self, body: bytes, content_type: str, status: int = 200, *extra) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _admitted(self) -> bool:
            """Token or cookie when the view has a token; a loopback Host header when not."""
            if gate.token is None and not _loopback_host(self.headers.get("Host")):
                # A page on another site that rebinds its name to 127.0.0.1 lands here.
                self._send(b"host not allowed", "text/plain", 403)
                return False
            if gate.admits(self.headers.get("Authorization"), self.headers.get("Cookie")):
                return True
            challenge = ("WWW-Authenticate", 'Bearer realm="edgesal"')
            self._send(UNAUTHORIZED, "text/html; charset=utf-8", 401, challenge)
            return False

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            path = _route(self.path)
            if path == "/login":
                self._login_page()
            elif path not in ROUTES:
                self._send(b"not found", "text/plain", 404)
            elif self._admitted():
                getattr(self, ROUTES[path])()

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            if _route(self.path) != "/login":
                self._send(b"not found", "text/plain", 404)
            else:
                self._login()

        def _page(self) -> None:
            self._send(PAGE, "text/html; charset=utf-8")

        def _status_json(self) -> None:
            body = json.dumps(server.status(), default=_plain).encode()
            self._send(body, "application/json")

        def _metrics(self) -> None:
            self._send(metrics_text(server.status()).encode(), "text/plain; version=0.0.4")

        def _frame(self) -> None:
            jpeg = server.board.latest()
            if jpeg is None:
                self._send(b"no frame yet", "text/plain", 503)
            else:
                self._send(jpeg, "image/jpeg")

        def _login_page(self, status: int = 200, note: str = "") -> None:
            if gate.token is None:
                self._send(b"", "text/plain", 303, ("Location", "/"))
            else:
                self._send(login_page(note), "text/html; charset=utf-8", status)

        def _login(self) -> None:
            """``token=...`` from the login form -> the session cookie and a redirect to ``/``."""
            if gate.token is None:
                self._send(b"", "text/plain", 303, ("Location", "/"))
                return
            if not _same_origin(self.headers.get("Origin"), self.headers.get("Host")):
                self._send(b"cross-origin login refused", "text/plain", 403)
                return
            size = self.headers.get("Content-Length", "")
            if not size.isdigit() or int(size) > MAX_LOGIN_BODY:
                self._send(b"login form too large or without length", "text/plain", 413)
                return
            try:
                form = parse_qs(
                    self.rfile.read(int(size)).decode("utf-8", "replace"), max_num_fields=4
                )
            except ValueError:  # more fields than a login form has
                self._send(b"not a login form", "text/plain", 400)
                return
            if not gate.token_matches((form.get("token") or [""])[0].strip()):
                server.wrong_login(self.client_address[0])
                self._login_page(401, "Wrong token.")
                return
            cookie = f"{COOKIE}={gate.session}; Path=/; HttpOnly; SameSite=Strict{cookie_flags}"
            self._send(b"", "text/plain", 303, ("Location", "/"), ("Set-Cookie", cookie))

        def _stream(self) -> None:
            if not server.streams.acquire(blocking=False):
                busy = f"all {options.max_clients} stream slots are taken; retry later".encode()
                self._send(busy, "text/plain", 503, ("Retry-After", "5"))
                return
            board, seq = server.board, -1
            board.watch(+1)
            try:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                while not server._stopping.is_set():
                    # Only the newest frame is sent: a slow client skips frames, none queue up.
                    seq, jpeg = board.wait_next(seq)
                    if jpeg is None:
                        continue
                    head = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    ).encode()
                    self.wfile.write(head + jpeg + b"\r\n")
            except OSError as exc:  # gone, reset, or stalled past the timeout
                log.debug("stream client %s left: %r", self.client_address[0], exc)
            finally:
                board.watch(-1)
                server.streams.release()

    return Handler


ROUTES = {
    "/": "_page",
    "/index.html": "_page",
    "/status.json": "_status_json",
    "/metrics": "_metrics",
    "/frame.jpg": "_frame",
    "/stream.mjpg": "_stream",
}


def _route(target: str) -> str:
    """The request target without its query: matched exactly, never decoded or mapped to files."""
    return target.split("?", 1)[0].split("#", 1)[0]


class _HeaderBudget:
    """``readline`` over a request stream that fails once the header block passes ``budget``."""

    def __init__(self, stream, budget: int):
        self._stream, self._left = stream, budget

    def readline(self, limit: int = -1) -> bytes:
        line = self._stream.readline(self._left + 1)
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong(f"header block over {MAX_HEADER_BYTES} bytes")
        return line


def _host_name(host: str) -> str:
    """``[::1]:8080`` -> ``::1``; ``example.org:80`` -> ``example.org``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _loopback_host(host: str | None) -> bool:
    return host is None or is_loopback(_host_name(host.strip()))


def _same_origin(origin: str | None, host: str | None) -> bool:
    """No Origin header (not a browser form post), or one whose host:port is the Host header."""
    if origin is None:
        return True
    return host is not None and origin.partition("://")[2].rstrip("/") == host.strip()


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
