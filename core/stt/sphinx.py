"""SphinxSTT: CMU PocketSphinx, offline and light, with the English model SpeechRecognition ships.

SpeechRecognition's ``recognize_sphinx`` builds a new decoder (≈0.4 s of model loading) on every call, so this
engine keeps PocketSphinx decoders loaded itself, configured exactly as ``recognize_sphinx`` configures them, one
per worker thread (a decoder is not thread-safe). SpeechRecognition's ``AudioData`` stays the normalised form the
audio passes through. Silence is caught before decoding (PocketSphinx reads words into it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.errors import STTError
from core.models import AudioClip, EngineInfo, Transcript
from core.stt import import_speech_recognition

logger = logging.getLogger(__name__)

_RATE = 16000
# At least this much voiced audio (by PocketSphinx's own voice activity detector) before decoding at all.
_MIN_VOICE_S = 0.2
# A language directory as SpeechRecognition lays it out (and spells "pronunciation").
_LAYOUT = ("acoustic-model", "language-model.lm.bin", "pronounciation-dictionary.dict")


def bundled_language_dir() -> Path:
    """SpeechRecognition's en-US PocketSphinx data: acoustic model, language model, dictionary."""
    sr = import_speech_recognition()
    return Path(str(sr.__file__)).parent / "pocketsphinx-data" / "en-US"


class SphinxSTT:
    """Transcribes with PocketSphinx decoders kept loaded, at most ``max_concurrent`` clips at a time."""

    def __init__(self, *, model: str = "", language: str = "en", max_concurrent: int = 1) -> None:
        self._sr = import_speech_recognition()
        self._dir = Path(model).expanduser() if model else bundled_language_dir()
        self._language = language
        self._max_concurrent = max_concurrent
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="stt-sphinx")
        self._decoders: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready = False

    def info(self) -> EngineInfo:
        return EngineInfo("sphinx", self._dir.name, self._ready)

    async def start(self) -> None:
        """Load one decoder per worker thread."""
        if not self._language.lower().startswith("en") and self._dir == bundled_language_dir():
            raise STTError(
                f"PocketSphinx ships only an English model, not {self._language!r}; set stt.model to a "
                "PocketSphinx language directory",
                code="stt-unavailable",
            )
        loop = asyncio.get_running_loop()
        for _ in range(self._max_concurrent):
            self._decoders.put(await loop.run_in_executor(self._executor, self._load))
        self._ready = True
        logger.info("pocketsphinx loaded: %s", self._dir)

    def _load(self) -> Any:
        files = [self._dir / name for name in _LAYOUT]
        if not files[0].is_dir() or not files[1].is_file() or not files[2].is_file():
            raise STTError(f"{self._dir} is not a PocketSphinx language directory", code="stt-unavailable")
        try:
            from pocketsphinx import Config, Decoder

            config = Config()
            config.set_string("-hmm", str(files[0]))
            config.set_string("-lm", str(files[1]))
            config.set_string("-dict", str(files[2]))
            config.set_string("-logfn", os.devnull)
            return Decoder(config)
        except ImportError as err:
            raise STTError("pocketsphinx is not installed", code="stt-unavailable") from err
        except (RuntimeError, ValueError) as err:
            raise STTError(f"cannot load PocketSphinx from {self._dir}: {err}", code="stt-unavailable") from err

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        if not self._ready:
            raise STTError("PocketSphinx is not loaded", code="stt-unavailable")
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(self._executor, self._recognise, audio, language or self._language)
        return Transcript(text, self._language, audio.duration_s)

    def _recognise(self, audio: AudioClip, language: str) -> str:
        """Blocking: the words PocketSphinx heard, or an empty string. Runs in a worker thread."""
        data = self._sr.AudioData(audio.pcm, audio.sample_rate, 2)
        raw: bytes = data.get_raw_data(convert_rate=_RATE, convert_width=2)  # a no-op for our 16 kHz clips
        if not _has_voice(raw):
            return ""
        decoder = self._decoders.get()
        try:
            decoder.start_utt()
            decoder.process_raw(raw, False, True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
        except RuntimeError as err:
            logger.exception("pocketsphinx failed on a %.1f s clip", audio.duration_s)
            raise STTError("speech-to-text failed", code="stt-failed") from err
        finally:
            self._decoders.put(decoder)
        return str(hypothesis.hypstr).strip() if hypothesis is not None else ""

    async def aclose(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._ready = False
        while not self._decoders.empty():
            self._decoders.get_nowait()


def _has_voice(raw: bytes) -> bool:
    from pocketsphinx import Vad

    vad = Vad(sample_rate=_RATE)
    size = vad.frame_bytes
    voiced = sum(vad.is_speech(raw[i : i + size]) for i in range(0, len(raw) - size + 1, size))
    return bool(voiced * vad.frame_length >= _MIN_VOICE_S)
