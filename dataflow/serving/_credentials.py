"""Credentials on their way to a server: a key fit for an HTTP header, and URLs with
``user:password@`` split off (sent as Basic auth) or redacted for printing."""

from __future__ import annotations

import urllib.parse

from ..core.errors import ConfigError


def split_userinfo(url: str) -> tuple[str, str]:
    """``(url without user:password@, the user:password part or "")``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), userinfo


def redact_url(url: str, userinfo: str | None = None) -> str:
    """``url`` fit to print: credentials in it (``user:password@``) become ``***@``."""
    bare, found = split_userinfo(url)
    if not (userinfo or found):
        return url
    parts = urllib.parse.urlsplit(bare)
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc))


def check_key(key: str, key_env: str | None) -> None:
    """A key that cannot go in an HTTP header is a ``ConfigError`` naming its variable (never
    the key): a line break (a key file with CRLF line endings) or another control character."""
    bad = next((ch for ch in key if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        what = {"\r": "a carriage return (\\r)", "\n": "a line break (\\n)"}.get(bad, f"a control character ({ord(bad):#04x})")
        raise ConfigError(
            f"the API key in ${key_env or 'the key variable'} contains {what}, which cannot be sent in an "
            f"HTTP header (was it read from a file with Windows line endings?): strip it, e.g. "
            f"export {key_env or 'DF_API_KEY'}=\"$(tr -d '\\r\\n' < keyfile)\""
        )
