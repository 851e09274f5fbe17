"""Text-to-speech engines and the one place that picks among them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core.config import TTSSettings
from core.errors import ConfigError
from core.interfaces import TTSEngine
from core.tts.encode import DEFAULT_FORMAT

TTSFactory = Callable[[TTSSettings, str], Awaitable[TTSEngine]]


async def _piper(settings: TTSSettings, fmt: str) -> TTSEngine:
    from core.tts.piper import PiperTTS

    engine = PiperTTS(voice=settings.voice, max_concurrent=settings.max_concurrent, fmt=fmt)
    await engine.start()
    return engine


async def _openai(settings: TTSSettings, fmt: str) -> TTSEngine:
    from core.tts.openai_tts import OpenAITTS

    return OpenAITTS(
        model=settings.model or "tts-1",
        voice=settings.voice or "alloy",
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        base_url=settings.base_url or None,
        timeout_s=settings.timeout_s,
        max_concurrent=settings.max_concurrent,
        fmt=fmt,
    )


FACTORIES: dict[str, TTSFactory] = {"piper": _piper, "openai": _openai}


async def build_tts(settings: TTSSettings, *, fmt: str | None = None) -> TTSEngine | None:
    """Build and start the configured speech engine, speaking ``fmt`` (default ``tts.format``); None for ``none``."""
    if settings.engine == "none":
        return None
    factory = FACTORIES.get(settings.engine)
    if factory is None:
        raise ConfigError(f"tts.engine: unknown engine {settings.engine!r}")
    return await factory(settings, fmt or settings.format or DEFAULT_FORMAT)
