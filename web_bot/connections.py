"""WebSocketSink: one browser tab's socket as an EventSink, with a send lock and a send timeout."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket

from web_bot.protocol import dumps


class WebSocketSink:
    """Sends events to one socket; a binary frame follows its event with nothing in between."""

    __slots__ = ("_lock", "_timeout", "_ws")

    # A close frame to a tab that stopped reading may never leave: give up on it after this long.
    CLOSE_TIMEOUT_S = 2.0

    def __init__(self, websocket: WebSocket, timeout_s: float) -> None:
        self._ws = websocket
        self._timeout = timeout_s
        self._lock = asyncio.Lock()

    async def send(self, event: dict[str, object], binary: bytes | None = None) -> None:
        async with self._lock:
            # A tab that stops reading must not hold up the turn: after the timeout it is dropped.
            async with asyncio.timeout(self._timeout):
                await self._ws.send_text(dumps(event))
                if binary is not None:
                    await self._ws.send_bytes(binary)

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.CLOSE_TIMEOUT_S):
                await self._ws.close(code=code, reason=reason)
