"""Web view security: token, login cookie, loopback rule, limits, headers, HTTPS (127.0.0.1)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from edgesal.runtimes import webauth
from edgesal.runtimes.errors import OutputError
from edgesal.runtimes.frameboard import FrameBoard
from edgesal.runtimes.server import StatusServer
from edgesal.runtimes.status_page import LOGIN_PAGE, PAGE
from edgesal.runtimes.webauth import Gate, WebOptions, is_loopback, load_or_create_token
from tests.runtimes.clihelp import ROOT, runtime_cmd
from tests.runtimes.webclient import (
    FakePipeline,
    StreamReader,
    bearer,
    raw,
    request,
    stalled_stream,
    status_fixture,
)

TOKEN = "k" * 10 + "Q2xlYXJseU5vdFJlYWw"  # 29 characters
ENDPOINTS = ("/", "/status.json", "/metrics", "/frame.jpg", "/stream.mjpg")


def serve(**options) -> tuple[StatusServer, FakePipeline]:
    board = FrameBoard()
    pipeline = FakePipeline(board, shape=options.pop("shape", (48, 64)))
    server = StatusServer("127.0.0.1:0", board, status_fixture, WebOptions(**options)).start()
    pipeline.start()
    while board.latest() is None:
        time.sleep(0.01)
    return server, pipeline


@pytest.fixture()
def guarded():
    server, pipeline = serve(token=TOKEN)
    yield server
    pipeline.stop()
    server.close()


def login(port: int, token: str, **kw) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **kw.pop("headers", {})}
    return request(port, "/login", headers, "POST", f"token={token}".encode(), **kw)


def test_every_endpoint_answers_401_without_the_token(guarded):
    port = guarded.address[1]
    for path in ENDPOINTS:
        for headers in ({}, bearer(TOKEN[:-1]), bearer(TOKEN + "x"), {"Authorization": TOKEN}):
            status, head, body = request(port, path, headers)
            assert status == 401, (path, headers)
            assert head["WWW-Authenticate"] == 'Bearer realm="edgesal"'
            assert b"/login" in body and TOKEN.encode() not in body
        status, head, _ = request(port, path, bearer(TOKEN))
        assert status == 200, path
    assert request(port, "/login")[0] == 200  # the one open route: the form


def test_login_trades_the_token_for_an_httponly_strict_cookie(guarded):
    port = guarded.address[1]
    status, head, _ = login(port, TOKEN, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status == 303 and head["Location"] == "/"
    cookie = head["Set-Cookie"]
    flags = [part.strip() for part in cookie.split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(flags) and "Secure" not in flags
    name, value = flags[0].split("=", 1)
    assert name == "edgesal_session" and TOKEN not in cookie
    for path in ENDPOINTS:
        assert request(port, path, {"Cookie": f"other=1; {name}={value}"})[0] == 200, path
        assert request(port, path, {"Cookie": f"{name}={value[:-1]}0"})[0] == 401, path
    status, head, body = login(port, TOKEN[:-1])
    assert status == 401 and "Set-Cookie" not in head and b"Wrong token." in body
    assert login(port, TOKEN, headers={"Origin": "http://evil.example"})[0] == 403
    too_big = {"Content-Type": "application/x-www-form-urlencoded"}
    assert request(port, "/login", too_big, "POST", b"token=" + b"a" * 5000)[0] == 413
    assert request(port, "/login", too_big, "POST", b"a=1&b=2&c=3&d=4&e=5")[0] == 400


def test_wrong_logins_are_logged_without_flooding_the_log(guarded, caplog):
    with caplog.at_level(logging.WARNING, "edgesal.runtimes.server"):
        for _ in range(30):
            assert login(guarded.address[1], "guess" * 5)[0] == 401
    lines = [r.getMessage() for r in caplog.records if "wrong token" in r.getMessage()]
    assert lines == ["web view: 1 wrong token(s) at /login, the last from 127.0.0.1"], lines
    assert TOKEN not in caplog.text and "guess" not in caplog.text


def test_comparisons_run_through_hmac_compare_digest(monkeypatch):
    calls = []
    original = webauth.hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(webauth.hmac, "compare_digest", recording)
    gate = Gate(TOKEN)
    assert gate.admits(f"Bearer {TOKEN}", None)
    assert calls and calls[-1][0] == TOKEN.encode()
    calls.clear()
    assert not gate.admits(None, f"edgesal_session={gate.session[:-1]}")
    assert calls[-1] == (gate.session[:-1].encode(), gate.session.encode())
    assert not gate.admits(f"Bearer {TOKEN[:-1]}", None)  # a prefix is not the token
    assert Gate(None).admits(None, None)


def test_token_file_is_created_0600_and_only_its_path_logged(tmp_path, caplog):
    path = tmp_path / "token"
    with caplog.at_level(logging.INFO):
        token = load_or_create_token(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == token + "\n"
    assert len(base64.urlsafe_b64decode(token + "=")) * 8 >= 128
    assert str(path) in caplog.text and token not in caplog.text
    assert load_or_create_token(str(path)) == token  # kept, not replaced
    assert load_or_create_token(str(tmp_path / "other")) != token


@pytest.mark.parametrize(
    "content, mode, message",
    [
        (TOKEN, 0o644, "chmod 600"),
        ("short", 0o600, "at least 22"),
        ("two words" * 5, 0o600, "at least 22"),
        ("x" * 5000, 0o600, "over 4096 bytes"),
    ],
)
def test_bad_token_files_are_refused(tmp_path, content, mode, message):
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(OutputError, match=message):
        load_or_create_token(str(path))
    with pytest.raises(OutputError, match="not a regular file"):
        load_or_create_token(str(tmp_path))
    with pytest.raises(OutputError, match="cannot create"):
        load_or_create_token(str(tmp_path / "missing" / "token"))


def test_loopback_rule():
    for host in ("127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.org", "localhost.evil"):
        assert not is_loopback(host), host
    for address in ("0.0.0.0:0", "192.0.2.1:8080", "[::]:0", "example.org:80"):
        with pytest.raises(OutputError, match=r"beyond loopback.*--token-file FILE"):
            StatusServer(address, FrameBoard(), dict)


def test_cli_refuses_a_network_bind_without_a_token(models, tmp_path):
    start = time.time()
    proc = subprocess.run(
        runtime_cmd("run", str(models["vanilla"]), "--source", "0", "--serve", "0.0.0.0:0"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "beyond loopback" in proc.stderr and "--token-file FILE" in proc.stderr
    assert "Traceback" not in proc.stderr and time.time() - start < 30
    for flags, message in (
        (["--token-file", str(tmp_path / "t")], "--token-file needs --serve"),
        (["--serve", "0", "--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
    ):
        proc = subprocess.run(
            runtime_cmd("run", str(models["vanilla"]), "--source", "0", *flags),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "t").exists()


def test_field_box_example_refuses_its_network_default_without_a_token(models, video, tmp_path):
    """The example builds its StatusServer itself: same rule, one line, exit 2."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "firmware_examples/field_diagnostic/field_box.py"),
         str(models["vanilla"]), "--simulate", str(video), "--seconds", "1",
         "--out", str(tmp_path / "records")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "error: --serve 0.0.0.0:8080: listening beyond loopback" in proc.stderr
    assert "--token-file FILE" in proc.stderr and "Traceback" not in proc.stderr


def test_max_clients_then_503_and_slots_come_back():
    server, pipeline = serve(max_clients=2)
    port = server.address[1]
    readers = [StreamReader(port) for _ in range(2)]
    try:
        for reader in readers:
            reader.start()
        while sum(r.images for r in readers) < 4:
            time.sleep(0.02)
        status, head, body = request(port, "/stream.mjpg")
        assert status == 503 and head["Retry-After"] == "5" and b"2 stream slots" in body
        assert request(port, "/frame.jpg")[0] == 200  # single frames are not streams
        readers.pop().stop()
        end = time.time() + 5
        while (status := request(port, "/stream.mjpg")[0]) != 200 and time.time() < end:
            time.sleep(0.05)
        assert status == 200
    finally:
        for reader in readers:
            reader.stop()
        pipeline.stop()
        server.close()


def test_a_stalled_client_never_blocks_the_pipeline(caplog):
    """Large noisy frames fill a never-reading client's buffers; publish stays fast, others see
    every new frame, and the stalled connection is dropped after the timeout."""
    server, pipeline = serve(max_clients=2, timeout=1.0, shape=(480, 640))
    port = server.address[1]
    reader = StreamReader(port)
    with caplog.at_level(logging.DEBUG, "edgesal.runtimes.server"):
        stalled = stalled_stream(port)
        try:
            time.sleep(0.5)
            reader.start()
            published, images = pipeline.published, reader.images
            time.sleep(3.0)
            seen = reader.images - images
            sent = pipeline.published - published
            assert "stream client 127.0.0.1 left: TimeoutError" in caplog.text
            assert seen >= 0.8 * sent, (seen, sent)
            assert max(pipeline.publish_s) < 0.25, max(pipeline.publish_s)
            # the stalled client's slot is free again: a second stream fits beside the reader
            assert request(port, "/stream.mjpg")[0] == 200
        finally:
            stalled.close()
            reader.stop()
            pipeline.stop()
            server.close()


def test_jpeg_encoding_is_capped_however_fast_the_pipeline_runs():
    board = FrameBoard(max_fps=20.0)
    server = StatusServer("127.0.0.1:0", board, status_fixture).start()
    pipeline = FakePipeline(board, fps=200.0, shape=(48, 64))
    reader = StreamReader(server.address[1])
    try:
        pipeline.start()
        reader.start()
        time.sleep(0.5)
        published, images = pipeline.published, reader.images
        time.sleep(2.0)
        published, images = pipeline.published - published, reader.images - images
        assert published > 150 and 20 <= images <= 2 * 20 + 4, (published, images)
    finally:
        reader.stop()
        pipeline.stop()
        server.close()


def test_closing_the_server_stops_the_encoder_thread():
    before = threading.active_count()
    server, pipeline = serve()
    assert any(t.name == "jpeg" for t in threading.enumerate())
    pipeline.stop()
    server.close()
    assert threading.active_count() <= before, [t.name for t in threading.enumerate()]
    server.board.publish(np.zeros((8, 8, 3), np.uint8), force=True)  # ignored, no new thread
    assert threading.active_count() <= before


def test_request_size_limits_routes_and_security_headers(guarded):
    port = guarded.address[1]
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    long_line = raw(port, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
    assert long_line.startswith(b"HTTP/1.0 414")
    big_headers = b"".join(b"X-%d: %s\r\n" % (i, b"b" * 1000) for i in range(20))
    assert raw(port, b"GET / HTTP/1.1\r\n" + big_headers + b"\r\n").startswith(b"HTTP/1.0 431")
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(120))
    assert raw(port, b"GET / HTTP/1.1\r\n" + many + b"\r\n").startswith(b"HTTP/1.0 431")
    for target in (
        "/../../etc/passwd",
        "/status.json/../metrics",
        "/%2e%2e/etc/passwd",
        "/index.html/",
        "http://evil.example/",
        "/frame.jpg%00",
        "/server.py",
    ):
        answer = raw(port, f"GET {target} HTTP/1.1\r\n".encode() + auth + b"\r\n")
        assert answer.startswith(b"HTTP/1.0 404"), (target, answer[:40])
    assert raw(port, b"PUT / HTTP/1.1\r\n" + auth + b"\r\n").startswith(b"HTTP/1.0 501")
    for line in (b"GET /status.json\r\n", b"GET /status.json HTTP/2.0\r\n", b"GET\r\n"):
        answer = raw(port, line + auth + b"\r\n")  # HTTP/0.9 answers would carry no headers
        assert answer.startswith(b"HTTP/1.0 400") and b"nosniff" in answer, (line, answer[:60])
    for path, headers in (("/", {}), ("/frame.jpg", bearer(TOKEN)), ("/nothing", {})):
        _, head, _ = request(port, path, headers)
        assert head["X-Content-Type-Options"] == "nosniff"
        assert head["Cache-Control"] == "no-store" and head["Referrer-Policy"] == "same-origin"
        assert "default-src 'none'" in head["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in head["Content-Security-Policy"]
        assert head["Server"] == "edgesal"


def test_csp_admits_exactly_the_inline_blocks_of_the_pages(guarded):
    csp = request(guarded.address[1], "/login")[1]["Content-Security-Policy"]
    for tag in ("script", "style"):
        listed = re.search(rf"{tag}-src ([^;]+)", csp).group(1).split()
        blocks = [
            b
            for page in (PAGE, LOGIN_PAGE)
            for b in re.findall(f"<{tag}>(.*?)</{tag}>", page, re.S)
        ]
        want = {
            f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
            for b in blocks
        }
        assert set(listed) == want and blocks
    assert not re.search(r"\s(on\w+|style)=", PAGE + LOGIN_PAGE)  # attributes CSP would block


def test_connection_cap_and_idle_timeout_bound_threads():
    server, pipeline = serve(max_connections=4, timeout=1.0)
    port = server.address[1]
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= before + 4
        assert raw(port, b"GET /status.json HTTP/1.0\r\n\r\n", timeout=5) == b""  # closed at once
        time.sleep(1.5)  # the idle connections time out and free their slots
        assert all(s.recv(10) == b"" for s in idle)
        assert request(port, "/status.json")[0] == 200
        assert threading.active_count() <= before + 1
    finally:
        for sock in idle:
            sock.close()
        pipeline.stop()
        server.close()


def test_new_connections_beyond_the_rate_are_closed_at_once():
    server, pipeline = serve(max_rate=5.0)
    port = server.address[1]
    try:
        time.sleep(1.0)  # a full bucket
        answers = []
        for _ in range(12):
            try:
                answers.append(request(port, "/status.json")[0])
            except OSError as exc:
                answers.append(type(exc).__name__)
        assert answers[:5] == [200] * 5 and answers.count(200) <= 7, answers
        assert set(answers[5:]) - {200} <= {"RemoteDisconnected", "ConnectionResetError"}, answers
        time.sleep(1.0)
        assert request(port, "/status.json")[0] == 200  # refilled at 5 per second
    finally:
        pipeline.stop()
        server.close()


def test_without_a_token_only_loopback_host_names_are_answered():
    server, pipeline = serve()
    port = server.address[1]
    try:
        for host, want in (
            (f"127.0.0.1:{port}", 200),
            (f"localhost:{port}", 200),
            ("[::1]", 200),
            (f"evil.example:{port}", 403),  # a rebinding site's page asking through the browser
            ("192.168.1.5", 403),
        ):
            assert request(port, "/status.json", {"Host": host})[0] == want, host
        assert request(port, "/login")[0] == 303
    finally:
        pipeline.stop()
        server.close()


def self_signed(folder) -> tuple[str, str]:
    """A throw-away certificate for 127.0.0.1 from the openssl command line tool."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_a_self_signed_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    options = webauth.web_options(str(tmp_path / "token"), cert, key)
    board = FrameBoard()
    server = StatusServer("127.0.0.1:0", board, status_fixture, options).start()
    port = server.address[1]
    client = ssl.create_default_context(cafile=cert)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        silent = socket.create_connection(("127.0.0.1", port))  # never starts its handshake
        start = time.perf_counter()
        status, _, body = request(port, "/status.json", bearer(options.token), tls=client)
        assert time.perf_counter() - start < 2.0  # the silent handshake holds up no one
        silent.close()
        assert status == 200 and b'"frames": 7' in body
        assert request(port, "/metrics", tls=client)[0] == 401
        _, head, _ = login(port, options.token, tls=client)
        assert "Secure" in [p.strip() for p in head["Set-Cookie"].split(";")]
        with pytest.raises(ssl.SSLCertVerificationError):
            request(port, "/", tls=ssl.create_default_context())  # not in the system store
        assert b"HTTP/" not in raw(port, b"GET /status.json HTTP/1.0\r\n\r\n", timeout=5)
    finally:
        server.close()
    with pytest.raises(OutputError, match="--tls-cert .* cannot load"):
        webauth.web_options(None, key, cert)
    with pytest.raises(OutputError, match="cannot load"):
        webauth.web_options(None, str(tmp_path / "none.pem"), key)
    with pytest.raises(OutputError, match="go together"):
        webauth.web_options(None, cert, None)
    assert os.stat(tmp_path / "token").st_mode & 0o077 == 0
