"""Turn: one user turn, from its first word to its reply spoken — its states, its id, and the work it owns.

    listening → transcribing → replying → speaking → done | interrupted | failed

A live utterance's turn is made when its speech starts (``core.voice.listener``); while the user is still speaking it
may hear the words so far and start the reply to them (its early work, ``hear_early``), and it drops that work if
speech resumes. A typed message or an uploaded recording gets its turn when it arrives. ``ChatPipeline`` queues each
turn in its client's lane and holds the services turns share; ``Turn.run`` does the rest. The tasks a turn starts
are its own: the reply's model stream and its speech run in one ``asyncio.TaskGroup``, so a barge-in cancelling the
turn cancels them all, and the reply is stored once, cut at what the user got.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import BotError, LLMError, STTError
from core.events import AudioDone, ErrorEvent, Interrupted, Reply, ReplyDelta, TranscriptionEvent, UserMessage
from core.llm.failover import served_by
from core.models import AudioClip, NewMessage, Source, Status, StoredMessage, Transcript
from core.outlet import TurnOutlet, new_turn_id
from core.prefetch import ReplyPrefetch
from core.speaking import Speaker
from core.voice.interruption import without_echo

if TYPE_CHECKING:
    from core.pipeline import ChatPipeline

logger = logging.getLogger(__name__)

T = TypeVar("T")
# The model's service is down or refuses us: /api/status reports the LLM unavailable until a turn gets a reply.
UNHEALTHY_LLM = ("llm-unavailable", "llm-auth", "llm-timeout")
# How long a turn waits, once its early words are heard, for the early reply to be under way (the LLM reads the words
# first; the same budget as core.voice.listener.WORDS_WAIT_S).
EARLY_REPLY_WAIT_S = 1.0


class TurnState(StrEnum):
    """Where a turn is; each state is entered once, in the order of ``TRANSITIONS``."""

    LISTENING = "listening"  # the user is speaking (a live stream), or the message waits for its lane
    TRANSCRIBING = "transcribing"  # the utterance is turned into words, and the user's message stored
    REPLYING = "replying"  # the user's message is stored and the reply is being written: a barge-in cuts it
    SPEAKING = "speaking"  # the reply is written, stored and sent; its speech is still being sent or played
    DONE = "done"
    INTERRUPTED = "interrupted"  # cut (barge-in): the reply is kept as far as the user got it
    FAILED = "failed"  # an error was sent (or, before the words were known, raised)


ENDED = frozenset({TurnState.DONE, TurnState.INTERRUPTED, TurnState.FAILED})
_CUT = frozenset({TurnState.INTERRUPTED, TurnState.FAILED})  # any state before the end may be cut short
# A typed message is never transcribed: listening → replying.
TRANSITIONS: dict[TurnState, frozenset[TurnState]] = {
    TurnState.LISTENING: frozenset({TurnState.TRANSCRIBING, TurnState.REPLYING}) | _CUT,
    TurnState.TRANSCRIBING: frozenset({TurnState.REPLYING}) | _CUT,
    TurnState.REPLYING: frozenset({TurnState.SPEAKING, TurnState.DONE}) | _CUT,
    TurnState.SPEAKING: frozenset({TurnState.DONE}) | _CUT,
    TurnState.DONE: frozenset(),
    TurnState.INTERRUPTED: frozenset(),
    TurnState.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """A user's message, ready for the LLM; ``origin`` is when the user finished (speaking or typing)."""

    client_id: str
    text: str
    source: Source = "text"
    audio_path: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    origin: float = field(default_factory=time.perf_counter)
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


@dataclass(eq=False, slots=True)
class _EarlyWork:
    """What a turn started before the end of its speech was certain: the words up to ``voiced_until`` (the last
    voiced ms of the utterance then), the LLM's reading of whether they end the turn (None: not read), and the reply
    to them, once its context was read (None: no reply started)."""

    voiced_until: int
    heard: asyncio.Future[Transcript]
    reading: asyncio.Future[float | None]
    reply: asyncio.Future[ReplyPrefetch | None]
    task: asyncio.Task[None] | None = None


class Turn:
    """One user turn: its id, its client, where it came from, its state (and when each was entered) and its work."""

    def __init__(
        self, pipeline: ChatPipeline, client_id: str, source: Source = "voice", *, turn_id: str | None = None
    ) -> None:
        self.pipeline = pipeline
        self.client_id = client_id
        self.source: Source = source
        self.turn_id = turn_id or new_turn_id()
        self.outlet = TurnOutlet(pipeline.hub, client_id, self.turn_id)  # every event of the turn leaves here
        self.state = TurnState.LISTENING
        self.entered: dict[TurnState, float] = {self.state: time.perf_counter()}  # perf_counter of each state
        self.origin = time.perf_counter()  # when the user finished speaking or typing
        self.request: TurnRequest | None = None  # the user's words, once known
        self._audio: bytes | AudioClip | None = None
        self._early: _EarlyWork | None = None
        self._dropped: set[asyncio.Task[None]] = set()  # early work cancelled, kept until it has stopped
        self._ahead: ReplyPrefetch | None = None
        self._task: asyncio.Task[Any] | None = None  # the task running the turn: a barge-in cancels it
        self._writing: asyncio.Task[StoredMessage] | None = None  # the reply's write, once started
        self._sent: list[str] = []  # what the tabs were sent of the reply
        # The words of a reply heard back at the start of this turn's speech, before the user's own interrupted it
        # (``core.voice.listener``): left out of what the turn answers.
        self.echo: list[str] = []

    def __repr__(self) -> str:
        return f"<Turn {self.turn_id} {self.client_id} {self.source} {self.state}>"

    # -- what the turn answers ---------------------------------------------------------------------------------

    def with_text(self, request: TurnRequest) -> Turn:
        """The turn answers these words (typed, or heard already)."""
        self.request = request
        self.origin = request.origin
        return self

    def with_audio(self, audio: bytes | AudioClip, origin: float) -> Turn:
        """The turn transcribes this recording (any container) or live utterance, then answers it."""
        self._audio = audio
        self.origin = origin
        return self

    # -- states ------------------------------------------------------------------------------------------------

    @property
    def states(self) -> list[TurnState]:
        """The states this turn went through, in order."""
        return list(self.entered)

    @property
    def durations_ms(self) -> dict[str, float]:
        """How long the turn spent in each state it has left (listening: from its speech start, or its arrival)."""
        pairs = itertools.pairwise(self.entered.items())
        return {str(state): elapsed_ms(start, end) for (state, start), (_, end) in pairs}

    def enter(self, state: TurnState) -> None:
        """Move to ``state``; a move ``TRANSITIONS`` does not allow is a bug, and raises RuntimeError."""
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"turn {self.turn_id} cannot go from {self.state} to {state}")
        logger.debug("turn %s of %s: %s → %s", self.turn_id, self.client_id, self.state, state)
        self.state = state
        self.entered[state] = time.perf_counter()

    def _end(self, state: TurnState) -> None:
        if self.state not in ENDED:
            self.enter(state)

    def interrupt(self) -> bool:
        """Cut the reply (barge-in) if it is being written or spoken; whether it was."""
        if self.state not in (TurnState.REPLYING, TurnState.SPEAKING) or self._task is None or self._task.done():
            return False
        self._task.cancel()
        return True

    # -- early work, while the user is still speaking ----------------------------------------------------------

    @property
    def early_until(self) -> int | None:
        """The last voiced ms of the utterance as it was when the early work started; None: there is none."""
        return self._early.voiced_until if self._early is not None else None

    @property
    def early_transcript(self) -> Transcript | None:
        """The words the early work heard, once it has (None before, or if it heard none)."""
        heard = self._early.heard if self._early is not None else None
        if heard is None or not heard.done() or heard.cancelled() or heard.exception() is not None:
            return None
        return heard.result()

    def hear_early(self, clip: AudioClip, voiced_until: int, *, read: bool = False) -> None:
        """Transcribe the utterance so far (``clip``, voiced up to ``voiced_until`` ms), have the LLM ``read`` whether
        the words end the turn (``words_reading``), then start the reply to them, held: its text and speech are made
        but nothing is sent until the turn claims it. Called a little into a pause, while the end of the turn is
        still being judged; earlier early work is dropped."""
        if self.state is not TurnState.LISTENING:
            raise RuntimeError(f"turn {self.turn_id} is {self.state}: too late to hear it early")
        self.drop_early()
        loop = asyncio.get_running_loop()
        early = _EarlyWork(voiced_until, loop.create_future(), loop.create_future(), loop.create_future())
        early.heard.add_done_callback(_consume)  # early work nobody used must not report its error as lost
        early.reply.add_done_callback(_consume)
        early.task = asyncio.create_task(self._work_early(early, clip, read), name=f"early-{self.turn_id}")
        early.task.add_done_callback(_consume)
        self._early = early

    def drop_early(self) -> None:
        """Forget the early work (speech resumed, or the words or context turned out different): its transcription,
        model stream and speech are cancelled, and nothing of them is sent or stored."""
        early, self._early = self._early, None
        if early is None:
            return
        early.heard.cancel()
        early.reading.cancel()
        early.reply.cancel()
        if early.task is not None and not early.task.done():
            early.task.cancel()
            self._dropped.add(early.task)
            early.task.add_done_callback(self._dropped.discard)

    async def words_reading(self, voiced_until: int, timeout_s: float) -> float | None:
        """The LLM's probability that the words heard early, up to ``voiced_until`` ms, end the turn; None if no early
        work heard this pause, it read nothing, or its reading took more than ``timeout_s`` (the model was busy)."""
        early = self._early
        if early is None or early.voiced_until != voiced_until:
            return None
        done, _ = await asyncio.wait([early.reading], timeout=timeout_s)
        if not done or early.reading.cancelled() or early.reading.exception() is not None:
            return None
        return early.reading.result()

    def early_ready(self, voiced_until: int) -> bool:
        """Whether answering now would find nothing to wait for in the early work for the pause after
        ``voiced_until`` ms: its reply has its first audio (or text, unspoken) ready, or there is no such reply
        (none started for this pause, none could be, or it failed). While the words are heard and read and the reply
        is starting, it is not ready."""
        early = self._early
        if early is None or early.voiced_until != voiced_until:
            return True
        if not early.reply.done():
            return False
        if early.reply.cancelled() or early.reply.exception() is not None:
            return True
        reply = early.reply.result()
        return reply is None or reply.ready

    async def until_early_ready(self, voiced_until: int) -> None:
        """Return once ``early_ready(voiced_until)``."""
        early = self._early
        if early is None or early.voiced_until != voiced_until:
            return
        await asyncio.wait([early.reply])
        if early.reply.cancelled() or early.reply.exception() is not None:
            return
        reply = early.reply.result()
        if reply is not None:
            await reply.until_ready()

    async def _work_early(self, early: _EarlyWork, clip: AudioClip, read: bool) -> None:
        """Hear the words so far, have the LLM read them (if asked), then start their reply and run it (the model into
        a buffer, the speech held). The reading goes first: the reply's prompt then finds it in the model's cache."""
        try:
            await self._early_work(early, clip, read)
        finally:  # whatever ended the work, nobody waits for it for ever
            for future in (early.heard, early.reading, early.reply):
                if not future.done():
                    future.cancel()

    async def _early_work(self, early: _EarlyWork, clip: AudioClip, read: bool) -> None:
        transcriber = self.pipeline.transcriber
        began = time.perf_counter()
        try:
            if transcriber is None:
                raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
            transcript = await transcriber.transcribe(clip, self.pipeline.language(self.client_id))
        except Exception as err:  # the turn takes it as its own failure, if it takes this work
            _settle(early.heard, error=err)
            _settle(early.reading, None)
            _settle(early.reply, None)
            return
        _settle(early.heard, transcript)
        heard = time.perf_counter()
        words = without_echo(transcript.text, self.echo)
        reading = None
        if read and self.state is TurnState.LISTENING:  # a turn already answered needs no verdict
            try:
                reading = await self.pipeline.read_words(self.client_id, words, transcript.language)
            except Exception:
                logger.exception("reading the words of %s's pause failed", self.client_id)
        _settle(early.reading, reading)
        logger.debug(
            "turn %s: %.1f s heard early in %.0f ms, read in %.0f ms (%s)", self.turn_id, clip.duration_s,
            (heard - began) * 1000, (time.perf_counter() - heard) * 1000, reading,
        )
        try:
            reply = await self.pipeline.prefetch(self.client_id, words, transcript.language, self.turn_id)
        except BotError:
            reply = None  # the turn's own history read will report the failure
        except Exception as err:
            _settle(early.reply, error=err)
            return
        _settle(early.reply, reply)
        if reply is not None and not early.reply.cancelled():
            await reply.run()

    async def _early_reply(self) -> ReplyPrefetch | None:
        """The early reply, once the early words are heard (the turn needs them anyway) and the reply's (short)
        history read is done; None if there is none, it was dropped, or it is not under way within
        ``EARLY_REPLY_WAIT_S`` of the words (the LLM's reading of them queued behind another reply: a fresh request
        would come no later)."""
        early = self._early
        if early is None:
            return None
        await asyncio.wait([early.heard])
        await asyncio.wait([early.reply], timeout=EARLY_REPLY_WAIT_S)
        if not early.reply.done() or early.reply.cancelled():
            return None
        return early.reply.result()  # its failure, if any, is the turn's own

    async def _follow_early(self) -> None:
        """The claimed early reply's model and speech run in the early task: the turn waits for it as for its own
        speech, and cancelling this (a barge-in) cancels them."""
        if self._early is not None and self._early.task is not None:
            await self._early.task

    async def _end_early(self) -> None:
        """The turn is over: what it started early has finished, or is cancelled now."""
        early, self._early = self._early, None
        tasks = list(self._dropped)
        if early is not None and early.task is not None:
            early.task.cancel()
            tasks.append(early.task)
        if tasks:
            await asyncio.wait(tasks)

    # -- the turn ----------------------------------------------------------------------------------------------

    async def run(self) -> TurnResult:
        """Transcribe (if spoken), store the user's message, reply, speak, store the reply. A failure before the
        words are known (not audio, no speech, STT down) raises a BotError; any later one is sent to the tabs and
        returned. A barge-in cancels the task running this: the cut reply is stored, and CancelledError raised."""
        self._task = asyncio.current_task()
        try:
            request = self.request if self.request is not None else await self._hear()
            return await self._answer(request)
        except asyncio.CancelledError:
            self._end(TurnState.INTERRUPTED)
            raise
        except BaseException:
            self._end(TurnState.FAILED)
            raise
        finally:
            await self._end_early()
            logger.debug("turn %s of %s %s: %s", self.turn_id, self.client_id, self.state, self.durations_ms)

    async def _hear(self) -> TurnRequest:
        self.enter(TurnState.TRANSCRIBING)
        pipeline = self.pipeline
        try:
            self._ahead = await self._early_reply()
            if pipeline.transcriber is None:
                raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
            fixed = pipeline.language(self.client_id)
            if isinstance(self._audio, AudioClip):
                early = self._early.heard if self._early is not None else None
                heard = await pipeline.transcriber.hear_clip(self._audio, early, fixed)
            elif self._audio is not None:
                heard = await pipeline.transcriber.hear(self._audio, fixed)
            else:
                raise RuntimeError(f"turn {self.turn_id} has neither words nor audio")
        except BotError as err:
            pipeline.count_error(err.code)
            raise
        transcript = heard.transcript
        text = without_echo(transcript.text, self.echo).strip()
        language, probability = transcript.language, transcript.language_probability
        await self.outlet.send(TranscriptionEvent(text, heard.timings, self.source, language, probability))
        logger.info(
            "heard client=%s source=%s language=%s timings=%s", self.client_id, self.source, language, heard.timings
        )
        return TurnRequest(
            self.client_id, text, self.source, heard.audio_path, heard.timings, self.origin, language, probability,
            self.turn_id,
        )

    async def _answer(self, request: TurnRequest) -> TurnResult:
        """Once the words are known a turn never raises a BotError: the failure is sent and returned."""
        self.request = request
        try:
            return await self._reply(request)
        except BotError as err:
            logger.warning("turn client=%s failed: %s (%s)", self.client_id, err.code, err.__cause__ or err)
            failure = err
        except Exception as err:
            logger.exception("turn client=%s failed unexpectedly", self.client_id)
            failure = BotError("the server failed to handle this message", code="internal-error")
            failure.__cause__ = err
        self._end(TurnState.FAILED)
        self.drop_early()
        await self._publish_error(failure)
        return TurnResult(0, request.text, "", None, "error", dict(request.timings), failure)

    async def _reply(self, request: TurnRequest) -> TurnResult:
        pipeline = self.pipeline
        language = pipeline.turn_language(self.client_id, request.text, request.language)
        if language != request.language:
            request = self.request = dataclasses.replace(request, language=language)
        start = time.perf_counter()
        timings = dict(request.timings)
        stored_user, recent = await self._store_user_message(request)
        first = not any(m.role == "user" and m.id != stored_user.id for m in recent)
        if first and pipeline.after_user_message is not None:
            # The conversation's first message: told before the page shows it, whatever becomes of the reply (its
            # speech can take seconds). Later messages cost the turn nothing.
            await pipeline.after_user_message(self.client_id, request.text)
        created = stored_user.created_at.isoformat()
        await self.outlet.send(UserMessage(request.text, stored_user.id, self.source, created, request.client_msg_id))
        earlier = [m for m in recent if m.id != stored_user.id]
        context = pipeline.context(earlier, request.text, request.language, client_id=self.client_id)
        self.enter(TurnState.REPLYING)
        llm_start = time.perf_counter()
        spoken = pipeline.speaks(self.client_id, self.source)
        ahead = self._ahead
        claimed = ahead.claim(context, spoken=spoken) if ahead is not None else None
        if claimed is not None and ahead is not None:
            timings["llm_head_start_ms"] = elapsed_ms(ahead.started, llm_start)
            stream, speaker, feed = claimed, ahead.speaker, None  # the early reply feeds its own speaker
            if speaker is not None:
                speaker.release(request.origin)
        else:
            self.drop_early()
            speaker = None
            if spoken:
                speaker = pipeline.new_speaker(self.outlet, self.source, request.origin, request.language)
            stream, feed = pipeline.llm.stream_reply(context), speaker
        if speaker is not None:
            pipeline.add_voice(speaker, self.outlet)
        try:
            async with _task_group() as group:
                if claimed is not None:
                    speech: asyncio.Task[None] | None = group.create_task(self._follow_early(), name="early-reply")
                elif speaker is not None:
                    speech = group.create_task(speaker.run(), name=f"speech-{self.turn_id}")
                else:
                    speech = None
                parts = await self._stream(stream, timings, llm_start, feed)
                timings["llm_total_ms"] = elapsed_ms(llm_start)
                pipeline.llm_healthy = True
                reply = "".join(parts).strip()
                if speaker is not None:
                    speaker.finish()
                stored = await self._store_reply(reply, request)
                pipeline.prepare_next(self.client_id, [*earlier, stored_user, stored], request.language)
                timings["total_ms"] = elapsed_ms(start)
                # The text is complete and stored: the reply goes now, whatever the speech is still doing.
                await self.outlet.send(Reply(reply, stored.id, timings, engine=served_by(parts)))
                if pipeline.metrics is not None:
                    pipeline.metrics.turn(self.source, "ok", timings)
                if speaker is not None and speech is not None:
                    self.enter(TurnState.SPEAKING)
                    await speech
                    await self.outlet.send(AudioDone(stored.id, speaker.frames, speaker.timings))
                    if pipeline.metrics is not None:
                        pipeline.metrics.stages(speaker.timings)
        except LLMError as err:
            pipeline.llm_healthy = err.code not in UNHEALTHY_LLM
            timings["llm_total_ms"] = elapsed_ms(llm_start)
            return await self._fail(request, stored_user.id, "".join(self._sent), err, timings)
        except asyncio.CancelledError:
            self._end(TurnState.INTERRUPTED)
            # What the user got: with spoken replies, the sentences the page had begun to play (not those sent
            # ahead of it); before any was played (or without voice), the text already sent.
            played = speaker.heard(time.perf_counter()) if speaker is not None else []
            heard = " ".join(played) if played else "".join(self._sent)
            await asyncio.shield(self._keep_interrupted(request, heard.strip(), timings))
            raise
        finally:
            if speaker is not None:
                pipeline.remove_voice(speaker)
        self.enter(TurnState.DONE)
        logger.info("turn client=%s source=%s chars=%d timings=%s", self.client_id, self.source, len(reply), timings)
        logger.debug("turn client=%s user=%r reply=%r", self.client_id, request.text, reply)
        return TurnResult(stored_user.id, request.text, reply, stored.id, "ok", timings)

    async def _store_user_message(self, request: TurnRequest) -> tuple[StoredMessage, list[StoredMessage]]:
        """Store the user's message and read its context, together; if the message cannot be stored, its
        recording is deleted (nothing will ever refer to it)."""
        pipeline = self.pipeline
        stored, recent = await asyncio.gather(
            pipeline.history.append(
                NewMessage(
                    self.client_id, "user", request.text, self.source, "ok", request.audio_path,
                    request.language, request.language_probability, request.client_msg_id,
                )
            ),
            pipeline.recent(self.client_id, pipeline.history_messages + 1),
            return_exceptions=True,
        )
        if isinstance(stored, BaseException):
            if request.audio_path is not None and pipeline.transcriber is not None:
                await pipeline.transcriber.forget([request.audio_path])
            raise stored
        if isinstance(recent, BaseException):
            raise recent
        return stored, recent

    async def _stream(
        self, stream: AsyncIterator[str], timings: dict[str, float], llm_start: float, speaker: Speaker | None
    ) -> list[str]:
        """Stream the LLM's reply to every tab (and the speaker); ``_sent`` collects what the tabs were sent."""
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
                if len(parts) == 1 or now - last_sent >= self.pipeline.delta_interval:
                    last_sent = now
                    text = "".join(unsent)
                    unsent.clear()
                    await self.outlet.send(ReplyDelta(text))
                    self._sent.append(text)
        finally:
            # Closing the generator at once stops an interrupted model (and its HTTP stream) now, not at GC.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        if unsent:
            text = "".join(unsent)
            await self.outlet.send(ReplyDelta(text))
            self._sent.append(text)
        return parts

    async def _store_reply(self, reply: str, request: TurnRequest) -> StoredMessage:
        """Store the reply, once: the write goes on if the turn is cut meanwhile, and the cut then updates it."""
        message = NewMessage(self.client_id, "assistant", reply, self.source, "ok", language=request.language)
        self._writing = asyncio.ensure_future(self.pipeline.history.append(message))
        return await asyncio.shield(self._writing)

    async def _fail(
        self, request: TurnRequest, user_id: int, partial: str, err: LLMError, timings: dict[str, float]
    ) -> TurnResult:
        self._end(TurnState.FAILED)
        logger.warning("turn client=%s failed: %s (%s)", self.client_id, err.code, err.__cause__ or err)
        message_id = None
        if partial.strip():  # keep what the user already saw, marked as failed; never a made-up reply
            stored = await self.pipeline.history.append(
                NewMessage(self.client_id, "assistant", partial.strip(), self.source, "error")
            )
            message_id = stored.id
        await self._publish_error(err)
        if self.pipeline.metrics is not None:
            self.pipeline.metrics.turn(self.source, "error", timings)
        return TurnResult(user_id, request.text, partial, message_id, "error", timings, err)

    async def _keep_interrupted(self, request: TurnRequest, heard: str, timings: dict[str, float]) -> None:
        """Store the reply cut at what the user already got: the text sent, or with voice, the speech sent. A reply
        whose write had started (it may finish after the interruption) is updated, never stored twice."""
        history = self.pipeline.history
        reply_id: int | None = None
        if self._writing is not None:
            with contextlib.suppress(BotError):
                reply_id = (await self._writing).id
        counted = reply_id is not None  # a reply stored when its text was complete was counted then
        if reply_id is not None:
            await history.update(reply_id, heard, "interrupted")
        elif heard:
            stored = await history.append(NewMessage(self.client_id, "assistant", heard, self.source, "interrupted"))
            reply_id = stored.id
        logger.info("turn client=%s interrupted, %d chars kept", self.client_id, len(heard))
        await self.outlet.send(Interrupted(reply_id, heard))
        if self.pipeline.metrics is not None and not counted:
            self.pipeline.metrics.turn(self.source, "interrupted", timings)

    async def _publish_error(self, err: BotError) -> None:
        self.pipeline.count_error(err.code)
        await self.outlet.send(ErrorEvent(err.code, err.message))


@contextlib.asynccontextmanager
async def _task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """An ``asyncio.TaskGroup`` whose failure is raised as its first error, not as an ExceptionGroup: the turn
    handles one failure at a time, and its tasks' failures are the turn's own."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failures:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Cancelled (a barge-in) while a child failed: TaskGroup raises the failure and drops the cancellation,
            # but the turn was interrupted, and that is what it must report.
            raise asyncio.CancelledError from failures
        first: BaseException = failures
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from first.__cause__


def _settle(future: asyncio.Future[T], result: T | None = None, *, error: BaseException | None = None) -> None:
    """Resolve ``future`` unless it was dropped (cancelled) meanwhile."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _consume(task: asyncio.Future[Any]) -> None:
    """Early work nobody used must not report its error as never retrieved."""
    if not task.cancelled():
        task.exception()
