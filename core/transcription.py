"""Transcriber: audio bytes in any accepted container → stored file and text, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.audio import decode_audio, pcm_to_wav, sniff_container
from core.errors import STTError
from core.interfaces import STTEngine
from core.models import AudioClip, Transcript

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
    """Decodes, stores and transcribes utterances; decoding and STT each run in bounded worker threads."""

    def __init__(
        self,
        *,
        stt: STTEngine | None,
        audio_dir: str,
        max_duration_s: float,
        keep_days: float,
        language: str | None,
        max_concurrent_decodes: int = 2,
    ) -> None:
        self._stt = stt
        self._dir = Path(audio_dir)
        self._max_duration_s = max_duration_s
        self._keep_days = keep_days
        self._language = language or None
        self._decodes = asyncio.Semaphore(max_concurrent_decodes)

    @property
    def available(self) -> bool:
        return self._stt is not None

    async def hear(self, data: bytes) -> Heard:
        """Decode ``data``, keep it under the audio directory, and transcribe it."""
        if self._stt is None:
            raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
        start = time.perf_counter()
        async with self._decodes:
            clip = await asyncio.to_thread(decode_audio, data, max_duration_s=self._max_duration_s)
        decoded = time.perf_counter()
        path_task = asyncio.create_task(asyncio.to_thread(self._store, data))
        try:
            transcript = await self.transcribe(clip)
        finally:
            audio_path = await path_task
        done = time.perf_counter()
        timings = {
            "decode_ms": round((decoded - start) * 1000, 1),
            "stt_ms": round((done - decoded) * 1000, 1),
            "audio_s": round(clip.duration_s, 2),
        }
        return Heard(transcript, audio_path, timings)

    async def hear_clip(self, clip: AudioClip | None, early: asyncio.Future[Transcript] | None = None) -> Heard:
        """Keep and transcribe audio already decoded (an utterance cut from a live stream); ``early`` is its
        transcription if one was started before the end of speech."""
        if self._stt is None or clip is None:
            raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
        start = time.perf_counter()
        path_task = asyncio.create_task(asyncio.to_thread(self._store_clip, clip))
        try:
            transcript = await (early if early is not None else self.transcribe(clip))
        finally:
            audio_path = await path_task
        timings = {"stt_ms": round((time.perf_counter() - start) * 1000, 1), "audio_s": round(clip.duration_s, 2)}
        return Heard(transcript, audio_path, timings)

    async def transcribe(self, clip: AudioClip) -> Transcript:
        """Transcribe decoded audio; no words at all is ``no-speech``."""
        if self._stt is None:
            raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
        transcript = await self._stt.transcribe(clip, language=self._language)
        if not transcript.text.strip():
            raise STTError("no speech was heard in the audio", code="no-speech")
        return transcript

    def _store_clip(self, clip: AudioClip) -> str | None:
        return self._store(pcm_to_wav(clip.pcm, clip.sample_rate), "wav")

    def _store(self, data: bytes, extension: str | None = None) -> str | None:
        """Keep the original bytes under a server-chosen name (never the client's name or id)."""
        if self._keep_days <= 0:
            return None
        now = datetime.now(UTC)
        extension = extension or EXTENSIONS.get(sniff_container(data) or "", "bin")
        folder = self._dir / now.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{now.strftime('%H%M%S')}-{uuid.uuid4().hex}.{extension}"
        path.write_bytes(data)
        return str(path)

    def prune(self) -> int:
        """Delete stored audio older than ``keep_days`` (everything when it is 0); returns how many files went."""
        if not self._dir.is_dir():
            return 0
        cutoff = time.time() - self._keep_days * 86400
        removed = 0
        for path in self._dir.rglob("*"):
            if path.is_file() and not path.name.startswith(".") and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        for folder in sorted((p for p in self._dir.iterdir() if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        if removed:
            logger.info("pruned %d stored audio file(s) older than %s day(s)", removed, self._keep_days)
        return removed
