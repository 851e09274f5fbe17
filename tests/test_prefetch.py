"""ReplyPrefetch on its own: a reply started ahead of its turn is replayed then followed live, handed over only for
the context it was started with, and stopped when its owner (the turn) cancels its run. Nothing starts until run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from core.errors import LLMError
from core.models import ChatMessage
from core.prefetch import ReplyPrefetch

CONTEXT = [ChatMessage("system", "be brief"), ChatMessage("user", "hello there")]


class QueuedLLM:
    """A fake LLM whose fragments the test feeds one by one; it records whether its stream was closed."""

    def __init__(self) -> None:
        self.fragments: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        self.calls: list[list[ChatMessage]] = []
        self.closed = asyncio.Event()

    async def stream_reply(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[str]:
        self.calls.append(list(messages))
        try:
            while (item := await self.fragments.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed.set()


def running(prefetch: ReplyPrefetch) -> asyncio.Task[None]:
    """What the turn does with its early reply: run it (the test holds the task, as the turn would)."""
    return asyncio.create_task(prefetch.run())


async def test_nothing_runs_until_the_owner_runs_it() -> None:
    llm = QueuedLLM()
    prefetch = ReplyPrefetch(llm, CONTEXT)
    await asyncio.sleep(0.01)
    assert llm.calls == []
    task = running(prefetch)
    await asyncio.sleep(0)
    assert len(llm.calls) == 1
    task.cancel()
    await asyncio.wait_for(llm.closed.wait(), 1)


async def test_the_buffer_is_replayed_then_followed_live() -> None:
    llm = QueuedLLM()
    prefetch = ReplyPrefetch(llm, CONTEXT)
    task = running(prefetch)
    for part in ("Hi", " there"):
        llm.fragments.put_nowait(part)
    await asyncio.sleep(0.01)  # the model writes while the turn has not begun
    stream = prefetch.claim(list(CONTEXT))
    assert stream is not None
    got = [await anext(stream), await anext(stream)]
    llm.fragments.put_nowait("!")
    got.append(await anext(stream))
    llm.fragments.put_nowait(None)
    assert [part async for part in stream] == []
    assert got == ["Hi", " there", "!"] and len(llm.calls) == 1
    assert prefetch.claim(list(CONTEXT)) is None, "a reply is handed over once"
    await task


async def test_another_context_drops_the_guess() -> None:
    llm = QueuedLLM()
    prefetch = ReplyPrefetch(llm, CONTEXT)
    task = running(prefetch)
    await asyncio.sleep(0)
    changed = [*CONTEXT[:1], ChatMessage("user", "something else")]
    assert prefetch.claim(changed) is None and prefetch.dropped
    task.cancel()  # what the turn does with a dropped guess
    await asyncio.wait_for(llm.closed.wait(), 1)
    assert prefetch.claim(list(CONTEXT)) is None, "a dropped guess is never handed over"


async def test_a_reply_started_unspoken_is_not_taken_for_a_spoken_turn() -> None:
    llm = QueuedLLM()
    prefetch = ReplyPrefetch(llm, CONTEXT)  # no speaker: the client's replies were not spoken then
    assert prefetch.claim(list(CONTEXT), spoken=True) is None and prefetch.dropped


async def test_a_claimed_prefetch_is_not_dropped_and_stops_with_its_turn() -> None:
    llm = QueuedLLM()
    prefetch = ReplyPrefetch(llm, CONTEXT)
    task = running(prefetch)
    stream = prefetch.claim(list(CONTEXT))
    assert stream is not None
    assert prefetch.claim([*CONTEXT[:1], ChatMessage("user", "other")]) is None and not prefetch.dropped
    llm.fragments.put_nowait("still here")
    assert await anext(stream) == "still here"
    assert not llm.closed.is_set()
    task.cancel()  # barge-in: the turn cancels what it runs
    await asyncio.wait_for(llm.closed.wait(), 1)


async def test_a_failure_reaches_the_turn_that_claims_it() -> None:
    llm = QueuedLLM()
    prefetch = ReplyPrefetch(llm, CONTEXT)
    task = running(prefetch)
    llm.fragments.put_nowait("Par")
    llm.fragments.put_nowait(LLMError("the model went away", code="llm-unavailable"))
    await asyncio.sleep(0.01)
    stream = prefetch.claim(list(CONTEXT))
    assert stream is not None
    assert await anext(stream) == "Par"
    with pytest.raises(LLMError) as err:
        await anext(stream)
    assert err.value.code == "llm-unavailable"
    await task  # the run itself ends quietly: the failure is the claiming turn's
