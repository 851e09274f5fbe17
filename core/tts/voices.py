"""VoiceRouter: the speech engine the rest of the server sees, speaking each language in its own voice."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

from core.errors import TTSError
from core.interfaces import TTSEngine
from core.models import AudioChunk, EngineInfo
from core.tts.pcm import pcm_speech

logger = logging.getLogger(__name__)

# Names for the message a user sees; a language not listed is named by its code.
LANGUAGE_NAMES = {
    **{"en": "English", "ru": "Russian", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian"},
    **{"pt": "Portuguese", "nl": "Dutch", "pl": "Polish", "uk": "Ukrainian", "be": "Belarusian", "cs": "Czech"},
    **{"sv": "Swedish", "fi": "Finnish", "tr": "Turkish", "zh": "Chinese", "ja": "Japanese", "ko": "Korean"},
    **{"ar": "Arabic", "he": "Hebrew", "hi": "Hindi", "el": "Greek", "kk": "Kazakh", "ka": "Georgian"},
}


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, f"the language {code!r}")


def language_code(language: str | None) -> str | None:
    """``en`` for ``en``, ``EN``, ``en-US`` or ``en_GB``; None for no language."""
    if not language or not language.strip():
        return None
    return language.strip().lower().replace("_", "-").split("-")[0]


class VoiceRouter:
    """Speaks each language in the voice configured for it.

    ``voices`` maps a language to its engine, or to None when that voice failed to start (the language then has
    no voice). ``default_language`` (the first of ``voices`` unless given) is the language of a text whose
    language is not known. A ``multilingual`` engine speaks every language that has no voice of its own: an
    OpenAI-compatible speech service, whose voices read any language. A language with no voice is a TTSError
    ``tts-no-voice``; the reply is still shown as text.
    """

    def __init__(
        self,
        voices: Mapping[str, TTSEngine | None],
        *,
        default_language: str | None = None,
        multilingual: TTSEngine | None = None,
        name: str = "voices",
    ) -> None:
        self._voices = {language_code(language) or language: engine for language, engine in voices.items()}
        self._default = language_code(default_language) or next(iter(self._voices), None)
        self._multilingual = multilingual
        self._name = name

    @property
    def default_language(self) -> str | None:
        return self._default

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages with a voice of their own, in configuration order (a multilingual engine speaks others)."""
        return tuple(language for language, engine in self._voices.items() if engine is not None)

    @property
    def voices(self) -> dict[str, TTSEngine]:
        """Each language with a voice of its own, and that voice's engine."""
        return {language: engine for language, engine in self._voices.items() if engine is not None}

    def speaks(self, language: str | None) -> bool:
        """Whether a text in ``language`` (None: the default language) can be spoken."""
        return self._engine(language_code(language) or self._default) is not None

    def _engine(self, language: str | None) -> TTSEngine | None:
        engine = self._voices.get(language) if language is not None else None
        return engine if engine is not None else self._multilingual

    def info(self) -> EngineInfo:
        """One multilingual engine's own info; otherwise each language's voice, under ``voices``."""
        if self._multilingual is not None and not self.languages:
            info = self._multilingual.info()
            return EngineInfo(info.engine, info.model, info.ready, {**info.extra, "languages": "any"})
        voices: dict[str, object] = {}
        for language, engine in self._voices.items():
            voices[language] = engine.info().to_dict() if engine is not None else None
        names = " ".join(
            f"{language}:{engine.info().model or engine.info().engine}"
            for language, engine in self._voices.items()
            if engine is not None
        )
        extra: dict[str, object] = {
            "languages": list(self.languages),
            "default_language": self._default,
            "voices": voices,
        }
        ready = any(engine.info().ready for engine in self._distinct())
        return EngineInfo(self._name, names, ready, extra)

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """The speech of ``text`` in the voice of ``language`` (None: the default language's voice)."""
        if not text.strip():
            return
        engine, wanted = self._voice(language)
        async for chunk in engine.synthesize(text, language=wanted):
            yield chunk

    async def synthesize_pcm(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """As ``synthesize``, as 16-bit PCM at the voice's own rate (``PCMSynthesizer``)."""
        if not text.strip():
            return
        engine, wanted = self._voice(language)
        async for chunk in pcm_speech(engine, text, language=wanted):
            yield chunk

    def _voice(self, language: str | None) -> tuple[TTSEngine, str | None]:
        """The engine that speaks ``language`` and the language it is asked in, or TTSError ``tts-no-voice``."""
        wanted = language_code(language) or self._default
        engine = self._engine(wanted)
        if engine is None:
            name = language_name(wanted) if wanted else "this language"
            raise TTSError(f"there is no voice for {name}; the reply is shown as text", code="tts-no-voice")
        return engine, wanted

    def _distinct(self) -> list[TTSEngine]:
        """Each engine once (two languages may share one)."""
        engines: list[TTSEngine] = []
        for engine in [*self._voices.values(), self._multilingual]:
            if engine is not None and all(engine is not seen for seen in engines):
                engines.append(engine)
        return engines

    async def aclose(self) -> None:
        for engine in self._distinct():
            try:
                await engine.aclose()
            except Exception:  # one engine failing to close must not keep the others open
                logger.exception("closing the speech engine %s failed", engine.info().engine)
