"""SocketGuard: one socket's user, looked up again while the socket stays open, and the limits on what it sends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from core.auth import Auth, Credentials, Principal
from core.errors import AuthError, BotError, HistoryError, RateLimited
from core.events import ErrorEvent

logger = logging.getLogger(__name__)

RECHECK_S = 1.0  # while audio streams, the credential is looked up at most this often
IDLE_RECHECK_S = 15.0  # a socket that sends nothing is looked up this often, so a signed-out tab stops receiving


def error_event(err: BotError) -> dict[str, object]:
    """The ``error`` event for ``err``; a refusal by a limit says when to try again (``retry_after_ms``)."""
    event: dict[str, object] = ErrorEvent(err.code, err.message).to_dict()
    if isinstance(err, RateLimited):
        event["retry_after_ms"] = err.retry_after_ms
    return event


class SocketGuard:
    """A revoked session or token, or a disabled account, ends the socket at its next frame (any text frame; an
    audio frame at most ``RECHECK_S`` after the last look); a proxy's user is as the handshake named them."""

    def __init__(self, auth: Auth, principal: Principal, credentials: Credentials) -> None:
        self.auth = auth
        self.principal = principal
        self._credentials = credentials
        self._checked = time.monotonic()

    async def still_valid(self, *, text: bool) -> bool:
        if self.principal.via not in ("session", "token"):
            return True
        moment = time.monotonic()
        if not text and moment - self._checked < RECHECK_S:
            return True
        self._checked = moment
        try:
            now = await self.auth.authenticate(self._credentials)
        except AuthError:
            now = None
        except HistoryError as err:
            logger.warning("could not look up the credential of an open socket: %s", err.code)
            return True  # the store is away: the socket keeps what it had rather than dropping everyone
        if now is None or now.user_id != self.principal.user_id:
            logger.info("socket of %s closed: its sign-in ended", self.principal.user.username if self.principal.user
                        else "?")
            return False
        return True

    async def watch(self, close: Callable[[], Awaitable[None]]) -> None:
        """Look the credential up every ``IDLE_RECHECK_S`` even while the socket is silent (it still receives its
        conversation's events), and ``close`` the socket once it no longer holds."""
        if self.principal.via not in ("session", "token"):
            return
        while True:
            await asyncio.sleep(IDLE_RECHECK_S)
            if not await self.still_valid(text=True):
                await close()
                return

    async def reopen(self, client_id: str) -> None:
        """Before a turn: the conversation exists, and is this socket's user's. A conversation deleted while this
        socket stayed open is made again (empty, theirs), so what they say next is never stored where no list,
        search or delete can reach it."""
        await self.auth.open_conversation(self.principal, client_id, create=True)

    async def count_message(self) -> None:
        await self.auth.count_message(self.principal)

    async def check_audio(self) -> None:
        await self.auth.check_audio(self.principal)

    async def spend_audio(self, seconds: float) -> None:
        if seconds > 0:
            await self.auth.spend_audio(self.principal, seconds)
