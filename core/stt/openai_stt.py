"""OpenAISTT: any OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (OpenAI, Groq, a local whisper server…)."""

from __future__ import annotations

import asyncio
import logging

import openai

from core.audio import pcm_to_wav
from core.errors import STTError
from core.llm.openai_chat import openai_client, openai_error
from core.models import AudioClip, EngineInfo, Transcript
from core.urls import public_url

logger = logging.getLogger(__name__)

# openai_error's suffixes -> our codes: a timeout is the service being unavailable, as far as a user can tell.
_CODES = {
    "timeout": "stt-unavailable",
    "unavailable": "stt-unavailable",
    "rate-limited": "stt-rate-limited",
    "auth": "stt-auth",
}


class OpenAISTT:
    """Uploads each clip as WAV through one long-lived ``AsyncOpenAI`` client, ``max_concurrent`` at a time."""

    def __init__(
        self,
        *,
        model: str = "whisper-1",
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        language: str = "en",
        max_concurrent: int = 1,
        max_retries: int = 1,
    ) -> None:
        self._model = model
        self._language = language
        self._timeout_s = timeout_s
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)
        self._slots = asyncio.Semaphore(max_concurrent)

    def info(self) -> EngineInfo:
        return EngineInfo("openai", self._model, True, {"base_url": public_url(str(self._client.base_url))})

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        wanted = (language or self._language).split("-")[0].lower()  # the API takes ISO-639-1: "en", not "en-US"
        upload = ("speech.wav", pcm_to_wav(audio.pcm, audio.sample_rate), "audio/wav")
        async with self._slots:
            try:
                # The deadline is around the whole request, retries included: what the user waits is timeout_s.
                async with asyncio.timeout(self._timeout_s):
                    result = await self._client.audio.transcriptions.create(
                        model=self._model,
                        file=upload,
                        response_format="json",
                        language=wanted if wanted and wanted != "auto" else openai.omit,
                        prompt=prompt or openai.omit,
                    )
            except TimeoutError as err:
                logger.warning("transcription took over %.1f s", self._timeout_s)
                raise STTError("the speech-to-text service did not answer in time", code="stt-unavailable") from err
            except openai.OpenAIError as err:
                suffix, message = openai_error(err, "speech-to-text")
                logger.warning("transcription failed: %s", err)
                raise STTError(message, code=_CODES.get(suffix, "stt-failed")) from err
            except ValueError as err:  # a 200 whose body is no JSON
                logger.warning("the speech-to-text service sent no JSON: %s", err)
                raise STTError("the speech-to-text service sent an answer we cannot read", code="stt-failed") from err
        text = getattr(result, "text", None)
        if not isinstance(text, str):  # a 200 that is no transcription (an HTML page, other JSON)
            logger.warning("the speech-to-text service sent no transcription: %.80r", result)
            raise STTError("the speech-to-text service sent an answer we cannot read", code="stt-failed")
        return Transcript(text.strip(), wanted or None, audio.duration_s)

    async def aclose(self) -> None:
        await self._client.close()
