"""The LLM engines: OpenAI-compatible against the loopback fake, and the real bundled local model."""

from __future__ import annotations

import openai
import pytest

from core.config import LLMSettings
from core.errors import LLMError
from core.llm import build_llm, resolve_engine
from core.llm.local_llama import LlamaCppLLM, bundled_gguf
from core.llm.openai_chat import OpenAIChatLLM
from core.models import ChatMessage
from tests.fakes.openai_server import FakeOpenAI


def engine(fake: FakeOpenAI, **kw) -> OpenAIChatLLM:
    options = dict(
        model="fake-model",
        api_key="sk-test",
        base_url=f"{fake.url}/v1",
        temperature=0.2,
        max_tokens=50,
        timeout_s=2,
        max_retries=0,
    )
    options.update(kw)
    return OpenAIChatLLM(**options)


async def collect(llm, text: str) -> list[str]:
    return [part async for part in llm.stream_reply([ChatMessage("system", "be brief"), ChatMessage("user", text)])]


async def test_streams_fragments_and_sends_the_request(fake_openai: FakeOpenAI) -> None:
    llm = engine(fake_openai)
    parts = await collect(llm, "ping pong")
    assert len(parts) > 1 and "".join(parts) == "You said: ping pong. (context 2 messages)"
    request = fake_openai.requests[-1]
    assert request["stream"] is True and request["model"] == "fake-model"
    assert request["max_tokens"] == 50 and request["temperature"] == 0.2
    assert fake_openai.auth_headers[-1] == "Bearer sk-test"
    await llm.aclose()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[status:429]", "llm-rate-limited"),
        ("[status:503]", "llm-unavailable"),
        ("[status:403]", "llm-auth"),
        ("[status:422]", "llm-failed"),
        ("[hang]", "llm-timeout"),
    ],
)
async def test_failures_map_to_stable_codes(fake_openai: FakeOpenAI, text: str, code: str) -> None:
    llm = engine(fake_openai, timeout_s=0.5)
    with pytest.raises(LLMError) as err:
        await collect(llm, text)
    assert err.value.code == code
    assert isinstance(err.value.__cause__, openai.OpenAIError)
    await llm.aclose()


async def test_stall_mid_stream_is_a_timeout(fake_openai: FakeOpenAI) -> None:
    llm = engine(fake_openai, timeout_s=0.3)
    with pytest.raises(LLMError) as err:
        await collect(llm, "one two three four five six seven [slow:1]")
    assert err.value.code == "llm-timeout"
    await llm.aclose()


async def test_fake_answers_without_streaming_too(fake_openai: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(api_key="x", base_url=f"{fake_openai.url}/v1", max_retries=0)
    reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "You said: hi. (context 1 messages)"
    await client.close()


def test_auto_picks_openai_only_when_configured() -> None:
    assert resolve_engine(LLMSettings()) == "local"
    assert resolve_engine(LLMSettings(api_key="sk-x")) == "openai"
    assert resolve_engine(LLMSettings(base_url="http://127.0.0.1:11434/v1")) == "openai"
    assert resolve_engine(LLMSettings(engine="local", api_key="sk-x")) == "local"


@pytest.mark.slow
async def test_local_model_answers_offline() -> None:
    assert bundled_gguf().endswith(".gguf")
    llm = await build_llm(LLMSettings(engine="local", max_tokens=24, temperature=0))
    assert isinstance(llm, LlamaCppLLM) and llm.info().ready
    parts = await collect(llm, "What is the capital of France?")
    assert parts and "".join(parts).strip()
    # An interrupted generation frees the model for the next one.
    stream = llm.stream_reply([ChatMessage("user", "Count from one to fifty.")])
    await anext(stream)
    await stream.aclose()
    assert "".join(await collect(llm, "Say hello.")).strip()
    await llm.aclose()


async def test_missing_local_model_is_unavailable(tmp_path) -> None:
    with pytest.raises(LLMError) as err:
        await build_llm(LLMSettings(engine="local", model_path=str(tmp_path / "none.gguf")))
    assert err.value.code == "llm-unavailable"
