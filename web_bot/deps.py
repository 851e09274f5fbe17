"""Typed dependencies for the routes: the bot, its auth, and who is asking."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from starlette.requests import HTTPConnection

from core.auth import Auth, Credentials, Principal
from core.errors import AuthError
from core.services import Bot
from web_bot.security import credentials_of, same_origin


def get_bot(connection: HTTPConnection) -> Bot:
    bot: Bot = connection.app.state.bot
    return bot


def get_auth(connection: HTTPConnection) -> Auth:
    auth = get_bot(connection).auth
    assert auth is not None
    return auth


def get_credentials(connection: HTTPConnection) -> Credentials:
    settings = get_bot(connection).settings
    return credentials_of(
        connection,
        cookie=settings.auth.cookie_name,
        proxy_header=settings.auth.proxy_header if settings.auth.mode == "proxy" else "",
        trusted=settings.server.forwarded_allow_ips.split(","),
    )


async def get_principal(connection: HTTPConnection) -> Principal:
    """Who is asking (anonymous when nobody signed in); a cookie-borne write from another site's page is refused."""
    bot = get_bot(connection)
    credentials = get_credentials(connection)
    principal = await get_auth(connection).authenticate(credentials)
    unsafe = connection.scope.get("method", "GET") in ("POST", "PUT", "PATCH", "DELETE")
    if unsafe and credentials.bearer_token is None and not same_origin(
        connection.headers, bot.settings.server.allowed_origins, connection.url.scheme
    ):
        raise AuthError("this request came from another site's page", code="bad-origin")
    return principal


# A database row id in a path or query: SQL integers end at 2^63 - 1, so anything past it is refused as a bad request.
ROW_ID_MAX = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]

BotDep = Annotated[Bot, Depends(get_bot)]
AuthDep = Annotated[Auth, Depends(get_auth)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
