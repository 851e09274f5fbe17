"""ChatPipeline: one turn in (text, or speech once transcribed), one streamed reply out — written, spoken, stored.

Each client has a lane (``core.lanes``): its turns run one after another, in order, while other clients' lanes run
alongside. A new message or the user starting to speak while a reply is being written or spoken interrupts that
reply (barge-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from core.config import VoiceReplies
from core.errors import BotError, LLMError, STTError
from core.events import (
    AudioDone,
    ErrorEvent,
    Interrupted,
    Reply,
    ReplyDelta,
    ReplyPaused,
    ReplyResumed,
    TranscriptionEvent,
    UserMessage,
)
from core.hub import Hub
from core.interfaces import HistoryStore, LLMEngine, TTSEngine
from core.lanes import Lanes
from core.language import TextLanguage, language_name
from core.metrics import Metrics
from core.models import AudioClip, ChatMessage, NewMessage, Source, Status, StoredMessage, Transcript
from core.outlet import TurnOutlet, new_turn_id
from core.prefetch import ReplyPrefetch
from core.speaking import Speaker
from core.transcription import Heard, Transcriber

logger = logging.getLogger(__name__)

T = TypeVar("T")
CONTEXT_STATUSES = ("ok", "interrupted")
# How long after a spoken reply has played out its tail may still come back through the microphone (the page's
# playback lags the server's clock by its network and decoding delay).
ECHO_TAIL_S = 0.5
# Appended to the system prompt when the turn's language is known, so the model answers in the user's language.
ANSWER_IN = "Always answer in {language}."


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """A user's message, ready for the LLM; ``origin`` is when the user finished (speaking or typing)."""

    client_id: str
    text: str
    source: Source = "text"
    audio_path: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    origin: float = field(default_factory=time.perf_counter)
    prefetch: ReplyPrefetch | None = None  # a reply started before the end of speech was certain
    language: str | None = None  # what speech-to-text heard (or the client fixed); None: judged from the text
    language_probability: float | None = None
    turn_id: str = field(default_factory=new_turn_id)  # every event of the turn carries it
    client_msg_id: str | None = None  # the id the client sent its message with, echoed in user_message


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What became of a turn."""

    user_message_id: int
    user_text: str
    reply: str
    message_id: int | None
    status: Status
    timings: dict[str, float]
    error: BotError | None = None


def elapsed_ms(start: float, end: float | None = None) -> float:
    return round(((end or time.perf_counter()) - start) * 1000, 1)


class ChatPipeline:
    """Runs turns: stores the user's message, streams the reply to every tab (and speaks it), stores the reply."""

    def __init__(
        self,
        *,
        llm: LLMEngine,
        history: HistoryStore,
        hub: Hub,
        system_prompt: str,
        history_messages: int,
        delta_interval_ms: float = 0.0,
        transcriber: Transcriber | None = None,
        tts: TTSEngine | None = None,
        voice_replies: VoiceReplies = "auto",
        barge_in: bool = True,
        preemptive: bool = True,
        metrics: Metrics | None = None,
        text_language: TextLanguage | None = None,
    ) -> None:
        self._llm = llm
        self._history = history
        self._hub = hub
        self._system_prompt = system_prompt
        self._history_messages = history_messages
        self._delta_interval = delta_interval_ms / 1000
        self.transcriber = transcriber
        self._tts = tts
        self._voice_default = voice_replies
        self._voice: dict[str, bool] = {}
        self._languages: dict[str, str] = {}  # a client's fixed language (its speech is not detected)
        self._locales: dict[str, str] = {}  # the language a client's page is shown in
        self.barge_in_enabled = barge_in
        self._preemptive = preemptive
        self._metrics = metrics
        self._text_language = text_language
        self._lanes = Lanes()
        self._voices: dict[str, tuple[Speaker, TurnOutlet]] = {}  # each client's reply being spoken, if any
        self._spoke: dict[str, tuple[str, float]] = {}  # each client's last spoken reply, and when it ended
        self.llm_healthy = True

    @property
    def busy_clients(self) -> int:
        return len(self._lanes)

    # -- preferences ------------------------------------------------------------------------------------------

    def voice_replies(self, client_id: str) -> bool | Literal["auto"]:
        """Whether this client's replies are spoken: its own choice, else the configured default, where ``auto``
        means the replies to speech and not those to typing."""
        if self._tts is None:
            return False
        choice = self._voice.get(client_id)
        if choice is not None:
            return choice
        return "auto" if self._voice_default == "auto" else self._voice_default == "always"

    def speaks(self, client_id: str, source: Source) -> bool:
        """Whether the reply to a turn from ``source`` is spoken."""
        mode = self.voice_replies(client_id)
        return mode is True or (mode == "auto" and source != "text")

    def set_voice_replies(self, client_id: str, on: bool) -> None:
        self._voice[client_id] = on

    def language(self, client_id: str) -> str | None:
        """The language this client fixed, if any (otherwise each utterance's language is detected)."""
        return self._languages.get(client_id)

    def locale(self, client_id: str) -> str | None:
        """The language this client's page is shown in (the server answers commands in it), else its fixed
        speech language, else None (English)."""
        return self._locales.get(client_id) or self.language(client_id)

    def set_locale(self, client_id: str, locale: str | None) -> None:
        if locale:
            self._locales[client_id] = locale
        else:
            self._locales.pop(client_id, None)

    def set_language(self, client_id: str, language: str | None) -> None:
        if language:
            self._languages[client_id] = language
        else:
            self._languages.pop(client_id, None)

    # -- entry points -----------------------------------------------------------------------------------------

    def submit(self, request: TurnRequest) -> asyncio.Future[TurnResult]:
        """Queue a turn behind the client's earlier ones; the future resolves when the reply is stored."""
        self.barge_in(request.client_id)
        return self.in_lane(request.client_id, lambda: self._run_turn(request))

    def submit_audio(
        self, client_id: str, data: bytes, source: Source, turn_id: str | None = None
    ) -> asyncio.Future[TurnResult]:
        """Queue an utterance in any container: transcribe it, show the transcription, then answer it.

        Failures before the turn (not audio, no speech, STT down) raise a BotError from the future.
        """
        self.barge_in(client_id)
        origin = time.perf_counter()
        outlet = TurnOutlet(self._hub, client_id, turn_id or new_turn_id())
        return self.in_lane(client_id, lambda: self._hear_and_answer(outlet, source, origin, data=data))

    def submit_pcm(
        self,
        client_id: str,
        pcm: bytes,
        origin: float,
        early: asyncio.Future[Transcript] | None = None,
        prefetch: asyncio.Future[ReplyPrefetch | None] | None = None,
        turn_id: str | None = None,
    ) -> asyncio.Future[TurnResult]:
        """Queue an utterance cut from a live 16 kHz PCM stream; ``origin`` is when the speech ended, ``early``
        its transcription and ``prefetch`` its reply, if they were started before the end of speech was certain."""
        clip = AudioClip(pcm, 16000)
        outlet = TurnOutlet(self._hub, client_id, turn_id or new_turn_id())
        return self.in_lane(
            client_id,
            lambda: self._hear_and_answer(outlet, "voice", origin, clip=clip, early=early, prefetch=prefetch),
        )

    async def prefetch(
        self, client_id: str, text: str, language: str | None = None, turn_id: str | None = None
    ) -> ReplyPrefetch | None:
        """Start the reply to ``text`` (heard in ``language``) ahead of its turn, if the client has nothing else
        under way (its context could change first); the turn takes it only if its context is still the same."""
        text = text.strip()
        if not self._preemptive or not text or client_id in self._lanes:
            return None
        recent = await self._history.recent(client_id, self._history_messages, statuses=CONTEXT_STATUSES)
        language = self._turn_language(client_id, text, language)
        logger.debug("reply to %s started before the end of speech", client_id)
        outlet = TurnOutlet(self._hub, client_id, turn_id or new_turn_id())
        speaker = self._speaker(outlet, "voice", time.perf_counter(), language, held=True)
        return ReplyPrefetch(self._llm, self._context(recent, text, language), speaker)

    def speaking(self, client_id: str) -> bool:
        """Whether a reply to this client is being spoken (its speech may come back through the microphone)."""
        return client_id in self._voices

    def may_hear_itself(self, client_id: str) -> bool:
        """Whether speech from this client's microphone may be the bot's own: a reply is being spoken, or one ended
        less than ``ECHO_TAIL_S`` ago."""
        return self.speaking(client_id) or bool(self.reply_text(client_id))

    def reply_text(self, client_id: str) -> str:
        """The text of the reply being spoken to this client as far as it was written, or of one that ended less
        than ``ECHO_TAIL_S`` ago; "" if none."""
        voice = self._voices.get(client_id)
        if voice is not None:
            return voice[0].text
        text, ended = self._spoke.get(client_id, ("", 0.0))
        return text if time.monotonic() - ended < ECHO_TAIL_S else ""

    async def pause_reply(self, client_id: str) -> bool:
        """Hold the reply being spoken (the user may be interrupting) and tell the tabs to stop playing it; whether
        there was one (and barge-in is on)."""
        voice = self._voices.get(client_id)
        if voice is None or not self.barge_in_enabled:
            return False
        voice[0].hold()
        await voice[1].send(ReplyPaused())
        return True

    async def resume_reply(self, client_id: str) -> None:
        """It was no interruption: the held reply plays on."""
        voice = self._voices.get(client_id)
        if voice is not None:
            voice[0].resume()
            await voice[1].send(ReplyResumed())

    def barge_in(self, client_id: str) -> bool:
        """Interrupt the reply this client's lane is writing or speaking, if barge-in is on."""
        return self.barge_in_enabled and self._lanes.interrupt(client_id)

    def in_lane(self, client_id: str, job: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``job`` in the client's lane, after everything queued before it."""
        return self._lanes.run(client_id, job)

    async def aclose(self) -> None:
        """Finish queued work (bounded by the caller's shutdown timeout)."""
        await self._lanes.aclose()

    # -- turns ------------------------------------------------------------------------------------------------

    async def _hear_and_answer(
        self,
        outlet: TurnOutlet,
        source: Source,
        origin: float,
        *,
        data: bytes | None = None,
        clip: AudioClip | None = None,
        early: asyncio.Future[Transcript] | None = None,
        prefetch: asyncio.Future[ReplyPrefetch | None] | None = None,
    ) -> TurnResult:
        client_id = outlet.client_id
        ahead = await _settled(prefetch)
        try:
            if self.transcriber is None:
                raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
            fixed = self.language(client_id)
            if data is not None:
                heard: Heard = await self.transcriber.hear(data, fixed)
            else:
                heard = await self.transcriber.hear_clip(clip, early, fixed)
        except BaseException as err:
            if ahead is not None:
                ahead.discard()
            if isinstance(err, BotError):
                self._count_error(err.code)
            raise
        transcript = heard.transcript
        text = transcript.text.strip()
        language, probability = transcript.language, transcript.language_probability
        await outlet.send(TranscriptionEvent(text, heard.timings, source, language, probability))
        logger.info("heard client=%s source=%s language=%s timings=%s", client_id, source, language, heard.timings)
        request = TurnRequest(
            client_id, text, source, heard.audio_path, heard.timings, origin, ahead, language, probability,
            outlet.turn_id,
        )
        return await self._run_turn(request)

    async def _run_turn(self, request: TurnRequest) -> TurnResult:
        """A turn never raises a BotError: the failure is sent to the client and returned in the result."""
        try:
            return await self._turn(request)
        except BotError as err:
            logger.warning("turn client=%s failed: %s (%s)", request.client_id, err.code, err.__cause__ or err)
            failure = err
        except Exception as err:
            logger.exception("turn client=%s failed unexpectedly", request.client_id)
            failure = BotError("the server failed to handle this message", code="internal-error")
            failure.__cause__ = err
        finally:
            if request.prefetch is not None:
                request.prefetch.discard()  # unless the turn took it
        await self._publish_error(self._outlet(request), failure)
        return TurnResult(0, request.text, "", None, "error", dict(request.timings), failure)

    async def _turn(self, request: TurnRequest) -> TurnResult:
        language = self._turn_language(request.client_id, request.text, request.language)
        if language != request.language:
            request = dataclasses.replace(request, language=language)
        start = time.perf_counter()
        timings = dict(request.timings)
        client_id = request.client_id
        outlet = self._outlet(request)
        stored_user, recent = await self._store_user_message(request)
        created = stored_user.created_at.isoformat()
        await outlet.send(UserMessage(request.text, stored_user.id, request.source, created, request.client_msg_id))
        context = self._context([m for m in recent if m.id != stored_user.id], request.text, request.language)
        self._lanes.set_replying(client_id, True)
        sent: list[str] = []
        llm_start = time.perf_counter()
        spoken = self.speaks(client_id, request.source)
        ahead = request.prefetch
        claimed = ahead.claim(context, spoken=spoken) if ahead is not None else None
        if claimed is not None and ahead is not None:
            timings["llm_head_start_ms"] = elapsed_ms(ahead.started, llm_start)
            stream, speaker, feed = claimed, ahead.speaker, None  # the prefetch feeds its own speaker
            if speaker is not None:
                speaker.release(request.origin)
        else:
            speaker = self._speaker(outlet, request.source, request.origin, request.language) if spoken else None
            stream, feed = self._llm.stream_reply(context), speaker
        # The reply's write, once started: a barge-in while it is under way must update it, never add a second.
        writing: asyncio.Future[StoredMessage] | None = None
        if speaker is not None:
            self._voices[client_id] = (speaker, outlet)
        try:
            parts = await self._stream(outlet, stream, timings, llm_start, sent, feed)
            timings["llm_total_ms"] = elapsed_ms(llm_start)
            self.llm_healthy = True
            reply = "".join(parts).strip()
            if speaker is not None:
                speaker.finish()
            writing = asyncio.ensure_future(
                self._history.append(
                    NewMessage(client_id, "assistant", reply, request.source, "ok", language=request.language)
                )
            )
            stored = await asyncio.shield(writing)
            timings["total_ms"] = elapsed_ms(start)
            # The text is complete and stored: the reply goes now, whatever the speech is still doing.
            await outlet.send(Reply(reply, stored.id, timings))
            if self._metrics is not None:
                self._metrics.turn(request.source, "ok", timings)
            if speaker is not None:
                await speaker.wait_done()
                await outlet.send(AudioDone(stored.id, speaker.frames, speaker.timings))
                if self._metrics is not None:
                    self._metrics.stages(speaker.timings)
        except LLMError as err:
            if speaker is not None:
                await speaker.cancel()
            self.llm_healthy = err.code not in ("llm-unavailable", "llm-auth", "llm-timeout")
            timings["llm_total_ms"] = elapsed_ms(llm_start)
            return await self._fail(request, stored_user.id, "".join(sent), err, timings)
        except asyncio.CancelledError:
            if speaker is not None:
                await speaker.cancel()
            # What the user got: with spoken replies, the sentences already sent as audio; before any was
            # spoken (or without voice), the text already sent.
            heard = " ".join(speaker.spoken) if speaker is not None and speaker.spoken else "".join(sent)
            await asyncio.shield(self._keep_interrupted(request, writing, heard.strip(), timings))
            raise
        except BaseException:
            if speaker is not None:  # never leave its task waiting for text that will not come
                await speaker.cancel()
            raise
        finally:
            voice = self._voices.get(client_id)
            if speaker is not None and voice is not None and voice[0] is speaker:
                del self._voices[client_id]
                self._spoken_tail(client_id, speaker.text)
        logger.info("turn client=%s source=%s chars=%d timings=%s", client_id, request.source, len(reply), timings)
        logger.debug("turn client=%s user=%r reply=%r", client_id, request.text, reply)
        return TurnResult(stored_user.id, request.text, reply, stored.id, "ok", timings)

    def _spoken_tail(self, client_id: str, text: str) -> None:
        """Remember a reply that just played out, for its echo; forget the ones past their tail."""
        now = time.monotonic()
        for other in [c for c, (_, ended) in self._spoke.items() if now - ended >= ECHO_TAIL_S]:
            del self._spoke[other]
        self._spoke[client_id] = (text, now)

    def _turn_language(self, client_id: str, text: str, heard: str | None) -> str | None:
        """The turn's language: what speech-to-text heard, else the client's fixed language, else the text's."""
        if heard is not None:
            return heard
        language = self.language(client_id)
        if language is None and self._text_language is not None:
            language = self._text_language.detect(text)
        return language

    async def _store_user_message(self, request: TurnRequest) -> tuple[StoredMessage, list[StoredMessage]]:
        """Store the user's message and read its context, together; if the message cannot be stored, its
        recording is deleted (nothing will ever refer to it)."""
        stored, recent = await asyncio.gather(
            self._history.append(
                NewMessage(
                    request.client_id, "user", request.text, request.source, "ok", request.audio_path,
                    request.language, request.language_probability, request.client_msg_id,
                )
            ),
            self._history.recent(request.client_id, self._history_messages + 1, statuses=CONTEXT_STATUSES),
            return_exceptions=True,
        )
        if isinstance(stored, BaseException):
            if request.audio_path is not None and self.transcriber is not None:
                await self.transcriber.forget([request.audio_path])
            raise stored
        if isinstance(recent, BaseException):
            raise recent
        return stored, recent

    def _outlet(self, request: TurnRequest) -> TurnOutlet:
        return TurnOutlet(self._hub, request.client_id, request.turn_id)

    def _speaker(
        self, outlet: TurnOutlet, source: Source, origin: float, language: str | None, *, held: bool = False
    ) -> Speaker | None:
        """Who reads this client's reply aloud (in ``language``'s voice unless a sentence is plainly in another),
        if the reply to ``source`` is spoken."""
        if self._tts is None or not self.speaks(outlet.client_id, source):
            return None
        return Speaker(self._tts, outlet, origin=origin, held=held, language=language, detect=self._text_language)

    def _context(self, earlier: list[StoredMessage], text: str, language: str | None = None) -> list[ChatMessage]:
        """What the LLM is sent: the system prompt (told which language to answer in, when the turn's is known),
        the client's last messages, and the new one."""
        kept = earlier[-self._history_messages :] if self._history_messages else []
        name = language_name(language)
        prompt = f"{self._system_prompt} {ANSWER_IN.format(language=name)}" if name else self._system_prompt
        return [
            ChatMessage("system", prompt),
            *(ChatMessage(m.role, m.content) for m in kept),
            ChatMessage("user", text),
        ]

    async def _stream(
        self,
        outlet: TurnOutlet,
        stream: AsyncIterator[str],
        timings: dict[str, float],
        llm_start: float,
        sent: list[str],
        speaker: Speaker | None,
    ) -> list[str]:
        """Stream the LLM's reply to every tab (and the speaker); ``sent`` collects what the tabs were sent."""
        parts: list[str] = []
        unsent: list[str] = []
        last_sent = 0.0
        try:
            async for fragment in stream:
                now = time.perf_counter()
                if not parts:
                    timings["llm_first_token_ms"] = elapsed_ms(llm_start, now)
                parts.append(fragment)
                unsent.append(fragment)
                if speaker is not None:
                    speaker.feed(fragment)
                # The first fragment goes at once; later ones at most every delta_interval, so a fast model
                # costs a few frames per reply rather than one per token.
                if len(parts) == 1 or now - last_sent >= self._delta_interval:
                    last_sent = now
                    text = "".join(unsent)
                    unsent.clear()
                    await outlet.send(ReplyDelta(text))
                    sent.append(text)
        finally:
            # Closing the generator at once stops an interrupted model (and its HTTP stream) now, not at GC.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        if unsent:
            text = "".join(unsent)
            await outlet.send(ReplyDelta(text))
            sent.append(text)
        return parts

    async def _fail(
        self, request: TurnRequest, user_id: int, partial: str, err: LLMError, timings: dict[str, float]
    ) -> TurnResult:
        logger.warning("turn client=%s failed: %s (%s)", request.client_id, err.code, err.__cause__ or err)
        message_id = None
        if partial.strip():  # keep what the user already saw, marked as failed; never a made-up reply
            stored = await self._history.append(
                NewMessage(request.client_id, "assistant", partial.strip(), request.source, "error")
            )
            message_id = stored.id
        await self._publish_error(self._outlet(request), err)
        if self._metrics is not None:
            self._metrics.turn(request.source, "error", timings)
        return TurnResult(user_id, request.text, partial, message_id, "error", timings, err)

    async def _keep_interrupted(
        self,
        request: TurnRequest,
        writing: asyncio.Future[StoredMessage] | None,
        heard: str,
        timings: dict[str, float],
    ) -> None:
        """Store the reply cut at what the user already got: the text sent, or with voice, the speech sent. A reply
        whose write had started (it may finish after the interruption) is updated, never stored twice."""
        reply_id: int | None = None
        if writing is not None:
            with contextlib.suppress(BotError):
                reply_id = (await writing).id
        counted = reply_id is not None  # a reply stored when its text was complete was counted then
        if reply_id is not None:
            await self._history.update(reply_id, heard, "interrupted")
        elif heard:
            stored = await self._history.append(
                NewMessage(request.client_id, "assistant", heard, request.source, "interrupted")
            )
            reply_id = stored.id
        logger.info("turn client=%s interrupted, %d chars kept", request.client_id, len(heard))
        await self._outlet(request).send(Interrupted(reply_id, heard))
        if self._metrics is not None and not counted:
            self._metrics.turn(request.source, "interrupted", timings)

    async def _publish_error(self, outlet: TurnOutlet, err: BotError) -> None:
        self._count_error(err.code)
        await outlet.send(ErrorEvent(err.code, err.message))

    def _count_error(self, code: str) -> None:
        if self._metrics is not None:
            self._metrics.error(code)


async def _settled(prefetch: asyncio.Future[ReplyPrefetch | None] | None) -> ReplyPrefetch | None:
    """The prefetched reply, once its (short) history read is done; None if there is none or it failed."""
    if prefetch is None:
        return None
    try:
        return await prefetch
    except asyncio.CancelledError:
        if prefetch.cancelled():  # the prefetch was dropped, not this turn
            return None
        raise
    except BotError:
        return None  # the turn's own history read will report the failure
