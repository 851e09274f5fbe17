"""Text-to-speech engines and the one place that picks among them.

``build_tts`` returns a ``VoiceRouter``: for ``tts.engine`` ``piper``, each language of ``tts.voices`` with its
offline voice (all started at once; one that fails to start leaves its language without a voice, with a warning,
and the server runs on); for ``openai``, one multilingual speech service for every language. With
``tts.fallbacks``, a ``FailoverVoices``: each language spoken by the voices of every configured engine in turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from core.config import TTSSettings, fallback_settings
from core.errors import ConfigError, TTSError
from core.interfaces import TTSEngine
from core.lifecycle import started
from core.tts.encode import DEFAULT_FORMAT
from core.tts.voices import VoiceRouter, language_name

logger = logging.getLogger(__name__)

# An offline voice: (settings, the voice part of ``engine:voice``, the wire format) -> a started engine.
VoiceFactory = Callable[[TTSSettings, str, str], Coroutine[Any, Any, TTSEngine]]
# What an engine speaks with: each language's own voice (None: it failed to start), a multilingual engine for
# the others, and the engine's name.
Voices = tuple[dict[str, TTSEngine | None], TTSEngine | None, str]
EngineFactory = Callable[[TTSSettings, str], Awaitable[Voices]]




async def _piper(settings: TTSSettings, voice: str, fmt: str) -> TTSEngine:
    from core.tts.piper import PiperTTS

    engine = PiperTTS(voice=voice or settings.voice, max_concurrent=settings.max_concurrent, fmt=fmt)
    await started(engine)
    return engine


async def _festival(settings: TTSSettings, voice: str, fmt: str) -> TTSEngine:
    from core.tts.festival import DEFAULT_VOICE, FestivalTTS

    engine = FestivalTTS(
        voice=voice or DEFAULT_VOICE, max_concurrent=settings.max_concurrent, fmt=fmt, timeout_s=settings.timeout_s
    )
    await started(engine)
    return engine


VOICES: dict[str, VoiceFactory] = {"piper": _piper, "festival": _festival}


def parse_voice(spec: str) -> tuple[str, str]:
    """``("piper", "/voices/de.onnx")`` for ``piper:/voices/de.onnx``; the voice is empty for a bare engine."""
    engine, _, voice = spec.partition(":")
    return engine.strip().lower(), voice.strip()


async def _offline_voices(settings: TTSSettings, fmt: str) -> Voices:
    specs = {language: parse_voice(spec) for language, spec in settings.voices.items()}
    for language, (engine, _) in specs.items():
        if engine not in VOICES:
            raise ConfigError(f"tts.voices.{language}: unknown engine {engine!r}; choose one of {sorted(VOICES)}")
    results = await _start_voices(settings, list(dict.fromkeys(specs.values())), fmt)  # a shared voice starts once
    running = [result for result in results.values() if not isinstance(result, BaseException)]
    for result in results.values():
        # A configuration mistake stops start-up; a voice that cannot start (not installed) does not.
        if isinstance(result, ConfigError) or (isinstance(result, BaseException) and not isinstance(result, Exception)):
            await _close(running)
            raise result
    engines: dict[tuple[str, str], TTSEngine | None] = {}
    for spec, result in results.items():
        if not isinstance(result, BaseException):
            engines[spec] = result
            continue
        engines[spec] = None
        names = ", ".join(f"{language_name(language)} ({language})" for language, s in specs.items() if s == spec)
        if isinstance(result, TTSError):
            logger.warning("no voice for %s: %s; replies in it are shown as text", names, result.message)
        else:
            logger.warning("no voice for %s: it failed to start", names, exc_info=result)
    voices = {language: engines[spec] for language, spec in specs.items()}
    return voices, None, "piper"


async def _start_voices(
    settings: TTSSettings, specs: list[tuple[str, str]], fmt: str
) -> dict[tuple[str, str], TTSEngine | BaseException]:
    """Start every voice at once: each one's engine, or what it failed with."""
    tasks: dict[tuple[str, str], asyncio.Task[TTSEngine]] = {
        spec: asyncio.create_task(VOICES[spec[0]](settings, spec[1], fmt), name=f"tts-start-{spec[0]}")
        for spec in specs
    }
    try:
        await asyncio.wait(tasks.values())
    except BaseException:  # cancelled while starting: stop the others, close what started
        for task in tasks.values():
            task.cancel()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        await _close([result for result in results if not isinstance(result, BaseException)])
        raise
    return {spec: task.exception() or task.result() for spec, task in tasks.items()}


async def _close(engines: list[TTSEngine]) -> None:
    for engine in engines:
        await engine.aclose()


async def _openai(settings: TTSSettings, fmt: str) -> Voices:
    from core.tts.openai_tts import OpenAITTS

    engine = OpenAITTS(
        model=settings.model or "tts-1",
        voice=settings.voice or "alloy",
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        base_url=settings.base_url or None,
        timeout_s=settings.timeout_s,
        max_concurrent=settings.max_concurrent,
        fmt=fmt,
    )
    return {}, engine, "openai"


ENGINES: dict[str, EngineFactory] = {"piper": _offline_voices, "openai": _openai}


async def build_tts(settings: TTSSettings, *, fmt: str | None = None) -> VoiceRouter | None:
    """Build and start the configured voices, and those of ``tts.fallbacks`` behind them, speaking ``fmt``
    (default ``tts.format``); None for ``none``."""
    if settings.engine == "none":
        return None
    stages = [settings, *fallback_settings(settings)]
    built: list[Voices] = []
    try:
        for stage in stages:
            factory = ENGINES.get(stage.engine)
            if factory is None:
                raise ConfigError(f"tts.engine: unknown engine {stage.engine!r}")
            built.append(await factory(stage, fmt or settings.format or DEFAULT_FORMAT))
    except BaseException:
        for voices, multilingual, name in built:
            await VoiceRouter(voices, multilingual=multilingual, name=name).aclose()
        raise
    default = next(iter(settings.voices))
    if len(built) == 1:
        voices, multilingual, name = built[0]
        return VoiceRouter(voices, default_language=default, multilingual=multilingual, name=name)
    from core.tts.failover import FailoverVoices

    return FailoverVoices(
        built, timeout_s=[stage.timeout_s for stage in stages], down_for_s=settings.down_for_s, default_language=default
    )
