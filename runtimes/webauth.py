"""Who may see the web view: the token file, bearer and cookie checks, the loopback rule, TLS.

The web view shows live frames of whatever the camera sees, so a run that listens beyond loopback
must have a token (``--token-file``). The threat model behind each rule is in docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import ssl
import stat
from dataclasses import dataclass

from edgesal.runtimes.errors import OutputError

log = logging.getLogger("edgesal.runtimes.webauth")

TOKEN_BYTES = 32  # a new token holds 256 random bits
MIN_TOKEN_CHARS = 22  # 22 base64url characters carry 132 bits: a user's own token needs as many
MAX_TOKEN_FILE = 4096
TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 b64token: fits in a header as is
COOKIE = "edgesal_session"
LOOPBACK_NAMES = ("localhost",)
HOW_TO_ADD = (
    "add --token-file FILE (a missing FILE gets a new random token, mode 0600), then send "
    "'Authorization: Bearer <token>' or log in at /login"
)


def parse_address(spec: str) -> tuple[str, int]:
    """``8080``, ``:8080``, ``127.0.0.1:8080``, ``0.0.0.0:8080``, ``[::1]:8080`` -> (host, port)."""
    host, _, port = spec.rpartition(":")
    host = host or "127.0.0.1"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise OutputError(f"--serve {spec}: write an IPv6 address in brackets, e.g. [::1]:8080")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise OutputError(f"--serve {spec}: expected [HOST:]PORT with PORT in 0..65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` and ``localhost`` are loopback; any other name or address is not.

    Host names other than ``localhost`` count as beyond loopback without a DNS lookup: what a name
    resolves to can change after the check.
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_or_create_token(path: str) -> str:
    """The token in PATH; when PATH is missing, a new ``secrets.token_urlsafe(32)`` written there.

    The new file is created exclusively (``O_EXCL``: an existing file or link is never
    overwritten) with mode 0600; its path is logged, never the token.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    except OSError as exc:
        raise OutputError(f"--token-file {path}: cannot create it: {exc.strerror}") from exc
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(token + "\n")
    log.warning("wrote a new web view token to %s (mode 0600); keep it secret", path)
    return token


def read_token(path: str) -> str:
    """The token in an existing token file: a regular file, not readable by group or others."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise OutputError(f"--token-file {path}: not a regular file")
        if info.st_mode & 0o077:
            raise OutputError(
                f"--token-file {path}: group or others may access it "
                f"(mode {stat.S_IMODE(info.st_mode):03o}); run: chmod 600 {path}"
            )
        with open(path, "rb") as f:
            raw = f.read(MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise OutputError(f"--token-file {path}: cannot read it: {exc.strerror}") from exc
    if len(raw) > MAX_TOKEN_FILE:
        raise OutputError(f"--token-file {path}: over {MAX_TOKEN_FILE} bytes, not a token file")
    token = raw.decode("ascii", "replace").strip()
    if not TOKEN_SYNTAX.fullmatch(token) or len(token) < MIN_TOKEN_CHARS:
        raise OutputError(
            f"--token-file {path}: expected one token of at least {MIN_TOKEN_CHARS} characters "
            "from A-Z a-z 0-9 - . _ ~ + / (delete the file to get a new random one)"
        )
    return token


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or newer) holding the PEM certificate chain and its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise OutputError(f"--tls-cert {cert} --tls-key {key}: cannot load: {reason}") from exc
    return context


class Gate:
    """Admits a request carrying ``Authorization: Bearer TOKEN`` or the session cookie.

    The cookie holds HMAC-SHA256(token, "edgesal web view session"), not the token itself; both
    comparisons run in constant time (``hmac.compare_digest``). Without a token every request
    passes (loopback only, enforced by :func:`web_options` and the server).
    """

    def __init__(self, token: str | None):
        self.token = token
        self._token = (token or "").encode()
        self.session = (
            hmac.new(self._token, b"edgesal web view session", hashlib.sha256).hexdigest()
            if token
            else ""
        )

    def admits(self, authorization: str | None, cookie: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, value = (authorization or "").strip().partition(" ")
        bearer = scheme.lower() == "bearer" and self.token_matches(value.strip())
        return bearer or hmac.compare_digest(_cookie_value(cookie), self.session.encode())

    def token_matches(self, candidate: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            candidate.encode("utf-8", "surrogatepass"), self._token
        )


def _cookie_value(header: str | None) -> bytes:
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value.encode("utf-8", "surrogatepass")
    return b""


@dataclass(frozen=True)
class WebOptions:
    """How the web view admits and bounds its clients.

    ``timeout``: seconds a connection may take to send its request or to take one frame;
    ``max_clients``: MJPEG streams at once (503 beyond); ``max_connections``: open connections
    at once, each one thread; ``max_rate``: new connections per second, on average (beyond
    either: closed at once). A status page polls twice a second, so 100/s serves ~50 pages.
    """

    token: str | None = None
    tls: ssl.SSLContext | None = None
    max_clients: int = 4
    max_connections: int = 64
    max_rate: float = 100.0
    timeout: float = 10.0


def check_exposure(address: str, options: WebOptions) -> None:
    """Refuse to listen beyond loopback (``--serve ADDRESS``) without a token."""
    if options.token is None and not is_loopback(parse_address(address)[0]):
        raise OutputError(
            f"--serve {address}: listening beyond loopback shows the camera to the network; "
            + HOW_TO_ADD
        )


def web_options(
    token_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    max_clients: int = 4,
) -> WebOptions:
    """``--token-file``, ``--tls-cert``/``--tls-key``, ``--max-clients`` -> :class:`WebOptions`."""
    if (tls_cert is None) != (tls_key is None):
        raise OutputError("--tls-cert and --tls-key go together: give both or neither")
    if max_clients < 1:
        raise OutputError(f"--max-clients {max_clients}: expected at least 1")
    return WebOptions(
        token=load_or_create_token(token_file) if token_file else None,
        tls=tls_context(tls_cert, tls_key) if tls_cert and tls_key else None,
        max_clients=max_clients,
    )
