"""URLs as web-bot shows them: never with the credentials a configured URL may carry."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def public_url(url: str) -> str:
    """``url`` without its user, password, query and fragment (``http://u:pw@host/v1?api-key=k`` → ``http://host/v1``):
    what a status page or a log may show of a configured endpoint."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
