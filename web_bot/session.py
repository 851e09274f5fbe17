"""SocketSession: one browser tab's WebSocket — parse each frame, call core, report failures to that tab."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from core.errors import BotError, CommandError, ProtocolError, STTError
from core.events import ErrorEvent
from core.outlet import new_turn_id
from core.pipeline import TurnRequest, TurnResult
from core.services import Bot
from core.tts.voices import language_code
from core.voice.listener import LiveListener
from web_bot.connections import WebSocketSink
from web_bot.guard import SocketGuard, error_event
from web_bot.protocol import (
    AudioCancelIn,
    AudioStartIn,
    AudioStopIn,
    ConfigIn,
    PingIn,
    check_chat_text,
    parse_text_frame,
)
from web_bot.uploads import too_large

logger = logging.getLogger(__name__)


class SocketSession:
    """Handles frames without waiting for turns, so the socket keeps receiving (and can interrupt) meanwhile."""

    def __init__(self, bot: Bot, client_id: str, sink: WebSocketSink, guard: SocketGuard) -> None:
        self._bot = bot
        self._guard = guard
        self._client_id = client_id
        self._sink = sink
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: LiveListener | None = None
        # After a refused audio_start, the PCM chunks that follow are dropped (not taken as whole recordings).
        self._refused_stream = False

    async def on_text(self, frame: str) -> None:
        try:
            message = parse_text_frame(frame)
            if isinstance(message, PingIn):
                await self._sink.send({"type": "pong"})
            elif isinstance(message, ConfigIn):
                await self._configure(message)
            elif isinstance(message, AudioStartIn):
                await self._guard.check_audio()
                await self._guard.reopen(self._client_id)
                await self.close()  # a stream already open ends first, as audio_stop ends it: nothing heard is lost
                self._start_live(message)
                await self._sink.send({"type": "audio_started", "sample_rate": message.sample_rate})
            elif isinstance(message, AudioStopIn):
                await self._stop_live()
            elif isinstance(message, AudioCancelIn):
                await self._stop_live(cancel=True)
            else:
                text = check_chat_text(message.text, self._bot.settings.server.max_message_chars)
                await self._guard.count_message()
                if text.startswith("/"):
                    self._spawn(self._command(text))
                else:
                    await self._guard.reopen(self._client_id)
                    turn = TurnRequest(self._client_id, text, "text", client_msg_id=message.client_msg_id)
                    self._bot.pipeline.submit(turn)
        except (ProtocolError, BotError) as err:
            logger.info("rejected a frame from %s: %s", self._client_id, err.code)
            await self.send_error(err)

    async def on_binary(self, data: bytes) -> None:
        """Live audio while a stream is open; otherwise one whole utterance in any accepted container."""
        if self._live is not None:
            await self._live.feed(data)
            return
        if self._refused_stream:
            return
        limit = int(self._bot.settings.audio.max_upload_mb * 1_000_000)
        if len(data) > limit:
            await self.send_error(too_large(limit))
        elif not data:
            await self.send_error(ProtocolError("the audio frame is empty", code="empty-audio"))
        else:
            try:
                await self._guard.check_audio()
                await self._guard.reopen(self._client_id)
            except BotError as err:
                await self.send_error(err)
                return
            turn_id = new_turn_id()
            self._spawn(self._report(self._bot.pipeline.submit_audio(self._client_id, data, "voice", turn_id), turn_id))

    async def close(self) -> None:
        """The stream ended (audio_stop, or the socket is gone): an utterance in progress is still answered (it was
        accepted); pushing to talk, a release with no speech at all is told as ``no-speech``."""
        if self._live is not None:
            live, self._live = self._live, None
            if not await live.stop() and live.push_to_talk:
                await self.send_error(STTError("no speech was heard while the button was held", code="no-speech"))

    async def send_error(self, err: BotError) -> None:
        self._bot.metrics.error(err.code)
        with contextlib.suppress(Exception):
            await self._sink.send(error_event(err))

    async def _configure(self, message: ConfigIn) -> None:
        language = self._client_language(message.language)  # first: a refused message changes nothing
        if message.voice_replies is not None:
            self._bot.pipeline.set_voice_replies(self._client_id, message.voice_replies)
        if message.language is not None:
            self._bot.pipeline.set_language(self._client_id, language)
        if message.locale is not None:
            self._bot.pipeline.set_locale(self._client_id, message.locale or None)
        await self._sink.send({"type": "config", **self._bot.client_settings(self._client_id)})

    def _client_language(self, tag: str | None) -> str | None:
        """The language a config message fixes, as the engines name it (``RU``, ``ru-RU`` -> ``ru``; "" -> None).
        One speech-to-text does not know is ``bad-message``, by the check /v1's transcriptions make: it was
        echoed back as fixed, and every utterance was then silently detected instead."""
        if not tag:
            return None
        if not self._bot.transcriber.knows_language(tag):
            raise ProtocolError(f"language: the speech model knows no language {tag!r}", code="bad-message")
        return language_code(tag)

    def _start_live(self, message: AudioStartIn) -> None:
        if self._bot.vad_model is None or self._bot.endpointer is None or self._bot.stt is None:
            self._refused_stream = True
            raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
        self._refused_stream = False
        push_to_talk = message.mode == "push_to_talk"
        self._live = LiveListener(
            self._bot.pipeline, self._bot.hub, self._client_id, self._bot.new_vad(push_to_talk=push_to_talk),
            message.sample_rate,
            endpointer=self._bot.endpointer,
            on_turn=lambda future, turn_id: self._spawn(self._report(future, turn_id)),
            early_transcription_ms=self._bot.settings.vad.early_transcription_ms,
            interrupt_min_ms=self._bot.settings.vad.interrupt_min_ms,
            push_to_talk=push_to_talk,
        )
        logger.info("live audio from %s at %d Hz", self._client_id, message.sample_rate)

    async def _stop_live(self, *, cancel: bool = False) -> None:
        if self._live is None:
            if self._refused_stream:
                self._refused_stream = False
                return
            raise ProtocolError("no audio stream is open; send audio_start first", code="bad-message")
        if cancel:
            live, self._live = self._live, None
            await live.cancel()
        else:
            await self.close()

    async def _command(self, line: str) -> None:
        try:
            privileged = self._guard.auth.sees_everything(self._guard.principal)
            result = await self._bot.commands.run(self._client_id, line, privileged=privileged)
        except CommandError as err:
            await self.send_error(err)
            return
        except BotError as err:
            logger.warning("command %s from %s failed: %s", line.split()[0], self._client_id, err)
            await self.send_error(err)
            return
        await self._sink.send(result.to_dict())

    async def _report(self, future: asyncio.Future[TurnResult], turn_id: str) -> None:
        """Failures before a turn starts (no speech, not audio) go to the socket that sent the audio."""
        try:
            result = await future
            await self._guard.spend_audio(result.timings.get("audio_s", 0.0))
        except BotError as err:
            logger.info("audio from %s rejected: %s (%s)", self._client_id, err.code, err.__cause__ or err.message)
            with contextlib.suppress(Exception):
                await self._sink.send({**ErrorEvent(err.code, err.message).to_dict(), "turn_id": turn_id})
        except asyncio.CancelledError:
            pass

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
