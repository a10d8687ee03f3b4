"""The token flow end to end: ``edgesal run --token-file`` and headless Chromium logging in."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request

import pytest

from tests.runtimes.cdp import Browser
from tests.runtimes.clihelp import start_server, stop
from tests.runtimes.test_server import moving_clip

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CSP_WATCH = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective));"
)


@pytest.fixture(scope="module")
def guarded_run(models, tmp_path_factory):
    """A run on 127.0.0.1 with --token-file pointing at a file that does not exist yet."""
    folder = tmp_path_factory.mktemp("login")
    token_file = folder / "secrets" / "token"
    token_file.parent.mkdir()
    seen: list[str] = []
    proc, url = start_server(
        str(models["vanilla"]),
        "--source",
        str(moving_clip(folder / "moving.avi")),
        "--realtime",
        "--loop",
        "--token-file",
        str(token_file),
        seen=seen,
    )
    yield url, token_file.read_text().strip(), "".join(seen)
    stop(proc)


def get(url: str, token: str | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def test_run_writes_the_token_file_and_logs_only_its_path(guarded_run, tmp_path_factory):
    url, token, printed = guarded_run
    token_file = next(
        line.split(" to ")[1].split(" (mode")[0]
        for line in printed.splitlines()
        if "token to" in line
    )
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert len(token) >= 43 and token not in printed  # token_urlsafe(32): 256 bits
    assert f"log in at {url}login" in printed
    with pytest.raises(urllib.error.HTTPError, match="401"):
        get(url + "status.json")
    assert json.loads(get(url + "status.json", token))["frames"] >= 0


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_login_flow_in_headless_chromium(guarded_run):
    """401 first; a wrong token stays on the form; the right one lands on a live page that holds
    an HttpOnly, SameSite=Strict cookie its scripts cannot read; no CSP violation anywhere."""
    url, token, _ = guarded_run
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(CHROMIUM, profile)
        try:
            page = browser.open(url, before_load=CSP_WATCH)
            text = page.wait_for("document.readyState === 'complete' && document.body.innerText")
            assert "log in" in text and "Bearer" in text
            page.evaluate("document.querySelector('a[href=\"/login\"]').click()")
            page.wait_for("location.pathname === '/login' && !!document.querySelector('#token')")
            page.type_into("#token", token[:-2])
            page.evaluate("document.querySelector('#submit').click()")
            assert page.wait_for("document.querySelector('#note')?.textContent") == "Wrong token."
            assert page.cookies() == []
            page.type_into("#token", token)
            page.evaluate("document.querySelector('#submit').click()")
            page.wait_for("location.pathname === '/' && !!document.querySelector('#updated')")
            updated = page.wait_for(
                "/update #([3-9]|\\d\\d)/.test(document.querySelector('#updated').textContent)"
                " && document.querySelector('#stream-state').textContent === 'live'",
                timeout=30,
            )
            assert updated
            assert float(page.evaluate("document.querySelector('#fps').textContent")) > 1
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == (
                "rgb(17, 17, 17)"
            )  # the inline style block passed the CSP by its hash
            assert page.evaluate("window.__csp") == []
            assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
            (cookie,) = page.cookies()
            assert cookie["name"] == "edgesal_session" and cookie["value"] != token
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert cookie["domain"] == "127.0.0.1" and cookie["path"] == "/"
        finally:
            browser.close()
