"""Who a request comes from and whether to trust where it says it comes from: the client's address behind trusted
proxies, the Origin checks that keep other sites out, and the security headers every answer carries."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.auth import Credentials

PEER = "web_bot.peer"  # the scope key holding the direct peer's address, before X-Forwarded-For rewrote it
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RecordPeer:
    """Keeps the direct peer's address in the scope before the proxy-headers middleware replaces the client with
    the one a trusted proxy forwarded: only that peer may name a user in ``auth.proxy_header``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            scope[PEER] = client[0] if client else ""
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds the Content-Security-Policy and the other security headers to every HTTP answer."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [
            ("content-security-policy", csp),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
            ("x-frame-options", "DENY"),
            ("cross-origin-opener-policy", "same-origin"),
            ("permissions-policy", "microphone=(self), camera=(), geolocation=()"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def content_security_policy(script_hashes: Iterable[str]) -> str:
    """No inline script but the import map (allowed by its hash), nothing framed, nothing from other origins."""
    scripts = " ".join(["'self'", *(f"'sha256-{h}'" for h in script_hashes)])
    return "; ".join([
        "default-src 'self'",
        f"script-src {scripts}",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def in_networks(address: str, networks: Iterable[str]) -> bool:
    """Whether ``address`` is one of ``networks`` (addresses or CIDR networks; ``*`` is any)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for network in networks:
        if network.strip() == "*":
            return True
        try:
            if ip in ipaddress.ip_network(network.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


def credentials_of(conn: HTTPConnection, *, cookie: str, proxy_header: str, trusted: Iterable[str]) -> Credentials:
    """What ``conn`` carried: its client's address, the session cookie, a bearer token, and the proxy's user when
    the direct peer is a trusted proxy (the header from anyone else is ignored)."""
    address = conn.client.host if conn.client else ""
    bearer = None
    authorization = conn.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        bearer = value.strip()
    proxy_user = None
    peer = conn.scope.get(PEER, address)
    if proxy_header and in_networks(peer, trusted):
        proxy_user = conn.headers.get(proxy_header) or None
    return Credentials(address, conn.cookies.get(cookie) or None, bearer, proxy_user)


def same_origin(headers: Headers, allowed: Iterable[str]) -> bool:
    """Whether a browser request comes from the server's own page (or an allowed origin). A request without
    ``Origin`` and ``Sec-Fetch-Site`` comes from no browser page at all (a script), and passes."""
    origin = headers.get("origin")
    if origin is not None:
        if origin in allowed:
            return True
        parts = urlsplit(origin)
        return origin != "null" and bool(parts.netloc) and parts.netloc.lower() == headers.get("host", "").lower()
    site = headers.get("sec-fetch-site")
    return site is None or site in ("same-origin", "none")
