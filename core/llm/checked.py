"""CheckedLLM: what every configured language model is wrapped in — bounded concurrency and valid text out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from core.interfaces import LLMEngine, TurnTextJudge
from core.models import ChatMessage, EngineInfo
from core.unicode import repaired


class CheckedLLM:
    """At most ``max_concurrent`` replies stream at once (later requests queue, first come first served), and
    each fragment is valid Unicode (``core.unicode``) before anything sends, speaks or stores it."""

    def __init__(self, engine: LLMEngine, *, max_concurrent: int) -> None:
        self.engine = engine
        self._slots = asyncio.Semaphore(max_concurrent)
        self.max_concurrent = max_concurrent

    @property
    def waiting(self) -> int:
        """Requests queued for a free slot."""
        waiters = getattr(self._slots, "_waiters", None)
        return len(waiters) if waiters else 0

    def info(self) -> EngineInfo:
        return self.engine.info()

    async def stream_reply(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        async with self._slots:
            async for fragment in repaired(self.engine.stream_reply(messages)):
                yield fragment

    @property
    def reads_turns(self) -> bool:
        return isinstance(self.engine, TurnTextJudge) and self.engine.reads_turns

    async def end_of_turn(self, messages: Sequence[ChatMessage]) -> float | None:
        """The engine's probability that the user's turn ends with the last message (``TurnTextJudge``); None if
        the engine cannot tell."""
        if not isinstance(self.engine, TurnTextJudge):
            return None
        return await self.engine.end_of_turn(messages)

    async def aclose(self) -> None:
        await self.engine.aclose()
