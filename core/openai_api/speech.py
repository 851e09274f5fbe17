"""Speech as OpenAI's ``/v1/audio/speech`` makes it, from the server's voices: the input is cut into sentences (as
a reply read aloud is, ``core.speech_text``), each is spoken in its language's voice, and all of them leave as one
file (``core.tts.stream``), each sentence's audio as soon as it is synthesised.

``voice`` takes OpenAI's names (alloy, ash, …), which mean the server's own choice: each sentence in the voice of
its language, as the page's speech does; or a language (``ru``, ``Russian``) or one of the server's voices (``piper``,
``festival``, a voice's model name), which reads every sentence in that voice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Mapping

from core.errors import TTSError
from core.interfaces import TTSEngine
from core.language import TextLanguage
from core.openai_api.errors import InvalidRequest
from core.speech_text import SentenceSplitter
from core.tts import parse_voice
from core.tts.pcm import pcm_speech
from core.tts.stream import StreamEncoder
from core.tts.voices import LANGUAGE_NAMES, VoiceRouter, language_code

logger = logging.getLogger(__name__)

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin", "cedar",
)
MAX_INPUT_CHARS = 4096
_LOCALE = re.compile(r"[a-z]{2,3}[-_][a-z0-9]{2,8}")


class VoiceNames:
    """The names ``voice`` takes, each for the language whose voice it is (None: each sentence's own language)."""

    def __init__(self, tts: TTSEngine, configured: Mapping[str, str]) -> None:
        self._names: dict[str, str | None] = {name: None for name in OPENAI_VOICES}
        voices = tts.voices if isinstance(tts, VoiceRouter) else {}
        self._any = not voices  # one multilingual engine (a speech service): every name means its own voice
        for language, engine in voices.items():
            spec = configured.get(language, "")
            engine_name, voice = parse_voice(spec)
            names = [language, LANGUAGE_NAMES.get(language, ""), spec, engine_name, voice, engine.info().model]
            for name in names:
                if name:
                    self._names.setdefault(name.lower(), language)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def language(self, voice: str) -> str | None:
        """The language ``voice`` fixes, None for a voice that leaves it to the text, or ``bad-request``."""
        key = voice.strip().lower()
        if self._any or key in self._names:
            return self._names.get(key)
        primary = language_code(key) if _LOCALE.fullmatch(key) else None  # en-US, ru_RU
        if primary in self._names:
            return self._names[primary]
        raise InvalidRequest(f"unknown voice {voice!r}; use one of: {', '.join(self.names)}", param="voice")


def sentences(text: str) -> list[str]:
    """``text`` cut into the pieces that are spoken one at a time, cleaned for speech (markup, links and code
    are not read out); the first is cut short at a clause, so the first audio comes sooner."""
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]


async def speak(
    tts: TTSEngine,
    text: str,
    encoder: StreamEncoder,
    *,
    language: str | None = None,
    detect: TextLanguage | None = None,
) -> AsyncGenerator[bytes, None]:
    """The encoded speech of ``text``, a piece at a time, as each sentence is synthesised and encoded (each in a
    worker thread). ``language`` fixes the voice; otherwise each sentence is read in its own language's voice, else
    in the whole text's, else in the default voice. A sentence in a language with no voice is left out, as the page
    leaves it unspoken; if that leaves nothing, its ``tts-no-voice`` is raised (before any audio). Input with nothing
    to say once cleaned (emoji, symbols, a code block) raises InvalidRequest ``bad-request``."""
    spoken = 0
    unspoken: TTSError | None = None
    try:
        pieces = sentences(text)
        if not pieces:  # only emoji, symbols or code: a 200 with an empty file would play as nothing, or not at all
            raise InvalidRequest("the input holds nothing to say (only symbols, emoji or code)", param="input")
        overall = language or (await asyncio.to_thread(detect.detect, text) if detect is not None else None)
        for piece in pieces:
            wanted = language or (detect.detect(piece) if detect is not None else None) or overall
            try:
                async for chunk in pcm_speech(tts, piece, language=wanted):
                    spoken += 1
                    if data := await asyncio.to_thread(encoder.feed, chunk.data, chunk.sample_rate):
                        yield data
            except TTSError as err:
                if err.code != "tts-no-voice":
                    raise
                logger.info("speech: no voice for %s, left out: %r", wanted, piece[:40])
                unspoken = err
        if not spoken and unspoken is not None:
            raise unspoken
        if tail := await asyncio.to_thread(encoder.finish):
            yield tail
    finally:
        await asyncio.to_thread(encoder.close)  # after the encoding still running, if the listener left
