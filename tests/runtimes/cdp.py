"""Drive headless Chromium over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

The pipe needs no port and no websocket library: Chromium reads JSON commands, each ended by a NUL
byte, from file descriptor 3 and writes replies and events to descriptor 4. Only what the web
view tests use: open a page, evaluate JavaScript, type text, read cookies.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import time


class Browser:
    """One headless Chromium process with a fresh profile in ``profile``."""

    def __init__(self, chromium: str, profile: str):
        to_child, self._out = map(_above_4, os.pipe())
        self._in, from_child = map(_above_4, os.pipe())

        def wire() -> None:  # in the child: fd 3 reads commands, fd 4 writes replies
            os.dup2(to_child, 3)  # dup2 copies are inheritable; pipe fds are not (PEP 446)
            os.dup2(from_child, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
        flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        self.proc = subprocess.Popen(
            [chromium, *flags, "--remote-debugging-pipe", f"--user-data-dir={profile}"],
            preexec_fn=wire,
            close_fds=False,  # close_fds would close 3 and 4 after wire(); exec drops the rest
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._id, self._buffer = 0, b""

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result (events arriving meanwhile are dropped)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(timeout=30)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _receive(self, timeout: float) -> dict:
        end = time.time() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(0.0, end - time.time()))
            chunk = os.read(self._in, 1 << 20) if ready else b""
            if not chunk:
                raise TimeoutError("no reply from Chromium")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str, before_load: str = "") -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        if before_load:
            page.send("Page.enable")
            page.send("Page.addScriptToEvaluateOnNewDocument", {"source": before_load})
        page.send("Page.navigate", {"url": url})
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._out)
        os.close(self._in)


def _above_4(fd: int) -> int:
    """The same pipe end on a descriptor above 4, so that the child's dup2 to 3 and 4 cannot
    overwrite it (still close-on-exec)."""
    if fd > 4:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


class Page:
    """A tab attached through a flat session."""

    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str):
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        """Poll EXPRESSION until it is truthy (navigations in between are fine)."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                if value := self.evaluate(expression):
                    return value
            except RuntimeError:  # the context went away with a navigation
                pass
            time.sleep(0.1)
        raise TimeoutError(f"never true in the browser: {expression}")

    def type_into(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", {"text": text})

    def cookies(self) -> list[dict]:
        return self.send("Network.getCookies")["cookies"]
