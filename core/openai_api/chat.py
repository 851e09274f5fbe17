"""Chat completions as OpenAI's API has them: one reply of the configured model to the messages a caller sends
(nothing stored, no server system prompt added), cut at ``max_tokens`` or a stop sequence, with its usage, sent
whole or as SSE ``chat.completion.chunk`` events.

Tokens are counted with the model's own tokenizer when it has one (the local model), the prompt exactly as its chat
template renders it; otherwise (a remote model, whose tokenizer we do not have) estimated as one token per 4 bytes of
UTF-8, OpenAI's rule of thumb of four characters of English a token, which also counts a Cyrillic letter as half a
token, as its tokenizers roughly do; then a message adds 3 tokens for its role and the template's markers, and the
reply's priming 3 more, as OpenAI counts.

A reply is as long as the caller allows (``max_tokens``) or, without a limit, as the model's context allows, as
OpenAI's API has it: the engine's own ``llm.max_tokens``, which keeps spoken replies short, does not apply here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Literal

from core.errors import BotError, LLMError
from core.interfaces import LLMEngine, TokenCounter
from core.models import ChatMessage
from core.openai_api.errors import bot_error_body

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]
# An error event's status is never sent (the stream's 200 went first); it only picks OpenAI's error type.
MID_STREAM_STATUS = 502
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
# The engine is let run this many tokens past max_tokens, so that the cut (and finish_reason "length") is always
# ours, measured with the same tokenizer as usage; text re-tokenized can count a token or two fewer than generated.
LENGTH_SLACK_TOKENS = 8
# A reply that ends within this many tokens of the context's end was stopped by it ("length"), for the same reason.
CONTEXT_SLACK_TOKENS = 4


class Tokens:
    """Counts tokens with ``llm``'s tokenizer, or estimates them (see the module's doc)."""

    def __init__(self, llm: LLMEngine) -> None:
        self._llm = llm if isinstance(llm, TokenCounter) else None

    def count(self, text: str) -> int:
        counted = self._llm.count_tokens(text) if self._llm is not None and text else None
        return counted if counted is not None else math.ceil(len(text.encode("utf-8")) / 4)

    @property
    def context(self) -> int | None:
        """The model's context window (None: unknown)."""
        return self._llm.context_tokens if self._llm is not None else None

    def prompt(self, messages: Sequence[ChatMessage]) -> int:
        exact = self._llm.count_prompt(messages) if self._llm is not None else None
        if exact is not None:
            return exact
        return sum(self.count(m.content) + TOKENS_PER_MESSAGE for m in messages) + REPLY_PRIMING_TOKENS

    def head(self, text: str, tokens: int) -> str:
        """The longest start of ``text`` that is at most ``tokens`` tokens."""
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if self.count(text[:middle]) <= tokens:
                low = middle
            else:
                high = middle - 1
        return text[:low]


class Completion:
    """The model's reply to ``messages`` as text deltas; it ends at ``max_tokens`` (``finish_reason`` "length") or
    before a ``stop`` sequence. Each wait for the model (its first token, then each next one) is bounded by
    ``timeout_s`` (``llm-timeout``) if given; the server's own engine (``CheckedLLM``) bounds its waits itself,
    without counting the wait for a free slot of a busy local model, so the routes pass None."""

    def __init__(
        self,
        llm: LLMEngine,
        messages: Sequence[ChatMessage],
        *,
        timeout_s: float | None,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
    ) -> None:
        self._llm = llm
        self.messages = list(messages)
        self._timeout_s = timeout_s
        self._max_tokens = max_tokens
        self._stop = [s for s in stop if s]
        self.tokens = Tokens(llm)
        self.text = ""
        self.finish_reason: FinishReason = "stop"

    @functools.cached_property
    def prompt_tokens(self) -> int:
        """The messages' length in tokens, counted once: rendering and tokenizing a long prompt is not free, and it
        is needed for the context check, the finish reason and the usage."""
        return self.tokens.prompt(self.messages)

    def check_fits(self) -> None:
        """LLMError ``context-too-long`` now, rather than after a wait for a busy model, if the messages leave the
        model no room to answer (known only for a model whose tokenizer and context we have)."""
        context = self.tokens.context
        if context is not None and (prompt := self.prompt_tokens) >= context:
            raise LLMError(
                f"This model's maximum context length is {context} tokens; the messages are {prompt} tokens."
                " Shorten them.",
                code="context-too-long",
            )

    def usage(self) -> dict[str, int]:
        prompt, completion = self.prompt_tokens, self.tokens.count(self.text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def deltas(self) -> AsyncGenerator[str, None]:
        """The reply, fragment by fragment, as it may be sent; ``text`` and ``finish_reason`` are final after."""
        length = self._max_tokens + LENGTH_SLACK_TOKENS if self._max_tokens else 0
        stream = self._llm.stream_reply(self.messages, max_tokens=length)
        held = ""  # text that might be the start of a stop sequence
        hold = max((len(s) for s in self._stop), default=1) - 1
        try:
            while True:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        fragment = await anext(stream, None)
                except TimeoutError as err:
                    raise LLMError(
                        f"the language model did not answer within {self._timeout_s or 0:g} s", code="llm-timeout"
                    ) from err
                if fragment is None:
                    break
                held += fragment
                cut = min((i for s in self._stop if (i := held.find(s)) >= 0), default=-1)
                # Everything but the last `hold` characters is safe to send; while less than that is held, nothing is
                # (a negative index here once sent the start of a stop sequence split over short fragments).
                safe = 0 if cut >= 0 else max(0, len(held) - hold)
                ready, held = (held[:cut], "") if cut >= 0 else (held[:safe], held[safe:])
                if (delta := self._take(ready)) is not None:
                    yield delta
                if cut >= 0 or self.finish_reason == "length":
                    return
            if held and (delta := self._take(held)) is not None:
                yield delta
            if self.finish_reason == "stop" and self._filled_context():
                self.finish_reason = "length"
        finally:
            # Closing the model's generator at once stops it (and its HTTP stream) now, not when it is collected.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    def _filled_context(self) -> bool:
        """Whether the reply ended where the model's context did (as far as we can count it)."""
        context = self.tokens.context
        used = self.prompt_tokens + self.tokens.count(self.text)
        return context is not None and used >= context - CONTEXT_SLACK_TOKENS

    def _take(self, text: str) -> str | None:
        """Add ``text`` to the reply, cut at ``max_tokens``; what of it is sent (None: nothing)."""
        if not text:
            return None
        if self._max_tokens is not None and self.tokens.count(self.text + text) > self._max_tokens:
            whole = self.tokens.head(self.text + text, self._max_tokens)
            text = whole[len(self.text) :]
            self.finish_reason = "length"
        self.text += text
        return text or None


class CompletionShape:
    """What one completion is sent as: a whole ``chat.completion`` or ``chat.completion.chunk`` events."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def whole(self, completion: Completion) -> dict[str, object]:
        message = {"role": "assistant", "content": completion.text, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": completion.finish_reason}
        return {**self._head("chat.completion"), "choices": [choice], "usage": completion.usage()}

    def chunk(self, delta: dict[str, object], finish_reason: FinishReason | None = None) -> dict[str, object]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def usage_chunk(self, completion: Completion) -> dict[str, object]:
        return {**self._head("chat.completion.chunk"), "choices": [], "usage": completion.usage()}

    def _head(self, kind: str) -> dict[str, object]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "system_fingerprint": None}


def sse(data: dict[str, object] | str) -> bytes:
    """One server-sent event's ``data:`` line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def events(
    completion: Completion,
    deltas: AsyncGenerator[str, None],
    first: str | None,
    shape: CompletionShape,
    *,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The SSE stream of a completion whose first delta (``first``; None: an empty reply) was already taken from
    ``deltas``. A failure after the first bytes is sent as an ``error`` event (OpenAI's SDKs raise it), and logged;
    the stream then ends without ``[DONE]``."""
    usage = {"usage": None} if include_usage else {}
    try:
        yield sse({**shape.chunk({"role": "assistant", "content": ""}), **usage})
        if first is not None:
            yield sse({**shape.chunk({"content": first}), **usage})
        async for delta in deltas:
            yield sse({**shape.chunk({"content": delta}), **usage})
        yield sse({**shape.chunk({}, completion.finish_reason), **usage})
        if include_usage:
            yield sse(shape.usage_chunk(completion))
        yield sse("[DONE]")
    except BotError as err:
        logger.warning("chat completion %s failed while streaming: %s (%s)", shape.id, err.code, err.__cause__ or err)
        yield sse(bot_error_body(err, MID_STREAM_STATUS))
    except Exception as err:
        logger.exception("chat completion %s failed while streaming", shape.id)
        failure = BotError("the server failed to finish this reply", code="internal-error")
        failure.__cause__ = err
        yield sse(bot_error_body(failure, MID_STREAM_STATUS))
    finally:
        await deltas.aclose()
