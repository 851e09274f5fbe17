"""Transcriber: audio bytes in any accepted container → kept recording and valid text, off the event loop.

It is the one place that decides ``no-speech`` (an engine returns empty text), and that makes an engine's text
valid Unicode (``core.unicode``). A recording it keeps while transcribing is deleted again if the utterance fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from core.audio import decode_audio, pcm_to_wav, sniff_container
from core.errors import STTError
from core.interfaces import STTEngine, TimedSTT
from core.models import AudioClip, Segment, Transcript
from core.recordings import Recordings
from core.unicode import valid_text

logger = logging.getLogger(__name__)

EXTENSIONS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "aiff": "aiff", "mp4": "m4a", "adts": "aac",
              "ogg": "ogg", "webm": "webm"}


@dataclass(frozen=True, slots=True)
class Heard:
    """What a clip said, where it was stored, and what it cost."""

    transcript: Transcript
    audio_path: str | None
    timings: dict[str, float] = field(default_factory=dict)


class Transcriber:
    """Decodes, keeps and transcribes utterances; decoding and STT each run in bounded worker threads."""

    def __init__(
        self,
        *,
        stt: STTEngine | None,
        recordings: Recordings,
        max_duration_s: float,
        language: str | None,
        max_concurrent_decodes: int = 2,
    ) -> None:
        self._stt = stt
        self.recordings = recordings
        self._max_duration_s = max_duration_s
        self._language = language or None
        self._decodes = asyncio.Semaphore(max_concurrent_decodes)
        self._deleting: set[asyncio.Future[int]] = set()  # referenced until done, so none is collected half-way

    @property
    def available(self) -> bool:
        return self._stt is not None

    async def hear(self, data: bytes, language: str | None = None) -> Heard:
        """Decode ``data``, keep it under the audio directory, and transcribe it (in ``language`` if given)."""
        if self._stt is None:
            raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
        start = time.perf_counter()
        clip = await self.decode(data)
        decoded = time.perf_counter()
        extension = EXTENSIONS.get(sniff_container(data) or "", "bin")
        save = lambda: self.recordings.save(data, extension)  # noqa: E731
        transcript, audio_path = await self._keeping(save, self.transcribe(clip, language))
        done = time.perf_counter()
        timings = {
            "decode_ms": round((decoded - start) * 1000, 1),
            "stt_ms": round((done - decoded) * 1000, 1),
            "audio_s": round(clip.duration_s, 2),
        }
        return Heard(transcript, audio_path, timings)

    async def hear_clip(
        self,
        clip: AudioClip | None,
        early: asyncio.Future[Transcript] | None = None,
        language: str | None = None,
    ) -> Heard:
        """Keep and transcribe audio already decoded (an utterance cut from a live stream); ``early`` is its
        transcription if one was started before the end of speech."""
        if self._stt is None or clip is None:
            raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
        start = time.perf_counter()
        save = lambda: self.recordings.save(pcm_to_wav(clip.pcm, clip.sample_rate), "wav")  # noqa: E731
        transcription = early if early is not None else self.transcribe(clip, language)
        transcript, audio_path = await self._keeping(save, transcription)
        timings = {"stt_ms": round((time.perf_counter() - start) * 1000, 1), "audio_s": round(clip.duration_s, 2)}
        return Heard(transcript, audio_path, timings)

    def knows_language(self, language: str) -> bool:
        """Whether speech-to-text can hear ``language`` as a client names it (``ru``, ``en-GB``); engines that do
        not say which languages they know are taken to know any."""
        knows = getattr(self._stt, "knows_language", None)
        return bool(knows(language)) if callable(knows) else True

    async def decode(self, data: bytes) -> AudioClip:
        """Decode a file in any accepted container, in a worker thread (a bounded number at once), keeping nothing."""
        async with self._decodes:
            return await asyncio.to_thread(decode_audio, data, max_duration_s=self._max_duration_s)

    async def transcribe(
        self,
        clip: AudioClip,
        language: str | None = None,
        prompt: str | None = None,
        *,
        timestamps: Literal["segment", "word"] | None = None,
    ) -> Transcript:
        """Transcribe decoded audio into valid text, in ``language`` (a client's fixed language), else
        ``stt.language``, else the language the engine detects; no words at all is ``no-speech``. ``prompt``: text
        the speech likely follows or repeats (see ``STTEngine``). With ``timestamps`` the transcript has its
        segments (and their words for ``word``) from an engine that knows them (``TimedSTT``); from another, one
        segment spanning the clip."""
        if self._stt is None:
            raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
        language = language or self._language
        if timestamps is not None and isinstance(self._stt, TimedSTT):
            words = timestamps == "word"
            transcript = await self._stt.transcribe_timed(clip, language=language, prompt=prompt, words=words)
        else:
            transcript = await self._stt.transcribe(clip, language=language, prompt=prompt)
        text = valid_text(transcript.text).strip()
        if not text:
            raise STTError("no speech was heard in the audio", code="no-speech")
        if timestamps is not None:
            segments = _valid(transcript.segments) or (Segment(0.0, round(clip.duration_s, 3), text),)
            return dataclasses.replace(transcript, text=text, segments=segments)
        return transcript if text == transcript.text else dataclasses.replace(transcript, text=text)

    async def forget(self, paths: list[str | None]) -> int:
        """Delete recordings whose messages are gone (or were never stored)."""
        if not any(paths):
            return 0
        return await asyncio.to_thread(self.recordings.delete, paths)

    async def _keeping(
        self, save: Callable[[], str | None], transcription: asyncio.Future[Transcript] | Awaitable[Transcript]
    ) -> tuple[Transcript, str | None]:
        """Write the recording while ``transcription`` runs; if it fails, the recording is deleted again."""
        saving = asyncio.ensure_future(asyncio.to_thread(_saved, save))
        try:
            transcript = await transcription
        except BaseException:
            # Nothing will refer to the file: delete it once written (even if this turn is being cancelled).
            saving.add_done_callback(self._discard_saved)
            raise
        return transcript, await saving

    def _discard_saved(self, saving: asyncio.Future[str | None]) -> None:
        if saving.cancelled() or saving.exception() is not None:
            return
        if (path := saving.result()) is not None:
            task = asyncio.ensure_future(asyncio.to_thread(self.recordings.delete, [path]))
            self._deleting.add(task)
            task.add_done_callback(self._deleting.discard)

    def prune(self) -> int:
        """Delete recordings older than ``audio.keep_days``."""
        return self.recordings.prune()


def _valid(segments: tuple[Segment, ...] | None) -> tuple[Segment, ...]:
    """An engine's segments with valid text, empty ones left out."""
    kept = []
    for segment in segments or ():
        words = tuple(dataclasses.replace(w, text=valid_text(w.text)) for w in segment.words)
        if text := valid_text(segment.text).strip():
            kept.append(dataclasses.replace(segment, text=text, words=words))
    return tuple(kept)


def _saved(save: Callable[[], str | None]) -> str | None:
    """Run ``save``; a disk that refuses the file loses the recording, never the user's words."""
    try:
        return save()
    except OSError as err:
        logger.error("the recording could not be kept: %s", err)
        return None
