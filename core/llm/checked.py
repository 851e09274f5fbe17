"""CheckedLLM: what every configured language model is wrapped in — bounded concurrency, deadlines and failover,
and valid text out."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence

from core.fallback import Breaker, Chain, Member
from core.interfaces import LLMEngine, PromptCache, TokenCounter, TurnTextJudge
from core.llm.failover import Served, stream_chain
from core.models import ChatMessage, EngineInfo
from core.unicode import repaired


class CheckedLLM:
    """At most ``max_concurrent`` replies stream at once (later requests queue, first come first served), and
    each fragment is valid Unicode (``core.unicode``) before anything sends, speaks or stores it.

    ``chain`` is ``engine`` and the fallbacks after it, with their deadlines (``core.llm.failover``); without one,
    ``engine`` alone, with no deadline. The first fragment of each reply is ``Served``: it names the engine that
    wrote it. Token counting and turn judging are ``engine``'s (the configured one).
    """

    def __init__(self, engine: LLMEngine, *, max_concurrent: int, chain: Chain[LLMEngine] | None = None) -> None:
        self.engine = engine
        self.chain = chain or Chain(
            "llm", [Member(engine.info().engine, engine, math.inf, Breaker(math.inf))], timeout_s=math.inf
        )
        self._slots = asyncio.Semaphore(max_concurrent)
        self.max_concurrent = max_concurrent

    @property
    def waiting(self) -> int:
        """Requests queued for a free slot."""
        waiters = getattr(self._slots, "_waiters", None)
        return len(waiters) if waiters else 0

    def info(self) -> EngineInfo:
        """The configured engine's; with fallbacks, ``chain`` says how each engine of the chain is doing."""
        info = self.engine.info()
        if len(self.chain.members) == 1:
            return info
        return EngineInfo(info.engine, info.model, info.ready, {**info.extra, "chain": self.chain.describe()})

    async def stream_reply(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[str]:
        async with self._slots:
            served: list[str] = []
            first = True
            async for fragment in repaired(stream_chain(self.chain, messages, served, max_tokens=max_tokens)):
                yield Served(fragment, served[0]) if first and served else fragment
                first = False

    @property
    def context_tokens(self) -> int | None:
        """The configured engine's context window in tokens (``TokenCounter``); None when unknown (a remote
        model)."""
        return self.engine.context_tokens if isinstance(self.engine, TokenCounter) else None

    def count_tokens(self, text: str) -> int | None:
        """``text``'s length in the engine's own tokens (``TokenCounter``); None when it has no tokenizer."""
        return self.engine.count_tokens(text) if isinstance(self.engine, TokenCounter) else None

    def count_prompt(self, messages: Sequence[ChatMessage]) -> int | None:
        """The prompt's length in the engine's own tokens, template included (``TokenCounter``); None when it
        cannot tell."""
        return self.engine.count_prompt(messages) if isinstance(self.engine, TokenCounter) else None

    @property
    def reads_turns(self) -> bool:
        return isinstance(self.engine, TurnTextJudge) and self.engine.reads_turns

    async def end_of_turn(self, messages: Sequence[ChatMessage]) -> float | None:
        """The engine's probability that the user's turn ends with the last message (``TurnTextJudge``); None if
        the engine cannot tell."""
        if not isinstance(self.engine, TurnTextJudge):
            return None
        return await self.engine.end_of_turn(messages)

    def prepare(self, messages: Sequence[ChatMessage]) -> None:
        """Have the engine evaluate the next prompt's start ahead (``PromptCache``), if it keeps one."""
        if isinstance(self.engine, PromptCache):
            self.engine.prepare(messages)

    async def aclose(self) -> None:
        for member in self.chain.members:
            await member.engine.aclose()
