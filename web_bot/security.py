"""Who a request comes from and whether to trust where it says it comes from: the client's address behind trusted
proxies, the Origin checks that keep other sites out, and the security headers every answer carries."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.auth import Credentials, is_loopback
from core.errors import AuthError

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


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8000`` → ``::1``), lowercased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class GuardHosts:
    """Refuses requests for a ``Host`` the server does not go by (DNS rebinding: a page of another site, its name
    pointed at this server, would otherwise be same-origin with it), and in mode ``none`` without
    ``auth.allow_anonymous``, requests from any client but this machine. ``hosts`` None: any host."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None, loopback_only: bool) -> None:
        self.app = app
        self.hosts = hosts
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4403, "reason": refusal.message[:120]})
        else:
            body = json.dumps({"code": refusal.code, "detail": refusal.message}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope) -> AuthError | None:
        headers = Headers(scope=scope)
        if self.hosts is not None and host_name(headers.get("host", "")) not in self.hosts:
            return AuthError("this server does not answer to that host name (server.allowed_hosts)", code="bad-origin")
        client = scope.get("client")
        if self.loopback_only and not (client and is_loopback(client[0])):
            return AuthError(
                "this server has no accounts (auth.mode none) and answers only its own machine", code="not-allowed"
            )
        return None


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


def same_origin(headers: Headers, allowed: Iterable[str], scheme: str = "") -> bool:
    """Whether a browser request comes from the server's own page (or an allowed origin): same scheme (``ws`` and
    ``wss`` are ``http`` and ``https``), same host and port. A request without ``Origin`` and ``Sec-Fetch-Site``
    comes from no browser page at all (a script), and passes."""
    origin = headers.get("origin")
    if origin is not None:
        if origin in allowed:
            return True
        parts = urlsplit(origin)
        own_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        return (
            origin != "null"
            and bool(parts.netloc)
            and parts.path in ("", "/")
            and not parts.query
            and (not own_scheme or parts.scheme == own_scheme)
            and parts.netloc.lower() == headers.get("host", "").lower()
        )
    site = headers.get("sec-fetch-site")
    return site is None or site in ("same-origin", "none")
