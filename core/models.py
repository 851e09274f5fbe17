"""Frozen values that cross the boundaries between the pipeline's stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["system", "user", "assistant"]
Source = Literal["text", "voice", "upload"]
Status = Literal["ok", "error", "interrupted"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the context sent to an LLM."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as the history store keeps it."""

    id: int
    client_id: str
    role: Role
    content: str
    source: Source
    status: Status
    created_at: datetime
    audio_path: str | None = None
    language: str | None = None
    language_probability: float | None = None
    client_msg_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "source": self.source,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "language": self.language,
            "client_msg_id": self.client_msg_id,
            "has_recording": self.audio_path is not None,
        }


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message waiting to be stored."""

    client_id: str
    role: Role
    content: str
    source: Source = "text"
    status: Status = "ok"
    audio_path: str | None = None
    language: str | None = None
    language_probability: float | None = None
    client_msg_id: str | None = None


@dataclass(frozen=True, slots=True)
class Deletion:
    """What deleting messages removed: how many, and the recordings they referred to (to delete with them)."""

    messages: int
    audio_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """What the store knows about one client's conversation."""

    message_count: int
    first_activity: datetime | None
    last_activity: datetime | None


@dataclass(frozen=True, slots=True)
class AudioClip:
    """Decoded audio: mono signed 16-bit little-endian PCM."""

    pcm: bytes
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a transcript and when it was said, in seconds from the start of the clip."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a transcript (about a sentence) and when it was said; ``words`` only when they were asked for."""

    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()
    # What Whisper measured of it, where it did (OpenAI's verbose_json has them): the window's start in 10 ms frames,
    # the token ids, the sampling temperature, the mean log probability of its tokens, the text's gzip compression
    # ratio (repetition), and the window's probability of holding no speech.
    seek: int = 0
    tokens: tuple[int, ...] = ()
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True, slots=True)
class Transcript:
    """What speech-to-text heard."""

    text: str
    language: str | None = None
    duration_s: float = 0.0
    language_probability: float | None = None  # how sure detection was (0-1); None when the language was given
    segments: tuple[Segment, ...] | None = None  # with timestamps, when asked of an engine that has them


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Synthesised speech, encoded for the wire."""

    data: bytes
    format: str
    sample_rate: int
    duration_s: float | None = None  # how long it plays; None when the engine cannot tell


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What `/api/status` says about one engine."""

    engine: str
    model: str
    ready: bool
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"engine": self.engine, "model": self.model, "ready": self.ready, **self.extra}
