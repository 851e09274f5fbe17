"""Language-model engines and the one place that picks among them."""

from __future__ import annotations

from core.config import LLMSettings
from core.interfaces import LLMEngine
from core.llm.checked import CheckedLLM
from core.llm.local_llama import LlamaCppLLM
from core.llm.openai_chat import OpenAIChatLLM


def resolve_engine(settings: LLMSettings) -> str:
    """``auto`` means ``openai`` when a key or base URL is configured, otherwise ``local``."""
    if settings.engine != "auto":
        return settings.engine
    return "openai" if settings.api_key or settings.base_url else "local"


async def build_llm(settings: LLMSettings) -> CheckedLLM:
    """Build and start the configured language model, with ``llm.max_concurrent`` and valid text enforced."""
    return CheckedLLM(await _build_engine(settings), max_concurrent=settings.max_concurrent)


async def _build_engine(settings: LLMSettings) -> LLMEngine:
    name = resolve_engine(settings)
    if name == "openai":
        return OpenAIChatLLM(
            model=settings.model_name,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            base_url=settings.base_url or None,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
        )
    local = LlamaCppLLM(
        model_path=settings.model_path,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
    )
    await local.start()
    return local
