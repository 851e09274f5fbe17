"""RealtimeSession: one ``/v1/realtime`` socket on the page's own turn machinery.

Client events go to the same parts a browser tab uses: appended audio to a ``LiveListener`` (VAD, the end-of-turn
model, barge-in, early transcription), typed items and ``response.create`` to the pipeline as turns. The turns'
events come back through the hub, as to any tab of the conversation, and ``core.realtime.responses`` translates them
into the Realtime API's. The session is a conversation of its user like any other: stored, listed, searchable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from core.errors import BotError, STTError
from core.interfaces import EventSink
from core.openai_api.errors import InvalidRequest
from core.openai_api.speech import VoiceNames
from core.pipeline import TurnResult
from core.realtime.audio import decode_base64_pcm
from core.realtime.items import Items
from core.realtime.protocol import (
    EAGERNESS_THRESHOLD,
    PCM_RATE,
    Dialect,
    RealtimeConfig,
    RealtimeError,
    error_event,
    for_dialect,
    new_id,
)
from core.realtime.responses import Responses
from core.services import Bot
from core.voice.endpointing import Endpointer
from core.voice.listener import LiveListener
from core.voice.vad import VoiceActivityDetector

logger = logging.getLogger(__name__)

# How much appended audio is checked against the user's audio allowance at a time.
AUDIO_CHECK_S = 10.0
MAX_EVENT_CHARS = 16 * 1024 * 1024  # an append of ~8 MB of PCM in base64; OpenAI's own limit is 15 MB


class SessionLimits(Protocol):
    """What a session may spend (the adapter's socket guard): the caller's message and audio allowances, and their
    conversation, made again if it was deleted while the session stayed open."""

    async def reopen(self, client_id: str) -> None: ...

    async def count_message(self) -> None: ...

    async def check_audio(self) -> None: ...

    async def spend_audio(self, seconds: float) -> None: ...


class RealtimeSession:
    """One Realtime client; it is also the hub's sink for its conversation (``send``/``close``)."""

    def __init__(
        self, bot: Bot, client_id: str, out: EventSink, limits: SessionLimits, *, dialect: Dialect, model: str
    ) -> None:
        self.bot = bot
        self.client_id = client_id
        self._out = out
        self.limits = limits
        self.dialect = dialect
        self.config = RealtimeConfig(model=model)
        self._listener: LiveListener | None = None
        self._buffer = bytearray()  # audio appended since the last commit, without turn detection
        self._fed_s = 0.0
        self._checked_until_s = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        self.responses = Responses(self)
        self.items = Items(self)
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Announce the session, and take the conversation's events."""
        self._apply_preferences()
        await self.emit({"type": "session.created", "session": self._wire()})
        self.bot.hub.attach(self.client_id, self)

    async def aclose(self) -> None:
        """The socket is gone: speech in progress is still answered (it was heard), typed items never answered are
        kept as messages, and the conversation's preferences are dropped."""
        self._closed = True
        self.bot.hub.detach(self.client_id, self)
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(BotError):
                await listener.stop()
        await self.items.store_unanswered()
        for task in list(self._tasks):
            task.cancel()
        self.bot.pipeline.forget(self.client_id)

    # -- the hub's sink ------------------------------------------------------------------------------------------

    async def send(self, event: dict[str, object], binary: bytes | None = None) -> None:
        await self.responses.on_event(event, binary)

    async def close(self, code: int, reason: str) -> None:
        await self._out.close(code, reason)

    async def emit(self, event: dict[str, Any]) -> None:
        """Send one Realtime event in the client's dialect, with a fresh ``event_id``."""
        wire = for_dialect({"event_id": new_id("event"), **event}, self.dialect)
        async with self._send_lock:
            await self._out.send(wire)

    async def fail(self, err: BotError, *, event_id: str | None = None) -> None:
        """Tell the client of a failure as an ``error`` event (the socket stays open)."""
        self.bot.metrics.error(err.code)
        if isinstance(err, RealtimeError):
            code, kind, param = err.wire_code, "invalid_request_error", err.param
        else:
            code, kind, param = err.code, "server_error", None
        with contextlib.suppress(Exception):
            await self.emit(error_event(code, err.message, kind=kind, param=param, event_id=event_id))

    async def relay_error(self, event: dict[str, Any]) -> None:
        """A turn's ``error`` event (already counted and logged where it arose) as Realtime's ``error``."""
        code, message = event.get("code"), event.get("message")
        with contextlib.suppress(Exception):
            await self.emit(error_event(str(code), str(message), kind="server_error"))

    # -- client events ------------------------------------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> None:
        """Handle one client event; a bad one is answered with an ``error`` event naming it."""
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        kind = event.get("type")
        handler = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self.items.create,
            "conversation.item.truncate": self._truncate,
            "response.create": self.items.respond,
            "response.cancel": self._response_cancel,
        }.get(kind if isinstance(kind, str) else "")
        try:
            if handler is None:
                unknown = f"unknown or unsupported event type {kind!r}"
                raise RealtimeError(unknown, wire_code="invalid_event", param="type")
            await handler(event)
        except BotError as err:
            logger.info("realtime %s: %s refused: %s", self.client_id, kind, err.code)
            await self.fail(err, event_id=event_id)

    async def _session_update(self, event: dict[str, Any]) -> None:
        before = self.config.turn_detection
        config = self.config.update(event.get("session"), self.dialect)
        language = (config.transcription or {}).get("language")
        if language and not self.bot.transcriber.knows_language(language):
            raise RealtimeError(
                f"the speech model knows no language {language!r} (ISO-639-1)",
                param="session.input_audio_transcription.language",
            )
        if config.voice != self.config.voice and self.bot.tts is not None:
            try:
                VoiceNames(self.bot.tts, self.bot.settings.tts.voices).language(config.voice)
            except InvalidRequest as err:
                where = "session.voice" if self.dialect == "beta" else "session.audio.output.voice"
                raise RealtimeError(err.message, param=where) from err
        self.config = config
        self._apply_preferences()
        if self.config.turn_detection != before and self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.cancel()
        await self.emit({"type": "session.updated", "session": self._wire()})

    def _wire(self) -> dict[str, Any]:
        """The session as the API shows it, and (web-bot's own field) the conversation it is stored as, which
        ``?conversation=`` goes on with."""
        return {**self.config.to_wire(self.dialect), "conversation": self.client_id}

    def _apply_preferences(self) -> None:
        pipeline = self.bot.pipeline
        pipeline.set_voice_replies(self.client_id, self.config.speaks)
        pipeline.set_instructions(self.client_id, self.config.instructions)
        language = (self.config.transcription or {}).get("language")
        pipeline.set_language(self.client_id, language or None)

    async def _append(self, event: dict[str, Any]) -> None:
        pcm = decode_base64_pcm(event.get("audio"))
        if not pcm:
            return
        if self.bot.stt is None or self.bot.vad_model is None:
            raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
        self._fed_s += len(pcm) / 2 / PCM_RATE
        if self._fed_s >= self._checked_until_s:
            await self.limits.check_audio()
            await self.limits.reopen(self.client_id)
            self._checked_until_s = self._fed_s + AUDIO_CHECK_S
        if self.config.turn_detection is None:
            if (len(self._buffer) + len(pcm)) / 2 / PCM_RATE > self.bot.settings.audio.max_duration_s:
                raise RealtimeError("the input audio buffer is full: commit it first", wire_code="buffer_too_large")
            self._buffer += pcm
            return
        if self._listener is None:
            self._listener = self._new_listener()
        await self._listener.feed(pcm)

    def _new_listener(self) -> LiveListener:
        bot = self.bot
        assert bot.vad_model is not None and bot.endpointer is not None
        detection = self.config.turn_detection or {}
        vad = bot.settings.vad
        if detection.get("type") == "server_vad":
            silence = int(detection["silence_duration_ms"])
            endpointer = Endpointer(None, silence_ms=silence, max_silence_ms=silence)
            threshold, padding = float(detection["threshold"]), int(detection["prefix_padding_ms"])
        else:
            endpointer = bot.endpointer
            if detection.get("eagerness") in EAGERNESS_THRESHOLD and endpointer.model is not None:
                # "high": answer as soon as the model says the turn is over, unconfirmed.
                eagerness = detection["eagerness"]
                endpointer = endpointer.with_threshold(EAGERNESS_THRESHOLD[eagerness], confirm=eagerness != "high")
            threshold, padding = vad.threshold, vad.prefix_padding_ms
        detector = VoiceActivityDetector(
            bot.vad_model, threshold=threshold, silence_ms=endpointer.max_silence_ms, prefix_padding_ms=padding,
            min_speech_ms=vad.min_speech_ms, max_utterance_s=vad.max_utterance_s,
        )
        return LiveListener(
            bot.pipeline, bot.hub, self.client_id, detector, PCM_RATE, endpointer=endpointer,
            on_turn=lambda future, turn_id: self.spawn(self._heard(future, turn_id)),
            early_transcription_ms=vad.early_transcription_ms, interrupt_min_ms=vad.interrupt_min_ms,
        )

    async def _heard(self, future: asyncio.Future[TurnResult], turn_id: str) -> None:
        """A turn the listener heard: its audio is spent; a failure before its reply (no words) is told."""
        try:
            result = await future
            await self.limits.spend_audio(result.timings.get("audio_s", 0.0))
        except BotError as err:
            await self.responses.input_failed(turn_id, err)
        except asyncio.CancelledError:
            pass

    @property
    def speech_start_ms(self) -> int:
        return self._listener.speech_start_ms if self._listener is not None else 0

    @property
    def speech_end_ms(self) -> int:
        return self._listener.speech_end_ms if self._listener is not None else 0

    async def _commit(self, event: dict[str, Any]) -> None:
        if self.config.turn_detection is not None:
            raise RealtimeError("with turn detection on, the server commits the audio itself",
                                wire_code="invalid_event")
        if len(self._buffer) < PCM_RATE // 10 * 2:  # OpenAI's own minimum: 100 ms
            raise RealtimeError("the input audio buffer holds less than 100 ms of audio",
                                wire_code="input_audio_buffer_commit_empty")
        pcm, self._buffer = bytes(self._buffer), bytearray()
        item_id = new_id("item")
        previous = self.responses.last_item_id
        await self.emit({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        await self.items.add_audio(item_id, pcm)

    async def _clear(self, event: dict[str, Any]) -> None:
        self._buffer = bytearray()
        if self._listener is not None:
            await self._listener.cancel()
        await self.emit({"type": "input_audio_buffer.cleared"})

    async def _truncate(self, event: dict[str, Any]) -> None:
        item_id, audio_end_ms = event.get("item_id"), event.get("audio_end_ms")
        if not isinstance(item_id, str) or isinstance(audio_end_ms, bool) or not isinstance(audio_end_ms, int) \
                or audio_end_ms < 0:
            raise RealtimeError("truncate needs item_id and audio_end_ms (a whole number of ms)", param="item_id")
        await self.responses.truncate(item_id, audio_end_ms)

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        if not self.bot.pipeline.cancel_turn(self.client_id):
            raise RealtimeError("no response is in progress", wire_code="response_cancel_not_active")
        self.responses.cancelled_by_client()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
