"""Structural interfaces of the engines behind each stage; fakes satisfy them without inheriting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol, runtime_checkable

from core.models import (
    AudioChunk,
    AudioClip,
    ChatMessage,
    ClientSummary,
    Deletion,
    EngineInfo,
    NewMessage,
    StoredMessage,
    Transcript,
)


class LLMEngine(Protocol):
    """Writes a reply to a conversation, streamed as text fragments.

    ``max_tokens`` bounds the reply's length in the model's tokens: None is the engine's configured length
    (``llm.max_tokens``, which suits speech), 0 as long as the model's context allows (what OpenAI's API does when a
    caller sets no limit). A conversation longer than the model's context is ``LLMError`` ``context-too-long``.
    """

    def info(self) -> EngineInfo: ...

    def stream_reply(self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class TurnTextJudge(Protocol):
    """An LLM that can judge from a conversation's text whether the user's last message is a finished turn."""

    @property
    def reads_turns(self) -> bool:
        """Whether ``end_of_turn`` can answer at all (else it always answers None)."""
        ...

    async def end_of_turn(self, messages: Sequence[ChatMessage]) -> float | None:
        """Probability (0..1) that the user's turn ends where ``messages``' last (user) message ends; None if it
        cannot tell."""
        ...


@runtime_checkable
class PromptCache(Protocol):
    """An LLM that keeps its last prompt evaluated (a KV cache), and can evaluate the start of the next one ahead."""

    def prepare(self, messages: Sequence[ChatMessage]) -> None:
        """Evaluate, off the event loop and behind any work queued, what every prompt that continues ``messages``
        with a user message starts with; returns at once. A request arriving meanwhile goes first."""
        ...


class STTEngine(Protocol):
    """Turns an utterance into text; no words heard is an empty ``Transcript.text`` (the ``Transcriber`` alone
    decides that this is ``no-speech``), never an error. ``prompt`` is text the speech likely follows or repeats
    (Whisper's previous-text context, OpenAI's ``prompt``); engines without such a thing ignore it."""

    def info(self) -> EngineInfo: ...

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class TimedSTT(Protocol):
    """An engine that can also say when each part of a clip was said: ``Transcript.segments`` (and each segment's
    words when ``words``), for subtitles and OpenAI's ``verbose_json``. Slower than ``transcribe``, so asked only
    when wanted."""

    async def transcribe_timed(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None, words: bool = False
    ) -> Transcript: ...


@runtime_checkable
class TokenCounter(Protocol):
    """An LLM whose own tokenizer can count a text's tokens (None: it has none, and callers estimate)."""

    def count_tokens(self, text: str) -> int | None: ...

    def count_prompt(self, messages: Sequence[ChatMessage]) -> int | None:
        """The prompt ``messages`` make, in tokens, as the model reads them (its chat template included); None
        when it cannot tell."""
        ...

    @property
    def context_tokens(self) -> int | None:
        """The model's context window in tokens, prompt and reply together; None when unknown."""
        ...


class TTSEngine(Protocol):
    """Turns a sentence into speech; ``language`` (a code like ``en``; None: not known) picks the voice where an
    engine has one per language, and an engine with one voice ignores it."""

    def info(self) -> EngineInfo: ...

    def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class PCMSynthesizer(Protocol):
    """A TTS engine that can also give its speech unencoded: mono 16-bit PCM chunks (``AudioChunk.format`` "pcm")
    at the voice's own rate, for callers that encode a stream of their own."""

    def synthesize_pcm(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]: ...


class HistoryStore(Protocol):
    """Keeps every client's conversation."""

    async def start(self) -> None: ...

    async def append(self, message: NewMessage) -> StoredMessage: ...

    async def recent(
        self,
        client_id: str,
        limit: int,
        *,
        before: int | None = None,
        statuses: Iterable[str] | None = None,
    ) -> list[StoredMessage]: ...

    async def clear(self, client_id: str) -> Deletion: ...

    async def audio_paths(self) -> set[str]:
        """Every recording a stored message refers to."""
        ...

    async def update(self, message_id: int, content: str, status: str) -> int: ...

    async def count(self, client_id: str) -> int: ...

    async def summary(self, client_id: str) -> ClientSummary: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...


class EventSink(Protocol):
    """One open connection that receives a client's events (a browser tab's socket)."""

    async def send(self, event: dict[str, object], binary: bytes | None = None) -> None:
        """Send one event, and the binary frame that belongs to it right after, without interleaving."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close the connection (it failed to take an event); never raises."""
        ...
