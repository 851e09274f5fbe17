"""Streamed responses that stop their work the moment the client goes: while the first words or sound are awaited
(before the response starts) and while the rest streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")
logger = logging.getLogger(__name__)


async def unless_gone(request: Request, first: Awaitable[T]) -> T:
    """``first`` (a stream's first piece, which a route awaits before it answers, so that a failure there is the
    response's status), cancelled as soon as the client disconnects: then ``ClientDisconnect``.

    Nothing else listens while a route runs: a caller who hung up while a local model read a long prompt (10-25 s
    on 2 cores) held its only slot, everyone's turns behind it, until the first token.
    """
    work = asyncio.ensure_future(first)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler itself was cancelled (the server is stopping)
        work.cancel()
        raise
    finally:
        gone.cancel()
    if work.done():
        return work.result()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work  # its finally blocks (closing the model's stream) run before the handler returns
    raise ClientDisconnect()


async def _disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body was read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class StoppedOnDisconnect(StreamingResponse):
    """A ``StreamingResponse`` whose body (an async generator) is closed as soon as the client disconnects.

    Starlette cancels the body on a disconnect only under ASGI < 2.4 (uvicorn speaks 2.3 today); under 2.4 it
    notices only when a send fails. Either way it leaves a body stopped at a ``yield`` to the garbage collector.
    Behind our bodies is a model writing a reply or a voice reading one, each holding a slot others queue for,
    so here the disconnect is listened for in every case and the body is closed at once (shielded, so that its
    ``finally`` can give back what it holds).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = False
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    nonlocal sent
                    try:
                        await self.stream_response(send)
                        sent = True
                    except OSError:  # the client went while we were sending
                        pass
                    finally:
                        group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            if not sent:
                logger.info("%s: the client went while the answer was being sent", scope.get("path"))
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()
        if self.background is not None:
            await self.background()
