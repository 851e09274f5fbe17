"""The closed set of events the server sends, each a small dataclass with a ``type``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every server event; ``to_dict`` is its wire form."""

    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True, slots=True)
class Welcome(Event):
    type: ClassVar[str] = "welcome"
    client_id: str
    history: list[dict[str, object]]
    settings: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserMessage(Event):
    """The user's message as stored; ``client_msg_id`` is the id the client sent it with, so a page matches its own
    messages by id, never by text."""

    type: ClassVar[str] = "user_message"
    text: str
    message_id: int
    source: str
    created_at: str
    client_msg_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyDelta(Event):
    type: ClassVar[str] = "reply_delta"
    text: str


@dataclass(frozen=True, slots=True)
class Reply(Event):
    type: ClassVar[str] = "reply"
    text: str
    message_id: int
    timings: dict[str, float]
    status: str = "ok"
    engine: str | None = None  # the language model that wrote it: llm.engine, or one of llm.fallbacks


@dataclass(frozen=True, slots=True)
class CommandResult(Event):
    type: ClassVar[str] = "command"
    name: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class TranscriptionEvent(Event):
    type: ClassVar[str] = "transcription"
    text: str
    timings: dict[str, float]
    source: str = "voice"
    language: str | None = None  # ISO 639-1, detected or fixed by the client
    language_probability: float | None = None  # how sure detection was (0-1); None when it was fixed


@dataclass(frozen=True, slots=True)
class AudioEvent(Event):
    """Announces the binary frame that follows it."""

    type: ClassVar[str] = "audio"
    seq: int
    text: str
    format: str
    sample_rate: int


@dataclass(frozen=True, slots=True)
class AudioDone(Event):
    """The last audio frame of a spoken reply has been sent; ``timings`` are the speech's own
    (``tts_first_audio_ms``, ``first_audio_ms``: end of the user's speech or message → first audio sent)."""

    type: ClassVar[str] = "audio_done"
    message_id: int | None
    frames: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpeechStarted(Event):
    type: ClassVar[str] = "speech_started"


# Why a turn's speech was judged over: the end-of-turn model (or, with ``vad.end_of_turn`` = ``silence``, the
# silence) said so; ``vad.max_silence_ms`` of silence; ``vad.max_utterance_s`` of speech; the client ended it.
# ``echo``: speech heard over a spoken reply had no words of the user's own; it is no turn, the reply plays on.
EndReason = Literal["end_of_turn", "max_silence", "max_utterance", "push_to_talk", "echo"]


@dataclass(frozen=True, slots=True)
class SpeechStopped(Event):
    """Once per turn, when the turn is judged ended (not when a silence begins); ``probability`` is the end-of-turn
    model's, when it judged, and ``text_probability`` the LLM's reading of the words, when it read them."""

    type: ClassVar[str] = "speech_stopped"
    reason: EndReason = "end_of_turn"
    probability: float | None = None
    text_probability: float | None = None


@dataclass(frozen=True, slots=True)
class SpeechPaused(Event):
    """The user fell silent for ``silence_ms``, and the end-of-turn model (or the LLM reading their words,
    ``text_probability``) judged they had not finished."""

    type: ClassVar[str] = "speech_paused"
    silence_ms: int
    probability: float
    text_probability: float | None = None


@dataclass(frozen=True, slots=True)
class ReplyPaused(Event):
    """The user may be interrupting the spoken reply: no more of its audio comes until ``reply_resumed`` or
    ``interrupted``; play what is there quieter (the page ducks it to a quarter) so it does not talk over them."""

    type: ClassVar[str] = "reply_paused"


@dataclass(frozen=True, slots=True)
class ReplyResumed(Event):
    """It was not an interruption (no words, or the reply's own voice heard back): play on at full volume; the
    rest of its audio follows."""

    type: ClassVar[str] = "reply_resumed"


@dataclass(frozen=True, slots=True)
class Interrupted(Event):
    type: ClassVar[str] = "interrupted"
    message_id: int | None
    text: str = ""


@dataclass(frozen=True, slots=True)
class Cleared(Event):
    """Tells every tab of a client that its history is gone."""

    type: ClassVar[str] = "cleared"
    deleted: int


@dataclass(frozen=True, slots=True)
class ConversationTitled(Event):
    """A conversation got its title (made from the first exchange, or the user renamed it)."""

    type: ClassVar[str] = "conversation"
    client_id: str
    title: str


@dataclass(frozen=True, slots=True)
class ConversationDeleted(Event):
    """The conversation is gone (messages, recordings, search entries): its tabs start another."""

    type: ClassVar[str] = "conversation_deleted"
    client_id: str
