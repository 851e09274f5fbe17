"""OpenAITTS: any OpenAI-compatible ``/v1/audio/speech`` endpoint (OpenAI, Kokoro-FastAPI, LocalAI, Speaches…)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from typing import Literal

import openai

from core.errors import TTSError
from core.llm.openai_chat import openai_client, openai_error
from core.models import AudioChunk, EngineInfo
from core.tts.encode import DEFAULT_FORMAT, AudioEncoder
from core.tts.pcm import to_pcm

logger = logging.getLogger(__name__)

ResponseFormat = Literal["mp3", "opus", "wav"]
# Our wire format -> the speech API's ``response_format``, and the container PyAV reports for it.
_REQUEST: dict[str, tuple[ResponseFormat, str]] = {
    "mp3": ("mp3", "mp3"),
    "ogg-opus": ("opus", "ogg"),
    "wav": ("wav", "wav"),
}


class OpenAITTS:
    """Asks a speech service for each sentence in the wire format, and re-encodes only if it sent another."""

    def __init__(
        self,
        *,
        model: str = "tts-1",
        voice: str = "alloy",
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 0,
        max_concurrent: int = 1,
        fmt: str = DEFAULT_FORMAT,
    ) -> None:
        self._model = model
        self._voice = voice
        self._encoder = AudioEncoder(fmt)
        self._response_format, self._container = _REQUEST[fmt]
        self._slots = asyncio.Semaphore(max_concurrent)
        self._timeout_s = timeout_s
        # A retry would make a sentence late, and a late sentence is worth less than an error the user sees at
        # once: no retries unless asked.
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)

    def info(self) -> EngineInfo:
        extra: dict[str, object] = {
            "voice": self._voice,
            "format": self._encoder.format,
            "base_url": str(self._client.base_url),
        }
        return EngineInfo("openai", self._model, True, extra)

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """One chunk for the whole of ``text``."""
        if not text.strip():
            return
        data = await self._speech(text, self._response_format)
        yield await asyncio.to_thread(self._to_wire, data)

    async def synthesize_pcm(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        """One chunk of 16-bit PCM for the whole of ``text`` (``PCMSynthesizer``): asked as WAV, which every
        compatible service sends, so nothing lossy is decoded."""
        if not text.strip():
            return
        data = await self._speech(text, "wav")
        yield await asyncio.to_thread(to_pcm, AudioChunk(data, "wav", 0))

    async def _speech(self, text: str, response_format: ResponseFormat) -> bytes:
        try:
            async with self._slots, asyncio.timeout(self._timeout_s):  # retries included
                response = await self._client.audio.speech.create(
                    model=self._model,
                    voice=self._voice,
                    input=text,
                    response_format=response_format,
                )
                return response.content
        except TimeoutError as err:
            logger.warning("speech request took over %.1f s", self._timeout_s)
            raise TTSError("the speech service did not answer in time", code="tts-unavailable") from err
        except openai.OpenAIError as err:
            suffix, message = openai_error(err, "speech")
            code = "tts-unavailable" if suffix in ("unavailable", "timeout") else "tts-failed"
            logger.warning("speech request failed (%s): %s", code, err)
            raise TTSError(message, code=code) from err

    def _to_wire(self, data: bytes) -> AudioChunk:
        """Check what the service sent; re-encode it if it ignored ``response_format``."""
        import av
        import numpy as np

        try:
            with av.open(io.BytesIO(data), mode="r") as container:
                stream = container.streams.audio[0]
                rate = stream.sample_rate
                frames = [*container.decode(stream), None]
                if container.format.name.split(",")[0] == self._container:
                    duration_s = sum(frame.samples for frame in frames if frame is not None) / rate
                    return AudioChunk(data, self._encoder.format, rate, duration_s)
                logger.info("speech service sent %s, not %s: re-encoding", container.format.name, self._container)
                resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
                pcm = b"".join(
                    np.asarray(piece.to_ndarray()).tobytes() for frame in frames for piece in resampler.resample(frame)
                )
        except (av.FFmpegError, IndexError, ValueError) as err:
            raise TTSError("the speech service sent audio we cannot read") from err
        return self._encoder.encode(pcm, rate)

    async def aclose(self) -> None:
        await self._client.close()
