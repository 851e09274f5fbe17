"""OpenAIChatLLM: any OpenAI-compatible chat completions endpoint (OpenAI, Gemini, Ollama, vLLM, LM Studio…)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream, DefaultAioHttpClient
from openai.types.chat import ChatCompletion

from core.errors import LLMError
from core.models import ChatMessage, EngineInfo
from core.urls import public_url

logger = logging.getLogger(__name__)


def openai_error(err: openai.OpenAIError, stage: str) -> tuple[str, str]:
    """Map an openai exception to a stable code suffix and a message for people."""
    if isinstance(err, openai.APITimeoutError) and not _refused(err):
        return "timeout", f"the {stage} service did not answer in time"
    if isinstance(err, openai.APIConnectionError):
        return "unavailable", f"the {stage} service cannot be reached"
    if isinstance(err, openai.RateLimitError):
        return "rate-limited", f"the {stage} service is rate-limiting us; try again shortly"
    if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return "auth", f"the {stage} service refused our credentials"
    if isinstance(err, openai.InternalServerError):
        return "unavailable", f"the {stage} service failed ({err.status_code})"
    return "failed", f"the {stage} request failed"


def _context_exceeded(err: openai.BadRequestError) -> bool:
    """Whether a 400 says the prompt is over the model's context: OpenAI's and vLLM's ``context_length_exceeded``,
    or the words llama.cpp's server, vLLM and Ollama put in the message."""
    text = f"{err.code or ''} {err.message}".lower()
    return "context_length_exceeded" in text or "context length" in text or "context window" in text


def _refused(err: BaseException) -> bool:
    """Whether the connection failed outright: openai's aiohttp adapter reports that as a connect timeout."""
    cause = err.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(cause, aiohttp.ServerTimeoutError):
            return True
        cause = cause.__cause__
    return False


def openai_client(*, api_key: str | None, base_url: str | None, timeout_s: float, max_retries: int) -> AsyncOpenAI:
    """The one way our engines build an OpenAI-compatible client."""
    # Servers such as Ollama, llama.cpp or speaches need no key, but the client insists on one (and would
    # otherwise read the environment itself). The aiohttp transport (openai's own `aiohttp` extra) measured twice
    # httpx's call rate against a loopback server, and half its latency per call.
    return AsyncOpenAI(
        api_key=api_key or "no-key",
        base_url=base_url or None,
        timeout=timeout_s,
        max_retries=max_retries,
        http_client=DefaultAioHttpClient(timeout=timeout_s),
    )


class OpenAIChatLLM:
    """Streams chat completions through one long-lived ``AsyncOpenAI`` client."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None,
        temperature: float,
        max_tokens: int,
        timeout_s: float,
        max_retries: int,
    ) -> None:
        self._model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)

    def info(self) -> EngineInfo:
        return EngineInfo("openai", self._model, True, {"base_url": public_url(str(self._client.base_url))})

    async def stream_reply(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[str]:
        length = self._max_tokens if max_tokens is None else max_tokens
        body: dict[str, object] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": self._temperature,
            "stream": True,
        }
        if length:  # 0: as long as the server's model allows, which is what it does without the field
            body["max_tokens"] = length
        try:
            # `client.post` is the client's own request path (same retries, timeouts and errors) without
            # `chat.completions.create`'s typed-dict transform and deep copy of the body, which measured over a
            # third of a turn's CPU; the body goes as JSON bytes. Chunks stay plain dicts: building a typed model
            # per token cost another 7 % of the server's CPU under load.
            stream = await self._client.post(
                "/chat/completions",
                content=json.dumps(body, ensure_ascii=False).encode(),
                options={"headers": {"Content-Type": "application/json"}},
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=AsyncStream[object],
            )
            readable = False
            async with stream:
                async for chunk in stream:
                    readable = readable or _is_chunk(chunk)
                    content = _delta_content(chunk)
                    if content:
                        yield content
            if not readable:
                # A 200 that is no chat completion stream (an HTML page, a proxy's JSON): nothing to show.
                raise LLMError("the language model sent no reply we can read", code="llm-failed")
        except openai.OpenAIError as err:
            if isinstance(err, openai.BadRequestError) and _context_exceeded(err):
                raise LLMError(
                    "the conversation is longer than the language model's context window", code="context-too-long"
                ) from err
            suffix, message = openai_error(err, "language model")
            raise LLMError(message, code=f"llm-{suffix}") from err
        except ValueError as err:  # a stream event that is no JSON
            raise LLMError("the language model sent a reply we cannot read", code="llm-failed") from err
        except (httpx2.HTTPError, aiohttp.ClientError) as err:  # the connection cut mid-reply
            raise LLMError("the language model's connection broke mid-reply", code="llm-unavailable") from err

    async def aclose(self) -> None:
        await self._client.close()


def _is_chunk(chunk: object) -> bool:
    """Whether a parsed stream event is a chat completion chunk (it has ``choices``, empty or not)."""
    return isinstance(chunk, dict) and isinstance(chunk.get("choices"), list)


def _delta_content(chunk: object) -> str | None:
    """The text of a streamed chat completion chunk (a parsed JSON object), if it carries any."""
    if not isinstance(chunk, dict):
        return None
    choices = chunk.get("choices")
    if not choices or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else None
