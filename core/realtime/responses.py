"""Responses: a Realtime session's turns, as the Realtime API tells them.

Each turn's events (``core.events``, as every tab of the conversation gets them) become the API's: speech start and
stop with the user's item, its transcript, then one response per reply — ``response.created``, the assistant item,
its text or audio transcript deltas, its audio as base64 24 kHz PCM16 deltas, and ``response.done`` (completed,
cancelled by a barge-in or ``response.cancel``, or failed). A client's ``conversation.item.truncate`` after a
barge-in cuts the stored reply at what it really played.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import BotError
from core.models import Source
from core.realtime.audio import encode_base64, to_pcm24k
from core.realtime.protocol import PCM_RATE, RealtimeError, new_id

if TYPE_CHECKING:
    from core.realtime.session import RealtimeSession

logger = logging.getLogger(__name__)

DELTA_BYTES = PCM_RATE * 2 // 2  # audio deltas of at most 0.5 s, as OpenAI's are short
KEEP_DONE = 32  # finished responses remembered for a late truncate


@dataclass(slots=True)
class _Response:
    turn_id: str
    response_id: str
    item_id: str
    speaks: bool
    parts: list[str] = field(default_factory=list)
    message_id: int | None = None
    text: str | None = None  # the whole reply, once written
    audio_ms: float = 0.0  # audio sent so far
    sentences: list[tuple[float, float, str]] = field(default_factory=list)  # (start ms, end ms, text) of each
    truncate_ms: int | None = None
    cancel_reason: str = "turn_detected"
    done: bool = False


class Responses:
    """Translates one session's turn events; remembers the responses under way and the last few finished."""

    def __init__(self, session: RealtimeSession) -> None:
        self._session = session
        self._user_items: dict[str, str] = {}  # turn id → the user's item heard in it
        self._by_turn: dict[str, _Response] = {}
        self._by_item: OrderedDict[str, _Response] = OrderedDict()
        self.last_item_id: str | None = None

    async def on_event(self, event: dict[str, Any], binary: bytes | None) -> None:
        kind, turn_id = event.get("type"), str(event.get("turn_id", ""))
        emit = self._session.emit
        if kind == "speech_started":
            item_id = self._user_items[turn_id] = new_id("item")
            await emit({"type": "input_audio_buffer.speech_started", "item_id": item_id,
                        "audio_start_ms": self._session.speech_start_ms})
        elif kind == "speech_stopped":
            if event.get("reason") == "echo":  # the reply heard back: no turn, and no item
                self._user_items.pop(turn_id, None)
            else:
                item_id = self._user_items.setdefault(turn_id, new_id("item"))
                await emit({"type": "input_audio_buffer.speech_stopped", "item_id": item_id,
                            "audio_end_ms": self._session.speech_end_ms})
                await emit({"type": "input_audio_buffer.committed", "item_id": item_id,
                            "previous_item_id": self.last_item_id})
                await self.user_item(item_id, audio=True)
        elif kind == "transcription":
            if turn_id in self._user_items:
                await self.transcribed(self._user_items[turn_id], str(event.get("text", "")))
        elif kind == "user_message":
            await self._start(turn_id, "text" if event.get("source") == "text" else "voice")
        elif kind == "conversation_deleted":
            await self._session.close(4404, "the conversation was deleted")
        elif (response := self._by_turn.get(turn_id)) is not None:
            await self._on_reply_event(response, kind, event, binary)
        elif kind == "error":
            await self._session.relay_error(event)

    async def _on_reply_event(self, response: _Response, kind: object, event: dict[str, Any],
                              binary: bytes | None) -> None:
        if kind == "reply_delta":
            delta = str(event.get("text", ""))
            response.parts.append(delta)
            name = "response.audio_transcript.delta" if response.speaks else "response.text.delta"
            await self._session.emit({"type": name, **self._where(response), "delta": delta})
        elif kind == "audio" and binary is not None:
            await self._audio(response, event, binary)
        elif kind == "reply":
            response.text, response.message_id = str(event.get("text", "")), _int(event.get("message_id"))
            if not response.speaks:
                await self._finish(response, "completed")
        elif kind == "audio_done":
            await self._finish(response, "completed")
        elif kind == "interrupted":
            response.text, response.message_id = str(event.get("text", "")), _int(event.get("message_id"))
            await self._finish(response, "cancelled")
        elif kind == "error":
            await self._session.relay_error(event)
            failure = str(event.get("code", ""))
            if not failure.startswith("tts-"):  # a voice failing leaves the text reply going on
                await self._finish(response, "failed", error={"type": "server_error", "code": failure})

    async def _audio(self, response: _Response, event: dict[str, Any], binary: bytes) -> None:
        try:
            pcm = await asyncio.to_thread(
                to_pcm24k, binary, str(event.get("format", "wav")), int(event.get("sample_rate", PCM_RATE))
            )
        except BotError as err:
            logger.warning("realtime %s: a sentence's audio could not be decoded: %s", self._session.client_id, err)
            await self._session.fail(err)
            return
        length_ms = len(pcm) / 2 / PCM_RATE * 1000
        response.sentences.append((response.audio_ms, response.audio_ms + length_ms, str(event.get("text", ""))))
        response.audio_ms += length_ms
        for start in range(0, len(pcm), DELTA_BYTES):
            chunk = pcm[start : start + DELTA_BYTES]
            await self._session.emit({"type": "response.audio.delta", **self._where(response),
                                      "delta": encode_base64(chunk)})

    async def _start(self, turn_id: str, source: Source) -> None:
        session = self._session
        speaks = session.bot.pipeline.speaks(session.client_id, source)  # the turn asks the same
        response = _Response(turn_id, new_id("resp"), new_id("item"), speaks)
        self._by_turn[turn_id] = response
        user_item = self._user_items.pop(turn_id, None)
        item = self._item(response, "in_progress", [])
        await session.emit({"type": "response.created", "response": {
            "id": response.response_id, "object": "realtime.response", "status": "in_progress",
            "status_details": None, "output": [], "usage": None,
            "modalities": ["text", "audio"] if speaks else ["text"],
        }})
        await session.emit({"type": "response.output_item.added", "response_id": response.response_id,
                            "output_index": 0, "item": item})
        await session.emit({"type": "conversation.item.created", "previous_item_id": user_item or self.last_item_id,
                            "item": item})
        self.last_item_id = response.item_id
        await session.emit({"type": "response.content_part.added", **self._where(response),
                            "part": _part(response, "")})

    async def _finish(self, response: _Response, status: str, *, error: dict[str, str] | None = None) -> None:
        if response.done:
            return
        response.done = True
        self._by_turn.pop(response.turn_id, None)
        self._by_item[response.item_id] = response
        while len(self._by_item) > KEEP_DONE:
            self._by_item.popitem(last=False)
        emit = self._session.emit
        text = response.text if response.text is not None else "".join(response.parts)
        where = self._where(response)
        if response.speaks:
            await emit({"type": "response.audio.done", **where})
            await emit({"type": "response.audio_transcript.done", **where, "transcript": text})
        else:
            await emit({"type": "response.text.done", **where, "text": text})
        await emit({"type": "response.content_part.done", **where, "part": _part(response, text)})
        item = self._item(response, "completed" if status == "completed" else "incomplete", [_part(response, text)])
        await emit({"type": "response.output_item.done", "response_id": response.response_id, "output_index": 0,
                    "item": item})
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": response.cancel_reason}
        elif status == "failed":
            details = {"type": "failed", "error": error}
        await emit({"type": "response.done", "response": {
            "id": response.response_id, "object": "realtime.response", "status": status,
            "status_details": details, "output": [item], "usage": None,
            "modalities": ["text", "audio"] if response.speaks else ["text"],
        }})
        if response.truncate_ms is not None:
            await self._apply_truncation(response)

    # -- what the session tells ------------------------------------------------------------------------------------

    async def user_item(self, item_id: str, *, text: str | None = None, audio: bool = False) -> None:
        content = [{"type": "input_audio", "transcript": None}] if audio else [{"type": "input_text", "text": text}]
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": content}
        await self._session.emit({"type": "conversation.item.created", "previous_item_id": self.last_item_id,
                                  "item": item})
        self.last_item_id = item_id

    async def assistant_item(self, item_id: str, text: str) -> None:
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "completed", "content": [{"type": "text", "text": text}]}
        await self._session.emit({"type": "conversation.item.created", "previous_item_id": self.last_item_id,
                                  "item": item})
        self.last_item_id = item_id

    async def transcribed(self, item_id: str, text: str) -> None:
        if self._session.config.transcription is not None:
            await self._session.emit({"type": "conversation.item.input_audio_transcription.completed",
                                      "item_id": item_id, "content_index": 0, "transcript": text})

    async def transcription_failed(self, item_id: str, err: BotError) -> None:
        if self._session.config.transcription is None:
            await self._session.fail(err)
            return
        self._session.bot.metrics.error(err.code)
        await self._session.emit({"type": "conversation.item.input_audio_transcription.failed", "item_id": item_id,
                                  "content_index": 0,
                                  "error": {"type": "transcription_error", "code": err.code, "message": err.message}})

    async def input_failed(self, turn_id: str, err: BotError) -> None:
        """A heard turn failed before its reply (no words, speech-to-text down)."""
        item_id = self._user_items.pop(turn_id, None)
        if item_id is not None:
            await self.transcription_failed(item_id, err)
        else:
            await self._session.fail(err)

    @property
    def active(self) -> bool:
        """Whether a response is under way: created, and not yet done."""
        return bool(self._by_turn)

    def cancelled_by_client(self) -> None:
        for response in self._by_turn.values():
            response.cancel_reason = "client_cancelled"

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """The client played the reply ``item_id`` only up to ``audio_end_ms``: store what was heard."""
        response = self._by_item.get(item_id) or next(
            (r for r in self._by_turn.values() if r.item_id == item_id), None
        )
        if response is None or not response.speaks:
            raise RealtimeError(f"no spoken assistant item {item_id!r} in this session", param="item_id",
                                wire_code="item_not_found")
        if audio_end_ms > response.audio_ms + 1:
            raise RealtimeError(f"audio_end_ms {audio_end_ms} is past the item's {response.audio_ms:.0f} ms of audio",
                                param="audio_end_ms")
        response.truncate_ms = audio_end_ms
        if response.done:
            await self._apply_truncation(response)
        await self._session.emit({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0,
                                  "audio_end_ms": audio_end_ms})

    async def _apply_truncation(self, response: _Response) -> None:
        assert response.truncate_ms is not None
        heard = heard_text(response.sentences, response.truncate_ms)
        full = " ".join(text for _, _, text in response.sentences)
        if response.message_id is None or heard == full:
            return
        try:
            await self._session.bot.pipeline.history.update(response.message_id, heard, "interrupted")
        except BotError as err:
            await self._session.fail(err)

    @staticmethod
    def _where(response: _Response) -> dict[str, Any]:
        return {"response_id": response.response_id, "item_id": response.item_id, "output_index": 0,
                "content_index": 0}

    @staticmethod
    def _item(response: _Response, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": response.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": status, "content": content}


def heard_text(sentences: list[tuple[float, float, str]], until_ms: float) -> str:
    """The words of ``sentences`` (start ms, end ms, text) played by ``until_ms``: whole sentences that ended by
    then, and of the sentence playing then, its share of words by time (speech runs at a roughly even pace)."""
    heard: list[str] = []
    for start, end, text in sentences:
        if end <= until_ms:
            heard.append(text)
        elif start < until_ms:
            words = text.split()
            share = (until_ms - start) / (end - start) if end > start else 0.0
            heard.append(" ".join(words[: int(len(words) * share)]))
            break
        else:
            break
    return " ".join(part for part in heard if part).strip()


def _part(response: _Response, text: str) -> dict[str, Any]:
    return {"type": "audio", "transcript": text} if response.speaks else {"type": "text", "text": text}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
