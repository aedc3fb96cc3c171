"""Which weight URLs mmgen will fetch: https, file:// (local files), and plain http only on this machine
(a local test server) — weights are verified by sha256 either way, but a plain-http mirror invites tampering."""

from __future__ import annotations

from urllib.parse import urlsplit

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_url(url: str) -> None:
    """Raise ValueError for a URL mmgen refuses to download from."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "file" and parts.path:
        return
    if parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS:
        return
    raise ValueError(f"unsupported url {url!r}: use https://, file://, or http:// on localhost only")
