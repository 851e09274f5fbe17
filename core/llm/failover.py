"""A reply streamed through a chain of language models (``core.fallback``): deadlines, failover, who wrote it.

The first words must come within the engine's share of ``llm.timeout_s`` (retries included: the deadline is
around the whole request), and each later fragment within the engine's own ``timeout_s`` of the one before, so a
stream that stalls midway ends with ``llm-timeout`` rather than holding the turn. An engine that fails before its
first words hands over to the next of the chain; once words are out, the reply is that engine's, and a failure
after them is the turn's error (the text already shown is kept, marked failed, by the turn).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterable, Sequence

from core.errors import LLMError
from core.fallback import Chain
from core.interfaces import LLMEngine
from core.models import ChatMessage

logger = logging.getLogger(__name__)


class Served(str):
    """A reply's first fragment, naming the engine that wrote the reply in ``engine``. It is a ``str``, so whatever
    passes fragments on (the early-reply buffer, the speaker, the turn) carries the name without knowing of it."""

    engine: str

    def __new__(cls, text: str, engine: str) -> Served:
        fragment = super().__new__(cls, text)
        fragment.engine = engine
        return fragment


def served_by(fragments: Iterable[str]) -> str | None:
    """The engine that wrote a reply, from its fragments (as ``CheckedLLM.stream_reply`` yields them); None if
    there were none."""
    return next((fragment.engine for fragment in fragments if isinstance(fragment, Served)), None)


def _limit(seconds: float) -> float | None:
    return None if math.isinf(seconds) else seconds


async def stream_chain(
    chain: Chain[LLMEngine], messages: Sequence[ChatMessage], served: list[str], *, max_tokens: int | None = None
) -> AsyncIterator[str]:
    """The reply's fragments from the first engine of ``chain`` that answers; ``served`` gets its name as soon as
    it does. LLMError ``llm-timeout`` when the deadline passes, else the last engine's error. ``max_tokens`` as
    ``LLMEngine.stream_reply`` takes it."""
    failure: LLMError | None = None
    for member, allowed_s in chain.attempts():
        stream = member.engine.stream_reply(messages, max_tokens=max_tokens)
        first: str | None = None
        try:
            try:
                async with asyncio.timeout(_limit(allowed_s)):
                    first = await anext(stream)
            except StopAsyncIteration:
                pass  # an empty reply is still a reply
            except TimeoutError as err:
                raise LLMError(
                    f"the language model did not answer within {allowed_s:.1f} s", code="llm-timeout"
                ) from err
        except LLMError as err:
            await _close(stream)
            member.failed(err.code)
            logger.warning("llm %s failed before its first words: %s", member.name, err.code)
            failure = err
            continue
        except BaseException:
            await _close(stream)
            raise
        chain.used(member)
        served.append(member.name)
        try:
            if first is not None:
                yield first
                async for fragment in _paced(stream, member.timeout_s):
                    yield fragment
        except LLMError as err:
            member.failed(err.code)
            raise
        finally:
            await _close(stream)
        return
    raise failure or LLMError("the language model did not answer in time", code="llm-timeout")


async def _paced(stream: AsyncIterator[str], idle_s: float) -> AsyncIterator[str]:
    """``stream``'s fragments, each within ``idle_s`` of the one before (else ``llm-timeout``)."""
    while True:
        try:
            async with asyncio.timeout(_limit(idle_s)):
                fragment = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError as err:
            raise LLMError(f"the language model stopped for {idle_s:.1f} s mid-reply", code="llm-timeout") from err
        yield fragment


async def _close(stream: AsyncIterator[str]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
