"""Scripted fakes of the engine Protocols (no inheritance): they answer as told and record what they were asked."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime

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


class ScriptedLLM:
    """Streams fixed chunks, waiting for ``gate`` (if given) before chunk number ``gate_after``, then raises
    ``error`` (if given); records the contexts and how many ran at once."""

    def __init__(
        self,
        chunks: list[str],
        gate: asyncio.Event | None = None,
        *,
        gate_after: int = 0,
        error: Exception | None = None,
    ) -> None:
        self.chunks = chunks
        self.gate = gate
        self.gate_after = gate_after
        self.error = error
        self.contexts: list[list[ChatMessage]] = []
        self.prepared: list[list[ChatMessage]] = []  # what the pipeline asked to have evaluated ahead
        self.running = 0
        self.most = 0

    def info(self) -> EngineInfo:
        return EngineInfo("scripted", "fake", True)

    async def stream_reply(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[str]:
        self.contexts.append(list(messages))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            for number, chunk in enumerate(self.chunks):
                if number == self.gate_after and self.gate is not None:
                    await self.gate.wait()
                yield chunk
            if self.gate is not None and len(self.chunks) <= self.gate_after:
                await self.gate.wait()
            if self.error is not None:
                raise self.error
        finally:
            self.running -= 1

    def prepare(self, messages: Sequence[ChatMessage]) -> None:
        self.prepared.append(list(messages))

    async def aclose(self) -> None:
        pass


class WordsSTT:
    """Hears fixed text in any clip."""

    def __init__(self, text: str) -> None:
        self.text = text

    def info(self) -> EngineInfo:
        return EngineInfo("words", "fake", True)

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        return Transcript(self.text, language, audio.duration_s)

    async def aclose(self) -> None:
        pass


class ScriptedSTT:
    """Hears each answer in turn (the last one repeats); an exception answer is raised. Records the prompts and
    the clips' durations."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.prompts: list[str | None] = []
        self.durations: list[float] = []  # seconds of each clip

    def info(self) -> EngineInfo:
        return EngineInfo("scripted", "fake", True)

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        self.prompts.append(prompt)
        self.durations.append(audio.duration_s)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return Transcript(answer, language or "en", audio.duration_s, 0.99)

    async def aclose(self) -> None:
        pass


class GatedTTS:
    """'Speaks' each sentence as its UTF-8 bytes once ``gate`` is open (the first ``free`` ones at once), each said
    to play for ``duration_s``, or raises ``error``; records the sentences."""

    def __init__(
        self, gate: asyncio.Event | None = None, duration_s: float | None = None, *, error: Exception | None = None,
        free: int = 0,
    ) -> None:
        self.gate = gate
        self.free = free
        self.duration_s = duration_s
        self.error = error
        self.sentences: list[str] = []
        self.languages: list[str | None] = []  # the language each sentence was asked in
        self.closed = 0

    def info(self) -> EngineInfo:
        return EngineInfo("gated", "fake", True)

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        self.sentences.append(text)
        self.languages.append(language)
        if self.gate is not None and len(self.sentences) > self.free:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        yield AudioChunk(text.encode(), "pcm", 16000, self.duration_s)

    async def aclose(self) -> None:
        self.closed += 1


class RecordingSink:
    """An EventSink that keeps what it was sent, and whether it was closed."""

    def __init__(self, *, fail: bool = False) -> None:
        self.events: list[dict[str, object]] = []
        self.binaries: list[bytes] = []
        self.fail = fail
        self.closed: tuple[int, str] | None = None

    async def send(self, event: dict[str, object], binary: bytes | None = None) -> None:
        if self.fail:
            raise UnicodeEncodeError("utf-8", "\ud83d", 0, 1, "surrogates not allowed")
        self.events.append(event)
        if binary is not None:
            self.binaries.append(binary)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def types(self) -> list[object]:
        return [e["type"] for e in self.events]


class SlowReplyWrites:
    """A HistoryStore that delegates to a real one, but holds the assistant's writes until ``release`` is set
    (or refuses them with ``refuse``), to test what happens while a reply is being stored."""

    def __init__(self, store: object, *, refuse: Exception | None = None) -> None:
        self._store = store
        self.release = asyncio.Event()
        self.writing = asyncio.Event()
        self.refuse = refuse

    async def append(self, message: NewMessage) -> StoredMessage:
        if message.role == "assistant" and message.status == "ok":
            self.writing.set()
            if self.refuse is not None:
                raise self.refuse
            write = asyncio.ensure_future(self._store.append(message))  # type: ignore[attr-defined]
            await self.release.wait()
            return await write
        return await self._store.append(message)  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


class MemoryHistory:
    """A HistoryStore in a list: what the turn tests need, without a database; records every write."""

    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self.writes: list[tuple[str, str, str]] = []  # ("append" | "update", content, status), in order
        self._ids = itertools.count(1)

    async def start(self) -> None:
        pass

    async def append(self, message: NewMessage) -> StoredMessage:
        stored = StoredMessage(
            next(self._ids), message.client_id, message.role, message.content, message.source, message.status,
            datetime.now(UTC), message.audio_path, message.language, message.language_probability,
            message.client_msg_id,
        )
        self.messages.append(stored)
        self.writes.append(("append", message.content, message.status))
        return stored

    async def recent(
        self, client_id: str, limit: int, *, before: int | None = None, statuses: Iterable[str] | None = None
    ) -> list[StoredMessage]:
        wanted = set(statuses) if statuses is not None else None
        mine = [
            m for m in self.messages
            if m.client_id == client_id and (wanted is None or m.status in wanted) and (before is None or m.id < before)
        ]
        return mine[-limit:] if limit else []

    async def update(self, message_id: int, content: str, status: str) -> int:
        for number, message in enumerate(self.messages):
            if message.id == message_id:
                self.messages[number] = StoredMessage(
                    message.id, message.client_id, message.role, content, message.source, status,  # type: ignore[arg-type]
                    message.created_at, message.audio_path, message.language, message.language_probability,
                    message.client_msg_id,
                )
                self.writes.append(("update", content, status))
                return 1
        return 0

    async def clear(self, client_id: str) -> Deletion:
        raise NotImplementedError

    async def audio_paths(self) -> set[str]:
        return {m.audio_path for m in self.messages if m.audio_path is not None}

    async def count(self, client_id: str) -> int:
        return sum(m.client_id == client_id for m in self.messages)

    async def summary(self, client_id: str) -> ClientSummary:
        raise NotImplementedError

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass

    def rows(self, client_id: str) -> list[tuple[str, str, str]]:
        return [(m.role, m.content, m.status) for m in self.messages if m.client_id == client_id]
