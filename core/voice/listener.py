"""LiveListener: one socket's live microphone stream → speech events, barge-in, and one turn per user turn."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from core.errors import BotError, ProtocolError
from core.events import EndReason, SpeechPaused, SpeechStarted, SpeechStopped
from core.hub import Hub
from core.models import AudioClip
from core.pipeline import ChatPipeline, Turn, TurnResult
from core.voice.endpointing import Endpointer
from core.voice.interruption import ECHO_LAG_S, LOOK_OVERLAP_S, PLACE_ERROR_S, continued, is_echo, words
from core.voice.vad import SpeechEnd, SpeechStart, VoiceActivityDetector

logger = logging.getLogger(__name__)

STREAM_DRIFT = 0.01  # seconds the stream's estimated start may move later per second of audio

VAD_RATE = 16000
# How long the end-of-turn decision waits for the LLM's reading of the words, after the audio model's verdict: longer
# means the model is busy (another client's reply); the audio model then decides alone.
WORDS_WAIT_S = 1.0


class LiveListener:
    """Feeds streamed PCM16 to a VAD; the endpointer decides when each turn ends, and speech interrupts the bot.

    Each user turn is a ``core.turn.Turn``, made when its speech starts (every event of the turn carries its id, from
    ``speech_started`` on) and handed to the pipeline when the turn ends; a turn can end between two chunks, when the
    end-of-turn model's judgement comes back. Its future is handed to ``on_turn`` with the turn's id (the socket
    reports its failures).

    Transcription starts early: once the speaker has been silent for ``early_transcription_ms``, the utterance holds
    all the speech the end of the turn will deliver (only a little trailing silence differs), so the turn is asked to
    hear it while the end of the turn is still being judged, and once heard it starts the reply too (see
    ``core.prefetch``). If speech resumes, the turn drops that early work.
    """

    def __init__(
        self,
        pipeline: ChatPipeline,
        hub: Hub,
        client_id: str,
        vad: VoiceActivityDetector,
        sample_rate: int,
        *,
        endpointer: Endpointer,
        on_turn: Callable[[asyncio.Future[TurnResult], str], None],
        early_transcription_ms: int = 120,
        interrupt_min_ms: int = 300,
        push_to_talk: bool = False,
    ) -> None:
        self._pipeline = pipeline
        self._hub = hub
        self._client_id = client_id
        self._vad = vad
        self._endpointer = endpointer
        self._on_turn = on_turn
        self._early_after_ms = early_transcription_ms
        # Push-to-talk: the user's release (``stop``) ends the turn; pauses while the button is held are not
        # judged, but still transcribed early, so a release after the last word finds the words heard already.
        self.push_to_talk = push_to_talk
        # Speech that starts while a reply is spoken (or just after) is suspect: it may be the reply heard back.
        # Each ``interrupt_min_ms`` of its voiced speech, and at its end, its new words decide
        # (``core.voice.interruption``); the reply is held while they are found out.
        self._interrupt_min_ms = interrupt_min_ms
        self._suspect = False
        self._next_check_ms = 0  # voiced ms of the utterance at which its next words are checked
        self._echo_words: list[str] = []  # the words of it already found to be the reply's own
        self._last_look: list[str] = []  # the words the last look heard
        self._looked_bytes = 0  # how much of its audio they were found in
        self._held = False  # this listener paused the reply, and owes it a resume
        self._checks: asyncio.Task[None] | None = None
        self._resampler = _Resampler(sample_rate) if sample_rate != VAD_RATE else None
        self._odd = b""
        self._turn: Turn | None = None  # the turn being listened to, from its speech start to its end
        # Where in the stream (ms of audio fed) the last speech started and the last turn's speech ended.
        self.speech_start_ms = 0
        self.speech_end_ms = 0
        # The end-of-turn judgement under way, if any, and the pause judged last (by its last voiced ms).
        self._judging: asyncio.Task[None] | None = None
        self._judged = -1
        # A judged pause that ends the turn if its silence lasts long enough: (its last voiced ms, the audio's and
        # the words' probabilities, the silence that ends it in ms; ``Endpointer.wait_ms``).
        self._confirming: tuple[int, float | None, float | None, int] | None = None
        # Waits for the early reply to that pause to be ready, and ends the turn then if the silence allows.
        self._readiness: asyncio.Task[None] | None = None
        # Events and turns leave in the order they happened, whether a chunk or a judgement ended the turn.
        self._order = asyncio.Lock()
        # perf_counter of the stream's first sample, as early as its audio has ever come: audio held up on the way
        # and then delivered in a burst is dated when it was recorded, not when it came (STREAM_DRIFT: how fast the
        # estimate may move later, for a clock a little slow or a path that got slower for good).
        self._stream_began: float | None = None

    async def feed(self, data: bytes) -> None:
        """Judge a chunk of audio: speech starting interrupts the bot, a turn ending is answered."""
        data = self._odd + data
        cut = len(data) // 2 * 2
        self._odd = data[cut:]
        pcm = data[:cut]
        if self._resampler is not None:
            pcm = self._resampler.convert(pcm)
        chunk_s = len(pcm) / 2 / VAD_RATE
        began = time.perf_counter() - (self._vad.position_ms / 1000 + chunk_s)
        if self._stream_began is None or began < self._stream_began:
            self._stream_began = began
        else:
            self._stream_began = min(began, self._stream_began + chunk_s * STREAM_DRIFT)
        async with self._order:
            # One Silero window costs ~0.1 ms: cheaper inline than a thread hop, and it keeps the events in order.
            for event in self._vad.feed(pcm):
                if isinstance(event, SpeechStart):
                    self.speech_start_ms = event.at_ms
                    self._drop_turn()
                    self._turn = self._pipeline.new_turn(self._client_id)
                    await self._turn.outlet.send(SpeechStarted())
                    await self._speech_started()
                elif self._confirming is not None and self._confirming[0] == event.end_ms and event.reason == "silence":
                    # max_silence came first (it is no longer than the confirming silence): the verdict stands.
                    _, probability, words, _ = self._confirming
                    await self._end_turn(event, "end_of_turn", probability, words)
                else:
                    await self._end_turn(event, self._endpointer.reason(event.reason))
            await self._confirm()
        self._maybe_transcribe_early()
        self._maybe_judge()
        self._maybe_check_interruption()

    async def stop(self) -> bool:
        """Push-to-talk released or the stream ended: the utterance in progress ends now; whether there was one.
        Pushing to talk, even a word too short to have started a hands-free turn is one."""
        if self._judging is not None:
            self._judging.cancel()
        async with self._order:
            end = self._vad.flush(tentative=self.push_to_talk)
            if end is None:
                self._drop_turn()
                await self._clear_suspicion()
                return False
            await self._end_turn(end, "push_to_talk")
            return True

    async def idle(self) -> None:
        """Wait until no end-of-turn judgement is under way (and what it decided has been sent)."""
        while self._judging is not None:
            await asyncio.wait([self._judging])

    async def cancel(self) -> None:
        """The stream ends and the utterance in progress is forgotten (a cancelled press): no turn, and a reply it
        paused plays on."""
        if self._judging is not None:
            self._judging.cancel()
        async with self._order:
            self._vad.reset()
            self._drop_turn()
            await self._clear_suspicion()

    def _maybe_judge(self) -> None:
        """Ask the end-of-turn model about the current pause, once it has lasted ``silence_ms``."""
        if self.push_to_talk or self._judging is not None or not self._vad.speaking:
            return
        voiced_until, silence = self._vad.last_voiced_ms, self._vad.silence_so_far_ms
        if not self._endpointer.due(silence, judged=self._judged == voiced_until):
            return
        audio = self._vad.utterance_so_far()
        if audio is None:
            return
        self._judged = voiced_until
        self._judging = asyncio.create_task(self._judge(voiced_until, silence, audio), name="end-of-turn")

    async def _judge(self, voiced_until: int, silence: int, audio: bytes) -> None:
        try:
            began = time.perf_counter()
            probability = await self._endpointer.judge(audio)
            judged = time.perf_counter()
            reading = None
            if self._endpointer.reads_text and self._turn is not None:
                reading = await self._turn.words_reading(voiced_until, WORDS_WAIT_S)
            async with self._order:
                if not self._vad.speaking or self._vad.last_voiced_ms != voiced_until:
                    return  # speech resumed, or the turn ended otherwise, while the model was judging
                finished = self._endpointer.finished(probability, reading)
                wait_ms = self._endpointer.wait_ms(probability, reading)
                # Three significant digits: readings that matter lie between 1e-8 and 1 (text_unlikely_below 1e-5).
                words = float(f"{reading:.3g}") if reading is not None else None
                logger.debug(
                    "pause of %s judged %s (ends after %s ms of silence): audio %s in %.0f ms, words %s %.0f ms later",
                    self._client_id, finished, wait_ms, probability, (judged - began) * 1000, words,
                    (time.perf_counter() - judged) * 1000,
                )
                if finished is False and probability is not None and self._turn is not None:
                    await self._turn.outlet.send(SpeechPaused(silence, round(probability, 3), words))
                if wait_ms is not None:
                    # The end (probably, or possibly): it is, once that much silence has passed with no speech and
                    # the reply started early is ready to be heard.
                    self._confirming = (voiced_until, probability, words, wait_ms)
                    await self._confirm()
                    if self._confirming is not None and self._turn is not None and self._endpointer.reply_ready_wait_ms:
                        self._stop_readiness()
                        self._readiness = asyncio.create_task(
                            self._when_ready(self._turn, voiced_until), name="reply-ready"
                        )
        finally:
            self._judging = None

    async def _confirm(self) -> None:
        """End the turn a judgement found probably (or possibly) finished, once its pause has lasted as long as the
        judgement asked (``Endpointer.wait_ms``) and the reply started early for it is ready to be heard (or the
        silence has reached ``reply_ready_wait_ms``); forget it if speech resumed first (the pause was no end after
        all). Ending sooner would answer no sooner: the reply is what the user waits for, and until it is ready a
        user who speaks again is still in their turn, not cutting into the bot's. Called with ``_order`` held."""
        if self._confirming is None:
            return
        voiced_until, probability, words, wait_ms = self._confirming
        if not self._vad.speaking or self._vad.last_voiced_ms != voiced_until:
            self._confirming = None
            logger.debug("speech by %s resumed within the confirming silence: the turn goes on", self._client_id)
            return
        silence = self._vad.silence_so_far_ms
        if silence < wait_ms:
            return
        turn = self._turn
        if turn is not None and silence < self._endpointer.reply_ready_wait_ms and not turn.early_ready(voiced_until):
            return
        self._confirming = None
        end = self._vad.cut()
        if end is not None:
            logger.debug("turn of %s ends after %d ms of silence (asked %d)", self._client_id, silence, wait_ms)
            await self._end_turn(end, "end_of_turn", probability, words)

    async def _when_ready(self, turn: Turn, voiced_until: int) -> None:
        """Once the early reply to the pause after ``voiced_until`` is ready, end the turn if its silence allows."""
        try:
            await turn.until_early_ready(voiced_until)
            async with self._order:
                if self._turn is turn:
                    await self._confirm()
        except Exception:  # the next chunk's _confirm ends the turn all the same, at reply_ready_wait_ms
            logger.exception("waiting for the early reply of %s failed", self._client_id)

    def _stop_readiness(self) -> None:
        task, self._readiness = self._readiness, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _maybe_transcribe_early(self) -> None:
        turn = self._turn
        if self._pipeline.transcriber is None or turn is None or not self._vad.speaking:
            return
        voiced_until = self._vad.last_voiced_ms
        if turn.early_until is not None and turn.early_until != voiced_until:
            turn.drop_early()  # speech resumed: the early words and reply are stale
        if turn.early_until is not None or self._vad.silence_so_far_ms < self._early_after_ms:
            return
        audio = self._vad.utterance_so_far()
        if audio is None:
            return
        # Pushing to talk, the release ends the turn: no pause is judged, so no words are read.
        read = self._endpointer.reads_text and not self.push_to_talk
        turn.hear_early(AudioClip(audio, VAD_RATE), voiced_until, read=read)

    def _drop_turn(self) -> None:
        """The utterance being listened to is no turn after all (or is over): its early work goes."""
        turn, self._turn = self._turn, None
        self._confirming = None
        self._stop_readiness()
        if turn is not None:
            turn.drop_early()

    # -- speech over the bot's own reply ---------------------------------------------------------------------------

    async def _speech_started(self) -> None:
        """Speech began: it interrupts the bot at once, or, if the bot may be hearing itself, it is suspect."""
        await self._clear_suspicion()
        if self._pipeline.barge_in_enabled and self._pipeline.may_hear_itself(self._client_id):
            self._suspect = True
            self._next_check_ms = self._interrupt_min_ms
            self._held = await self._pipeline.pause_reply(self._client_id)
        elif self._pipeline.barge_in(self._client_id):
            logger.info("barge-in by %s", self._client_id)

    async def _clear_suspicion(self) -> None:
        """Forget the check of the utterance that ended; a reply it held plays on."""
        if self._checks is not None:
            self._checks.cancel()
            self._checks = None
        self._suspect = False
        self._echo_words, self._last_look, self._looked_bytes = [], [], 0
        if self._held:
            self._held = False
            await self._pipeline.resume_reply(self._client_id)

    def _maybe_check_interruption(self) -> None:
        """Suspect speech has been voiced long enough for its next words to be checked."""
        if self._suspect and self._checks is None and self._vad.voiced_ms >= self._next_check_ms:
            audio = self._vad.utterance_so_far()
            if audio is not None:
                self._checks = asyncio.create_task(self._check(audio), name="interruption")

    async def _check(self, audio: bytes) -> None:
        try:
            if not self._held:  # a later look: the reply is held again while it is taken
                self._held = await self._pipeline.pause_reply(self._client_id)
            interrupting = await self._interrupts(audio)
            async with self._order:
                if self._suspect:
                    await self._conclude(interrupting)
        finally:
            if self._checks is asyncio.current_task():
                self._checks = None

    async def _interrupts(self, audio: bytes) -> bool:
        """Whether the utterance so far (``audio``) has words of the user's own, not the reply's, since the last
        look (and ``LOOK_OVERLAP_S`` before it); the words found to be the reply's are remembered."""
        transcriber = self._pipeline.transcriber
        if transcriber is None:
            return True  # no way to tell: speech interrupts, as it did before
        until = time.perf_counter()
        start = max(0, self._looked_bytes - round(LOOK_OVERLAP_S * VAD_RATE) * 2)
        # When the clip's audio was recorded: the stream's clock (the utterance's padding included).
        began = self._stream_began if self._stream_began is not None else until
        since = began + (self.speech_start_ms - self._vad.prefix_padding_ms) / 1000 + start / (2 * VAD_RATE)
        # The words heard can only be an echo of what the page played while they could hear it: not the start of
        # a long reply (the echo of a reply can keep one utterance going all through it), nor words still to come
        # (a user who goes on with their sentence as the reply starts says its words first).
        recent = self._pipeline.reply_played(self._client_id, since - ECHO_LAG_S - PLACE_ERROR_S, until + PLACE_ERROR_S)
        clip = AudioClip(audio[start:], VAD_RATE)
        try:
            # What the page played meanwhile as Whisper's previous text: its words, heard back faint or cut off, are
            # heard as those words ("of France", not "full of friends"), and words of the prompt Whisper makes up are
            # the echo's. That errs towards "echo", which only delays a real interruption to the next look, where a
            # misheard echo would have cut the reply off.
            heard = await transcriber.transcribe(clip, self._pipeline.language(self._client_id), prompt=recent)
        except BotError:
            return False  # no words (no-speech), or none to be had: the reply plays on
        heard_words = words(heard.text)
        logger.debug("heard over the reply of %s since %.1f s: %r", self._client_id, start / 32000, heard.text)
        if not heard_words or is_echo(heard.text, recent):
            self._echo_words += continued(self._last_look, heard_words)
            self._last_look = heard_words
            if self._turn is not None:
                self._turn.echo = list(self._echo_words)  # should the user's own words follow, they answer those
            self._looked_bytes = len(audio)
            return False
        return True

    async def _conclude(self, interrupting: bool) -> None:
        if interrupting:
            self._suspect = self._held = False  # the barge-in ends the held reply
            if self._pipeline.barge_in(self._client_id):
                logger.info("barge-in by %s (words heard over the reply)", self._client_id)
            return
        logger.info("speech over the reply of %s has no words of its own so far: it plays on", self._client_id)
        self._next_check_ms = self._vad.voiced_ms + self._interrupt_min_ms
        if self._held:
            self._held = False
            await self._pipeline.resume_reply(self._client_id)

    async def _end_turn(
        self, end: SpeechEnd, reason: EndReason, probability: float | None = None, reading: float | None = None
    ) -> None:
        """The user's turn is over: say so, and answer the utterance (with its early work, if it still holds) —
        unless it was heard over the bot's reply and had no words of its own."""
        # A word too short to have started a turn (pushing to talk) is a turn of its own all the same.
        turn, self._turn = self._turn or self._pipeline.new_turn(self._client_id), None
        self._confirming = None
        self._stop_readiness()
        self.speech_end_ms = end.end_ms
        if self._suspect:  # the whole utterance decides: words of the user's own since the last look, or none
            if self._checks is not None:
                self._checks.cancel()
                self._checks = None
            interrupting = await self._interrupts(end.utterance)
            await self._conclude(interrupting)
            if not interrupting:
                await self._clear_suspicion()
                turn.drop_early()
                await turn.outlet.send(SpeechStopped("echo"))
                return
        turn.echo = list(self._echo_words)  # the reply heard back before the user's words interrupted it, if any
        await turn.outlet.send(SpeechStopped(reason, probability, reading))
        # When the last voiced sample arrived: the VAD has judged this much audio since.
        lag_s = max(0, self._vad.position_ms - end.end_ms) / 1000 if end.reason != "flush" else 0.0
        origin = time.perf_counter() - lag_s
        if turn.early_until != end.end_ms:
            turn.drop_early()  # it heard less than the turn said
        logger.info(
            "turn of %s ended: %.2f s (%s%s)", self._client_id, end.duration_s, reason,
            ", transcribed early" if turn.early_until is not None else "",
        )
        future = self._pipeline.submit_pcm(self._client_id, end.utterance, origin, turn)
        self._on_turn(future, turn.turn_id)


class _Resampler:
    """Streaming PCM16 resampling to 16 kHz with state carried across chunks."""

    def __init__(self, rate: int) -> None:
        if not 8000 <= rate <= 96000:
            raise ProtocolError("sample_rate must be between 8000 and 96000", code="bad-message")
        import av

        self._rate = rate
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=VAD_RATE)
        self._pts = 0

    def convert(self, pcm: bytes) -> bytes:
        import av

        samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
        if samples.shape[1] == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        self._pts += samples.shape[1]
        return b"".join(bytes(out.to_ndarray().tobytes()) for out in self._resampler.resample(frame))
