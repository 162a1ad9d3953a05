"""Who may use the fake server's ``/_...`` control endpoints (its token, a loopback client, Host
and Origin, a JSON body), and what a request record keeps of credential headers (a keyed tag)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import urllib.parse
from typing import Any

TOKEN_HEADER = "X-Fake-Server-Token"
TOKEN_ENV = "DF_FAKE_SERVER_TOKEN"  # how a subprocess server gets its token (never argv: ps shows it)


def credential_tag(token: str, value: str) -> str:
    """What a recorded request keeps instead of a credential header's ``value``: a digest keyed
    with the server's token, so a test can check which key was sent without the log holding it."""
    digest = hmac.new(token.encode(), str(value).encode(), hashlib.sha256).hexdigest()[:16]
    return f"[redacted {digest}]"


_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "password", "cookie", "session", "credential")


def recorded_headers(headers: Any, token: str) -> dict:
    """Request headers, lower-cased, with every credential-like value replaced by its tag."""
    return {
        k.lower(): credential_tag(token, v) if any(w in k.lower() for w in _CREDENTIAL_WORDS) else v
        for k, v in headers.items()
    }


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip().lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def control_refusal(request: Any, token: str) -> tuple[int, str] | None:
    """Why a control request is refused (status, message), or None to let it through."""
    if not _is_loopback_host(request.remote):
        return 403, "control endpoints answer loopback clients only"
    try:
        host = urllib.parse.urlsplit("//" + (request.headers.get("Host") or "")).hostname
    except ValueError:
        host = None
    if not _is_loopback_host(host):
        return 403, "control endpoints need a loopback Host header"
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            origin_host = urllib.parse.urlsplit(origin).hostname
        except ValueError:
            origin_host = None
        if not _is_loopback_host(origin_host):
            return 403, "control endpoints refuse requests from a non-loopback Origin"
    given = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return 401, f"control endpoints need the server's token in the {TOKEN_HEADER} header"
    if request.method == "POST" and request.content_type != "application/json":
        return 415, "control endpoints take application/json bodies only"
    return None

