"""Speech-to-text engines and the one place that picks among them.

Each factory imports its engine lazily, so a server that uses one engine never imports the others' libraries.
Engines that load a model have ``async start()``; the factory constructs and starts, and closes what it built if
starting fails.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Awaitable, Callable
from types import ModuleType

from core.config import STTSettings, fallback_settings
from core.errors import ConfigError
from core.fallback import Breaker, Chain, Member, member_names
from core.interfaces import STTEngine
from core.lifecycle import started


async def _whisper(settings: STTSettings) -> STTEngine:
    from core.stt.whisper import WhisperSTT

    engine = WhisperSTT(
        model=settings.model,
        language=settings.language,
        languages=settings.languages,
        max_concurrent=settings.max_concurrent,
        window_floor_s=settings.window_s,
    )
    await started(engine)
    return engine


async def _sphinx(settings: STTSettings) -> STTEngine:
    from core.stt.sphinx import SphinxSTT

    # PocketSphinx cannot detect a language; its bundled model is English.
    language = settings.language or "en"
    engine = SphinxSTT(model=settings.model, language=language, max_concurrent=settings.max_concurrent)
    await started(engine)
    return engine


async def _google(settings: STTSettings) -> STTEngine:
    from core.stt.google import GoogleSTT

    return GoogleSTT(
        language=settings.language or "en-US",  # Google's own default: it does not detect the language
        key=settings.api_key.get_secret_value() if settings.api_key else None,
        # The legacy endpoint answers a short clip in a second or two; a dead network must not hold a turn for
        # the 30 s an LLM-class timeout allows.
        timeout_s=min(settings.timeout_s, 10.0),
        max_concurrent=settings.max_concurrent,
    )


async def _openai(settings: STTSettings) -> STTEngine:
    from core.stt.openai_stt import OpenAISTT

    return OpenAISTT(
        model=settings.model or "whisper-1",
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        base_url=settings.base_url or None,
        timeout_s=settings.timeout_s,
        language=settings.language,
        max_concurrent=settings.max_concurrent,
    )


ENGINES: dict[str, Callable[[STTSettings], Awaitable[STTEngine]]] = {
    "whisper": _whisper,
    "sphinx": _sphinx,
    "google": _google,
    "openai": _openai,
}


async def build_stt(settings: STTSettings) -> STTEngine | None:
    """Build and start the configured speech-to-text engine, and its ``stt.fallbacks`` behind it (a
    ``FailoverSTT``); None when speech input is turned off."""
    if settings.engine == "none":
        return None
    stages = [settings, *fallback_settings(settings)]
    engines: list[STTEngine] = []
    try:
        for stage in stages:
            factory = ENGINES.get(stage.engine)
            if factory is None:
                choices = f"choose one of {sorted(ENGINES)} or none"
                raise ConfigError(f"stt.engine: unknown engine {stage.engine!r}; {choices}")
            engines.append(await factory(stage))
    except BaseException:
        for engine in engines:
            await engine.aclose()
        raise
    if len(engines) == 1:
        return engines[0]
    from core.stt.failover import FailoverSTT

    names = member_names(stage.engine for stage in stages)
    members = [
        Member(name, engine, stage.timeout_s, Breaker(settings.down_for_s))
        for name, engine, stage in zip(names, engines, stages, strict=True)
    ]
    return FailoverSTT(Chain("stt", members, timeout_s=settings.timeout_s))


def available_cpus() -> int:
    """CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def import_speech_recognition() -> ModuleType:
    """SpeechRecognition, imported without its DeprecationWarnings (it imports ``aifc`` and ``audioop``, which
    Python 3.11 deprecates and our tests turn into errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("speech_recognition")
