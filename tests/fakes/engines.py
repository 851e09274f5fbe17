"""Scripted fakes of the engine Protocols (no inheritance): they answer as told and record what they were asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from core.models import AudioChunk, AudioClip, ChatMessage, EngineInfo, NewMessage, StoredMessage, Transcript


class ScriptedLLM:
    """Streams fixed chunks, optionally after a gate opens; records the contexts and how many ran at once."""

    def __init__(self, chunks: list[str], gate: asyncio.Event | None = None) -> None:
        self.chunks = chunks
        self.gate = gate
        self.contexts: list[list[ChatMessage]] = []
        self.running = 0
        self.most = 0

    def info(self) -> EngineInfo:
        return EngineInfo("scripted", "fake", True)

    async def stream_reply(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        self.contexts.append(list(messages))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            for chunk in self.chunks:
                yield chunk
        finally:
            self.running -= 1

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


class GatedTTS:
    """'Speaks' each sentence as its UTF-8 bytes once ``gate`` is open, each said to play for ``duration_s``;
    records the sentences."""

    def __init__(self, gate: asyncio.Event | None = None, duration_s: float | None = None) -> None:
        self.gate = gate
        self.duration_s = duration_s
        self.sentences: list[str] = []
        self.languages: list[str | None] = []  # the language each sentence was asked in
        self.closed = 0

    def info(self) -> EngineInfo:
        return EngineInfo("gated", "fake", True)

    async def synthesize(self, text: str, *, language: str | None = None) -> AsyncIterator[AudioChunk]:
        self.sentences.append(text)
        self.languages.append(language)
        if self.gate is not None:
            await self.gate.wait()
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
