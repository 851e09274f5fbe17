"""ChatPipeline: one turn in (text, or speech already transcribed), one streamed reply out, stored.

Each client has a lane: its turns run one after another, in order, while other clients' lanes run alongside.
A lane exists only while it has work, so idle clients cost nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import BotError, LLMError
from core.events import ErrorEvent, Interrupted, Reply, ReplyDelta, UserMessage
from core.hub import Hub
from core.interfaces import HistoryStore, LLMEngine
from core.models import ChatMessage, NewMessage, Source, Status

logger = logging.getLogger(__name__)

T = TypeVar("T")
CONTEXT_STATUSES = ("ok", "interrupted")


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """A user's message, ready for the LLM."""

    client_id: str
    text: str
    source: Source = "text"
    audio_path: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What became of a turn."""

    user_message_id: int
    reply: str
    message_id: int | None
    status: Status
    timings: dict[str, float]
    error: BotError | None = None


@dataclass(slots=True)
class _Lane:
    jobs: deque[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    current: asyncio.Task[Any] | None = None


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


class ChatPipeline:
    """Runs turns: stores the user's message, streams the LLM's reply to every tab, stores the reply."""

    def __init__(
        self,
        *,
        llm: LLMEngine,
        history: HistoryStore,
        hub: Hub,
        system_prompt: str,
        history_messages: int,
        delta_interval_ms: float = 0.0,
    ) -> None:
        self._llm = llm
        self._history = history
        self._hub = hub
        self._system_prompt = system_prompt
        self._history_messages = history_messages
        self._delta_interval = delta_interval_ms / 1000
        self._lanes: dict[str, _Lane] = {}
        self.llm_healthy = True

    @property
    def busy_clients(self) -> int:
        return len(self._lanes)

    def submit(self, request: TurnRequest) -> asyncio.Future[TurnResult]:
        """Queue a turn behind the client's earlier ones; the future resolves when the reply is stored."""
        return self.in_lane(request.client_id, lambda: self._run_turn(request))

    def in_lane(self, client_id: str, job: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``job`` in the client's lane, after everything queued before it."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        lane = self._lanes.get(client_id)
        if lane is None:
            lane = self._lanes[client_id] = _Lane()
        lane.jobs.append((job, future))
        if lane.task is None:
            lane.task = asyncio.create_task(self._drain(client_id, lane), name=f"lane-{client_id}")
        return future

    def interrupt(self, client_id: str) -> bool:
        """Cancel the turn the client's lane is running, if any; its partial reply is kept as interrupted."""
        lane = self._lanes.get(client_id)
        if lane is None or lane.current is None or lane.current.done():
            return False
        lane.current.cancel()
        return True

    async def aclose(self) -> None:
        """Finish queued work (bounded by the caller's shutdown timeout)."""
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self, client_id: str, lane: _Lane) -> None:
        try:
            while lane.jobs:
                job, future = lane.jobs.popleft()
                lane.current = asyncio.ensure_future(job())
                await asyncio.wait([lane.current])
                if future.done():
                    continue
                if lane.current.cancelled():
                    future.cancel()
                elif (exc := lane.current.exception()) is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(lane.current.result())
        finally:
            lane.current = None
            lane.task = None
            if not lane.jobs:
                self._lanes.pop(client_id, None)

    async def _run_turn(self, request: TurnRequest) -> TurnResult:
        """A turn never raises a BotError: the failure is sent to the client and returned in the result."""
        try:
            return await self._turn(request)
        except BotError as err:
            logger.warning("turn client=%s failed: %s (%s)", request.client_id, err.code, err.__cause__ or err)
            failure = err
        except Exception as err:
            logger.exception("turn client=%s failed unexpectedly", request.client_id)
            failure = BotError("the server failed to handle this message", code="internal-error")
            failure.__cause__ = err
        await self._hub.publish(request.client_id, ErrorEvent(failure.code, failure.message).to_dict())
        return TurnResult(0, "", None, "error", dict(request.timings), failure)

    async def _turn(self, request: TurnRequest) -> TurnResult:
        start = time.perf_counter()
        timings = dict(request.timings)
        client_id = request.client_id
        stored_user, recent = await asyncio.gather(
            self._history.append(NewMessage(client_id, "user", request.text, request.source, "ok", request.audio_path)),
            self._history.recent(client_id, self._history_messages + 1, statuses=CONTEXT_STATUSES),
        )
        await self._hub.publish(
            client_id,
            UserMessage(request.text, stored_user.id, request.source, stored_user.created_at.isoformat()).to_dict(),
        )
        earlier = [m for m in recent if m.id != stored_user.id][-self._history_messages :]
        if not self._history_messages:
            earlier = []
        context = [
            ChatMessage("system", self._system_prompt),
            *(ChatMessage(m.role, m.content) for m in earlier),
            ChatMessage("user", request.text),
        ]
        parts: list[str] = []
        unsent: list[str] = []
        last_sent = 0.0
        llm_start = time.perf_counter()
        try:
            async for fragment in self._llm.stream_reply(context):
                now = time.perf_counter()
                if not parts:
                    timings["llm_first_token_ms"] = elapsed_ms(llm_start)
                parts.append(fragment)
                unsent.append(fragment)
                # The first fragment goes at once; later ones are sent at most every delta_interval, so a fast
                # model costs a few frames per reply rather than one per token.
                if len(parts) == 1 or now - last_sent >= self._delta_interval:
                    last_sent = now
                    await self._hub.publish(client_id, ReplyDelta("".join(unsent)).to_dict())
                    unsent.clear()
            if unsent:
                await self._hub.publish(client_id, ReplyDelta("".join(unsent)).to_dict())
        except LLMError as err:
            self.llm_healthy = err.code not in ("llm-unavailable", "llm-auth", "llm-timeout")
            timings["llm_total_ms"] = elapsed_ms(llm_start)
            return await self._fail(request, stored_user.id, "".join(parts), err, timings)
        except asyncio.CancelledError:
            await asyncio.shield(self._keep_interrupted(request, stored_user.id, "".join(parts), timings))
            raise
        timings["llm_total_ms"] = elapsed_ms(llm_start)
        self.llm_healthy = True
        reply = "".join(parts).strip()
        stored = await self._history.append(NewMessage(client_id, "assistant", reply, request.source, "ok"))
        timings["total_ms"] = elapsed_ms(start)
        await self._hub.publish(client_id, Reply(reply, stored.id, timings).to_dict())
        logger.info("turn client=%s source=%s chars=%d timings=%s", client_id, request.source, len(reply), timings)
        logger.debug("turn client=%s user=%r reply=%r", client_id, request.text, reply)
        return TurnResult(stored_user.id, reply, stored.id, "ok", timings)

    async def _fail(
        self, request: TurnRequest, user_id: int, partial: str, err: LLMError, timings: dict[str, float]
    ) -> TurnResult:
        logger.warning("turn client=%s failed: %s (%s)", request.client_id, err.code, err.__cause__ or err)
        message_id = None
        if partial.strip():  # keep what the user already saw, marked as failed; never a made-up reply
            stored = await self._history.append(
                NewMessage(request.client_id, "assistant", partial.strip(), request.source, "error")
            )
            message_id = stored.id
        await self._hub.publish(request.client_id, ErrorEvent(err.code, err.message).to_dict())
        return TurnResult(user_id, partial, message_id, "error", timings, err)

    async def _keep_interrupted(
        self, request: TurnRequest, user_id: int, partial: str, timings: dict[str, float]
    ) -> None:
        message_id = None
        if partial.strip():
            stored = await self._history.append(
                NewMessage(request.client_id, "assistant", partial.strip(), request.source, "interrupted")
            )
            message_id = stored.id
        logger.info("turn client=%s interrupted after %d chars", request.client_id, len(partial))
        await self._hub.publish(request.client_id, Interrupted(message_id, partial.strip()).to_dict())


async def run_blocking(semaphore: asyncio.Semaphore, func: Callable[[], T]) -> T:
    """Run blocking work in a thread, at most as many at once as the semaphore allows."""
    async with semaphore:
        return await asyncio.to_thread(func)
