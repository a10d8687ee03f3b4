"""Mutated HTTP requests against the web view (loopback): every one gets a well-formed answer from
the fixed set, or the connection closes; no handler fails with anything but a socket error, no
mutation reaches data without the token, and the server still answers afterwards."""

from __future__ import annotations

import logging
import random
import re
import time

from edgesal.runtimes.frameboard import FrameBoard
from edgesal.runtimes.server import StatusServer
from edgesal.runtimes.webauth import WebOptions
from tests.runtimes.webclient import FakePipeline, raw, request, status_fixture

TOKEN = "fuzz" + "Z" * 30
SEEDS = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /status.json?x=1 HTTP/1.0\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nCookie: a=b; edgesal_session=00ff\r\n\r\n",
    b"GET /frame.jpg HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n",
    b"POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 11\r\nOrigin: http://127.0.0.1\r\n\r\ntoken=abcde",
    b"GET /login HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
    b"HEAD /stream.mjpg HTTP/1.1\r\n\r\n",
]
PIECES = [
    b"\r\n", b"\n", b"\x00", b"\xff\xfe", b"%2e%2e/", b"../", b"//", b"?", b"#", b":", b" ",
    b"Content-Length: -1\r\n", b"Content-Length: 99999999999999999999\r\n", b"Host: [::1\r\n",
    b"Authorization: Bearer\r\n", b"Cookie: ;;;=\r\n", b"Origin: null\r\n", b"HTTP/9.9",
    b"Transfer-Encoding: chunked\r\n", b"token=" + TOKEN.encode(), "é".encode(),
]  # fmt: skip
ANSWERS = {100, 303, 400, 401, 403, 404, 405, 413, 414, 431, 501, 505}
EXPECTED_ENDINGS = ("TimeoutError", "ConnectionResetError", "BrokenPipeError")


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(data))
        choice = rng.random()
        if choice < 0.3:
            data = data[:at] + rng.choice(PIECES) + data[at:]
        elif choice < 0.5:
            data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
        elif choice < 0.65:
            data = data[:at]
        elif choice < 0.8:
            end = min(len(data), at + rng.randint(1, 16))
            data = data[:at] + data[at:end] * rng.randint(2, 300) + data[end:]
        else:
            data = data[:at] + data[rng.randint(at, len(data)) :]
    return data


def test_mutated_requests_get_only_fixed_answers(caplog):
    board = FrameBoard()
    options = WebOptions(token=TOKEN, max_rate=1e6, timeout=0.5)
    server = StatusServer("127.0.0.1:0", board, status_fixture, options).start()
    pipeline = FakePipeline(board, shape=(24, 32))
    pipeline.start()
    port, rng = server.address[1], random.Random(16)
    seen: dict[int | str, int] = {}
    try:
        with caplog.at_level(logging.DEBUG, "edgesal.runtimes.server"):
            for i in range(1500):
                data = mutate(rng, SEEDS[i % len(SEEDS)])
                answer = raw(port, data, timeout=5, limit=4096)
                if not answer:
                    seen["closed"] = seen.get("closed", 0) + 1
                    continue
                status = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
                assert status, (data, answer[:80])
                code = int(status.group(1))
                seen[code] = seen.get(code, 0) + 1
                login_page = code == 200 and b'name="token"' in answer
                authorized = code == 200 and TOKEN.encode() in data
                assert code in ANSWERS or login_page or authorized, (data, answer[:200])
                head = answer.split(b"\r\n\r\n", 1)[0]
                assert b"X-Content-Type-Options: nosniff" in head or code == 100, (data, head)
        endings = re.findall(r"connection from 127\.0\.0\.1 ended: (\w+)", caplog.text)
        assert set(endings) <= set(EXPECTED_ENDINGS), endings
        time.sleep(0.1)
        assert request(port, "/status.json", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    finally:
        pipeline.stop()
        server.close()
    assert len(seen) >= 5, seen  # the mutations reached many answers, not one
