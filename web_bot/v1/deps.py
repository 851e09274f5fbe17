"""Who calls ``/v1``: the owner of a personal API token; in ``auth.mode`` none anyone, whatever token they send
(OpenAI's clients refuse to start without one, so any placeholder must do)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from core.auth import Credentials, Principal
from core.errors import AuthError
from web_bot.deps import get_auth, get_credentials


async def api_principal(connection: HTTPConnection) -> Principal:
    """The caller of a ``/v1`` route: a token's owner, or anonymous in mode none."""
    return await principal_with(connection, get_credentials(connection).bearer_token)


async def principal_with(connection: HTTPConnection, bearer_token: str | None) -> Principal:
    """The caller of a ``/v1`` route who sent ``bearer_token`` (in the Authorization header, or for a browser's
    WebSocket in its subprotocols), or anonymous in mode none.

    Raises ``AuthError`` ``auth-required`` with no token outside mode none, ``bad-credentials`` for a token that is
    not valid (revoked, or its account disabled). Cookies are not read: a page on another site could otherwise
    spend a signed-in user's session through these routes, which take no Origin check.
    """
    auth = get_auth(connection)
    credentials = get_credentials(connection)
    token_only = Credentials(credentials.address, None, bearer_token, None)
    if auth.open:
        try:
            return await auth.authenticate(token_only)
        except AuthError:
            return await auth.authenticate(Credentials(credentials.address, None, None, None))
    if bearer_token is None:
        raise AuthError("send a personal API token as 'Authorization: Bearer wbt_…'", code="auth-required")
    principal = await auth.authenticate(token_only)
    auth.require_user(principal)
    return principal


ApiPrincipalDep = Annotated[Principal, Depends(api_principal)]
