"""GoogleSTT: Google's free web speech endpoint through SpeechRecognition's ``recognize_google`` (needs internet).

Offline it fails fast with ``stt-unavailable``: SpeechRecognition's own operation timeout bounds the request, and
an outer deadline bounds what that timeout cannot (a DNS lookup that hangs).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from urllib.error import HTTPError

from core.errors import STTError
from core.models import AudioClip, EngineInfo, Transcript
from core.stt import import_speech_recognition

logger = logging.getLogger(__name__)


class GoogleSTT:
    """Sends each clip to Google as FLAC, at most ``max_concurrent`` at a time, from worker threads."""

    def __init__(
        self,
        *,
        language: str = "en",
        key: str | None = None,
        timeout_s: float = 10.0,
        max_concurrent: int = 1,
        endpoint: str | None = None,
    ) -> None:
        self._sr = import_speech_recognition()
        self._language = language
        self._key = key
        # Google's endpoint unless told otherwise (tests point it at loopback servers).
        self._options = {"endpoint": endpoint} if endpoint else {}
        self._timeout_s = timeout_s
        self._recognizer = self._sr.Recognizer()
        self._recognizer.operation_timeout = timeout_s
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="stt-google")

    def info(self) -> EngineInfo:
        return EngineInfo("google", "web-speech-v2", True, {"timeout_s": self._timeout_s})

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        wanted = language or self._language
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, self._recognise, audio, wanted)
        try:
            text = await asyncio.wait_for(work, self._timeout_s + 2)
        except TimeoutError as err:
            raise STTError("Google speech recognition did not answer in time", code="stt-unavailable") from err
        return Transcript(text, wanted, audio.duration_s)

    def _recognise(self, audio: AudioClip, language: str) -> str:
        """Blocking: what Google heard, or an empty string. Runs in a worker thread."""
        sr = self._sr
        data = sr.AudioData(audio.pcm, audio.sample_rate, 2)
        try:
            text = self._recognizer.recognize_google(data, key=self._key, language=language, **self._options)
            return str(text).strip()
        except sr.UnknownValueError:
            return ""
        except sr.RequestError as err:  # no connection, or Google refused the request
            if isinstance(err.__context__, HTTPError):
                err.__context__.close()  # SpeechRecognition leaves the refused response's socket open
            raise STTError(f"Google speech recognition is unavailable: {err}", code="stt-unavailable") from err
        except OSError as err:  # a socket timeout mid-response, or no FLAC encoder for this platform
            raise STTError(f"Google speech recognition failed: {err}", code="stt-unavailable") from err
        except (ValueError, KeyError, TypeError) as err:  # an answer that is not the JSON it should be
            logger.warning("unreadable answer from Google speech recognition: %r", err)
            raise STTError("Google speech recognition answered with something unreadable", code="stt-failed") from err

    async def aclose(self) -> None:
        # A request stuck past its deadline must not hold shutdown: do not wait for it.
        self._executor.shutdown(wait=False, cancel_futures=True)
