"""Items: a Realtime session's conversation items waiting for ``response.create``.

Typed user messages, and audio committed by the client (``input_audio_buffer.commit`` without turn detection, or an
``input_audio`` item), wait here; committed audio is heard (transcribed and kept) at once, so its transcript is told
before the response is asked for. ``response.create`` answers them all as one turn of the pipeline. Items never
answered are stored when the session ends: nothing the user sent is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.audio import clip_from_pcm16
from core.errors import BotError, STTError
from core.models import AudioClip, NewMessage
from core.pipeline import TurnRequest
from core.realtime.audio import decode_base64_pcm
from core.realtime.protocol import PCM_RATE, RealtimeError, input_modalities, new_id

if TYPE_CHECKING:
    from core.realtime.session import RealtimeSession


@dataclass(slots=True)
class _Pending:
    """A user item waiting for ``response.create``: typed text, or committed audio being (or already) heard."""

    item_id: str
    text: str | None = None
    heard: asyncio.Future[TurnRequest] | None = None
    timings: dict[str, float] = field(default_factory=dict)


class Items:
    """The items of one session that no response has answered yet."""

    def __init__(self, session: RealtimeSession) -> None:
        self._session = session
        self._pending: list[_Pending] = []

    async def add_audio(self, item_id: str, pcm: bytes) -> None:
        await self._session.responses.user_item(item_id, audio=True)
        heard = asyncio.ensure_future(self._hear(item_id, pcm))
        self._pending.append(_Pending(item_id, heard=heard))

    async def _hear(self, item_id: str, pcm: bytes) -> TurnRequest:
        """Transcribe and keep one committed utterance; its transcript is told as soon as it is known."""
        transcriber = self._session.bot.transcriber
        start = time.perf_counter()
        clip: AudioClip = await asyncio.to_thread(clip_from_pcm16, pcm, PCM_RATE)
        language = self._session.bot.pipeline.language(self._session.client_id)
        try:
            heard = await transcriber.hear_clip(clip, None, language)
        except BotError as err:
            await self._session.responses.transcription_failed(item_id, err)
            raise
        await self._session.limits.spend_audio(clip.duration_s)
        text = heard.transcript.text
        await self._session.responses.transcribed(item_id, text)
        return TurnRequest(
            self._session.client_id, text, "voice", heard.audio_path, heard.timings, start,
            heard.transcript.language, heard.transcript.language_probability,
        )

    async def create(self, event: dict[str, Any]) -> None:
        """``conversation.item.create``: a user message waits for ``response.create``; an assistant one is stored."""
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            raise RealtimeError("only message items are supported", param="item.type", wire_code="unsupported")
        role = item.get("role")
        content = item.get("content")
        if role not in ("user", "assistant") or not isinstance(content, list) or not content:
            raise RealtimeError("a message item needs role user or assistant and a content list", param="item")
        given = item.get("id")
        item_id = given if isinstance(given, str) and 0 < len(given) <= 64 else new_id("item")
        texts: list[str] = []
        audio = b""
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "text", "output_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "input_audio" and role == "user":
                audio += decode_base64_pcm(part.get("audio"), "item.content.audio")
            else:
                raise RealtimeError(f"content part {kind!r} is not supported here", param="item.content")
        text = "\n".join(t for t in texts if t.strip()).strip()
        await self._session.limits.count_message()
        await self._session.limits.reopen(self._session.client_id)
        if role == "assistant":
            await self._store_assistant(item_id, text)
        elif audio:
            if self._session.bot.stt is None:
                raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
            await self.add_audio(item_id, audio)
        elif text:
            limit = self._session.bot.settings.server.max_message_chars
            if len(text) > limit:
                raise RealtimeError(f"the text is longer than {limit} characters", param="item.content")
            await self._session.responses.user_item(item_id, text=text)
            self._pending.append(_Pending(item_id, text=text))
        else:
            raise RealtimeError("the message holds no text", param="item.content")

    async def _store_assistant(self, item_id: str, text: str) -> None:
        """An assistant message the client adds as context: stored in the conversation's order."""
        if not text:
            raise RealtimeError("the message holds no text", param="item.content")
        history = self._session.bot.pipeline.history
        message = NewMessage(self._session.client_id, "assistant", text, "text")
        await self._session.bot.pipeline.in_lane(self._session.client_id, lambda: history.append(message))
        await self._session.responses.assistant_item(item_id, text)

    async def respond(self, event: dict[str, Any]) -> None:
        """``response.create``: answer the items added since the last response, as one turn."""
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise RealtimeError("response must be an object", param="response")
        modalities = options.get("output_modalities", options.get("modalities"))
        speaks = self._session.config.speaks if modalities is None else "audio" in input_modalities(modalities)
        if self._session.responses.active:
            raise RealtimeError("a response is in progress: wait for its response.done, or send response.cancel",
                                wire_code="conversation_already_has_active_response")
        pending, self._pending = self._pending, []
        if not pending:
            raise RealtimeError("there is nothing to answer: add a user item first (conversation.item.create, or "
                                "input_audio_buffer.commit)", wire_code="conversation_empty")
        self._session.spawn(self._answer(pending, speaks, event.get("event_id")))

    async def _answer(self, pending: list[_Pending], speaks: bool, event_id: object) -> None:
        """Answer the pending items as one turn, once their audio is heard."""
        texts: list[str] = []
        heard: TurnRequest | None = None
        for item in pending:
            if item.heard is not None:
                try:
                    request = await item.heard
                except BotError:
                    continue  # told as that item's transcription failure
                heard = heard or request
                texts.append(request.text)
            elif item.text:
                texts.append(item.text)
        if not texts:
            await self._session.fail(STTError("no words were heard in the committed audio", code="no-speech"),
                            event_id=event_id if isinstance(event_id, str) else None)
            return
        text = "\n".join(texts)
        if heard is not None:
            request = TurnRequest(self._session.client_id, text, "voice", heard.audio_path, heard.timings, heard.origin,
                                  heard.language, heard.language_probability)
        else:
            request = TurnRequest(self._session.client_id, text, "text", origin=time.perf_counter())
        self._session.bot.pipeline.set_voice_replies(self._session.client_id, speaks)
        future = self._session.bot.pipeline.submit(request)
        with contextlib.suppress(BotError, asyncio.CancelledError):
            await future
        self._session.bot.pipeline.set_voice_replies(self._session.client_id, self._session.config.speaks)

    async def store_unanswered(self) -> None:
        """Typed items never answered are kept, so nothing the user sent is lost; heard ones are in their turns'
        recordings' place only if answered, so their transcripts are kept likewise."""
        pending, self._pending = self._pending, []
        history = self._session.bot.pipeline.history
        for item in pending:
            text = item.text
            if item.heard is not None:
                with contextlib.suppress(BotError, asyncio.CancelledError):
                    request = await item.heard
                    message = NewMessage(request.client_id, "user", request.text, "voice", "ok", request.audio_path,
                                         request.language, request.language_probability)
                    await history.append(message)
                continue
            if text:
                with contextlib.suppress(BotError):
                    await history.append(NewMessage(self._session.client_id, "user", text, "text"))
