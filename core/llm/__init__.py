"""Language-model engines and the one place that picks among them."""

from __future__ import annotations

import math

from core.config import LLMSettings, fallback_settings
from core.cpu import CpuGate
from core.fallback import Breaker, Chain, Member, member_names
from core.interfaces import LLMEngine
from core.llm.checked import CheckedLLM
from core.llm.local_llama import LlamaCppLLM
from core.llm.openai_chat import OpenAIChatLLM
from core.llm.presets import preset

# The OpenAI engine's sampling when llm.temperature / llm.max_tokens are left empty.
OPENAI_TEMPERATURE = 0.7
OPENAI_MAX_TOKENS = 256


def resolve_engine(settings: LLMSettings) -> str:
    """``auto`` means ``openai`` when a key or base URL is configured, otherwise ``local``."""
    if settings.engine != "auto":
        return settings.engine
    return "openai" if settings.api_key or settings.base_url else "local"


async def build_llm(settings: LLMSettings, *, cpu: CpuGate | None = None) -> CheckedLLM:
    """Build and start the configured language model and its ``llm.fallbacks``, with ``llm.max_concurrent``,
    ``llm.timeout_s`` (first words, retries and fallbacks included) and valid text enforced; a local model pauses
    at ``cpu`` between tokens."""
    stages = [settings, *fallback_settings(settings)]
    # Before a fallback, the next engine is the retry: a refused connection hands over at once, not after backoff.
    stages = [stage.model_copy(update={"max_retries": 0}) for stage in stages[:-1]] + stages[-1:]
    engines: list[LLMEngine] = []
    try:
        for stage in stages:
            engines.append(await _build_engine(stage, cpu))
    except BaseException:
        for engine in engines:
            await engine.aclose()
        raise
    names = member_names(resolve_engine(stage) for stage in stages)
    members = [
        Member(name, engine, _timeout_s(stage), Breaker(settings.down_for_s))
        for name, engine, stage in zip(names, engines, stages, strict=True)
    ]
    chain = Chain("llm", members, timeout_s=_timeout_s(settings))
    return CheckedLLM(engines[0], max_concurrent=settings.max_concurrent, chain=chain)


def _timeout_s(settings: LLMSettings) -> float:
    """How long an engine may take: ``llm.timeout_s`` for a remote one. The embedded model has no network to hang
    on, and a busy CPU only makes it slower, so alone it is never cut short; after a remote engine it has what is
    left of the remote's timeout."""
    return math.inf if resolve_engine(settings) == "local" else settings.timeout_s


def reply_tokens(settings: LLMSettings) -> int:
    """The longest reply the configured engine writes for a turn, in tokens: ``llm.max_tokens``, else its default."""
    if settings.max_tokens:
        return settings.max_tokens
    return preset(settings.model).max_tokens if resolve_engine(settings) == "local" else OPENAI_MAX_TOKENS


def local_engine(settings: LLMSettings, *, guard: bool = True, cpu: CpuGate | None = None) -> LlamaCppLLM:
    """The local engine ``settings`` describe, not yet started: the preset ``llm.model``, as overridden."""
    chosen = preset(settings.model)
    custom = bool(settings.model_path)
    prompt_format = settings.prompt_format
    if prompt_format == "auto" and not custom:
        prompt_format = chosen.prompt
    return LlamaCppLLM(
        model_path=settings.model_path or chosen.locate(),
        name="" if custom else chosen.name,
        prompt=prompt_format,
        temperature=chosen.temperature if settings.temperature is None else settings.temperature,
        max_tokens=settings.max_tokens or chosen.max_tokens,
        repeat_penalty=settings.repeat_penalty or chosen.repeat_penalty,
        stop=None if custom else chosen.stop,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        guard=guard,
        cpu=cpu,
    )


async def _build_engine(settings: LLMSettings, cpu: CpuGate | None = None) -> LLMEngine:
    name = resolve_engine(settings)
    if name == "openai":
        return OpenAIChatLLM(
            model=settings.model_name,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            base_url=settings.base_url or None,
            temperature=OPENAI_TEMPERATURE if settings.temperature is None else settings.temperature,
            max_tokens=settings.max_tokens or OPENAI_MAX_TOKENS,
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
        )
    local = local_engine(settings, cpu=cpu)
    await local.start()
    return local
