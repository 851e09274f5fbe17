"""Speaker: reads a reply aloud while it is being written, one sentence at a time, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from core.cpu import CpuGate
from core.errors import TTSError
from core.events import AudioEvent, ErrorEvent
from core.interfaces import TTSEngine
from core.language import TextLanguage
from core.outlet import TurnOutlet
from core.speech_text import SentenceSplitter, clean_for_speech

logger = logging.getLogger(__name__)

_DONE = None
# About 2 s of speech: a longer first sentence is cut at a space, so Piper's first audio comes in ~0.15 s.
FIRST_PIECE_MAX_CHARS = 40
# Audio goes no further ahead of the listener's playback than this, as LiveKit and Pipecat pace their output: the page
# always has the next sentence before the current one ends, and the reply counts as being spoken (so speech can
# interrupt it, and its echo is recognised) until it has been played, not merely sent.
PLAYBACK_LEAD_S = 1.0


class Speaker:
    """Cuts streamed reply text into sentences and sends each one's audio as soon as it is synthesised, each in
    the voice of its language (the turn's, unless the sentence is plainly in another).

    Text is fed from the LLM loop without waiting; synthesis is ``run``, a coroutine its owner runs beside the
    model's stream (in the turn's task group, ``core.turn``), so the first sentence is heard while the model is still
    writing the rest; cancelling it stops the speech at once. A ``held`` speaker synthesises but sends nothing until
    it is released: the speech of a reply started before the end of speech was certain (see ``core.prefetch``).
    While the first piece is synthesised, ``cpu`` is held, so the local model pauses (``core.cpu``).
    """

    def __init__(
        self,
        tts: TTSEngine,
        outlet: TurnOutlet,
        *,
        origin: float,
        held: bool = False,
        language: str | None = None,
        detect: TextLanguage | None = None,
        cpu: CpuGate | None = None,
    ) -> None:
        self._tts = tts
        self._cpu = cpu  # held while the first piece is synthesised: the local model pauses meanwhile
        self._language = language  # the turn's; a sentence plainly in another language gets that one's voice
        self._detect = detect
        self._outlet = outlet
        self._client_id = outlet.client_id
        self._origin = origin  # perf_counter of the end of the user's speech (or of their message)
        self._released = asyncio.Event()
        if not held:
            self._released.set()
        # Raw pieces, so an interrupted reply can be stored as the text that was really heard.
        self._splitter = SentenceSplitter(clean=False, first_max_chars=FIRST_PIECE_MAX_CHARS)
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.first_sent = asyncio.Event()
        # The first audio is synthesised (sent, or waiting for ``release``), or there will be none.
        self.ready = asyncio.Event()
        self._finished = False
        self.spoken: list[str] = []
        self.failed: TTSError | None = None
        self._told: set[str] = set()  # error codes this reply's tabs were already sent
        self._given: list[str] = []
        self.timings: dict[str, float] = {}
        self._seq = 0
        self._playhead = 0.0  # perf_counter when the audio sent so far will have been played, if played without gaps
        self._held_left: float | None = None  # while held: how much of the sent audio was still to play

    def release(self, origin: float) -> None:
        """Start sending (what is already synthesised goes at once); ``origin`` is when the user's speech ended."""
        self._origin = origin
        self._released.set()

    def hold(self) -> None:
        """Send nothing more until ``resume`` (the user may be interrupting, and the page stops playing; synthesis
        goes on meanwhile)."""
        if self._released.is_set():
            self._released.clear()
            self._held_left = max(0.0, self._playhead - time.perf_counter())

    def resume(self) -> None:
        """Send again after ``hold``: the page plays on from where it stopped."""
        if not self._released.is_set():
            if self._held_left is not None:
                self._playhead = time.perf_counter() + self._held_left
                self._held_left = None
            self._released.set()

    @property
    def text(self) -> str:
        """Everything the speaker was given to read so far (its raw pieces, sent or not)."""
        return "".join(self._given)

    def feed(self, delta: str) -> None:
        self._given.append(delta)
        for sentence in self._splitter.feed(delta):
            self._queue.put_nowait(sentence)

    def finish(self) -> None:
        """No more text is coming (again: nothing more happens)."""
        if self._finished:
            return
        self._finished = True
        for sentence in self._splitter.flush():
            self._queue.put_nowait(sentence)
        self._queue.put_nowait(_DONE)

    @property
    def frames(self) -> int:
        """Audio frames sent so far."""
        return self._seq

    async def run(self) -> None:
        """Synthesise and send each sentence fed, in order, until ``finish`` and the last has been played."""
        try:
            await self._speak()
        finally:
            self.ready.set()

    async def _speak(self) -> None:
        while (piece := await self._queue.get()) is not _DONE:
            sentence = clean_for_speech(piece)
            if self.failed is not None or not sentence:
                continue
            started = time.perf_counter()
            language = (self._detect.detect(sentence) if self._detect is not None else None) or self._language
            first = self._cpu.priority() if self._cpu is not None and not self.spoken else contextlib.nullcontext()
            try:
                with first:
                    chunks = [chunk async for chunk in self._tts.synthesize(sentence, language=language)]
            except TTSError as err:
                # No voice for this sentence's language: it is shown, not spoken (the tab is told once), and the
                # sentences that have a voice are still read. Any other failure ends the reply's speech.
                if err.code != "tts-no-voice":
                    self.failed = err
                # What the user gets at once: the notice (and the text), not audio; while held, nothing more is
                # synthesised until release, so waiting for a later sentence's audio would only wait.
                self.ready.set()
                logger.warning("speech for %s failed: %s (%s)", self._client_id, err.code, err.__cause__ or err)
                await self._released.wait()
                if err.code not in self._told:
                    self._told.add(err.code)
                    await self._outlet.send(ErrorEvent(err.code, err.message))
                continue
            synthesised = time.perf_counter()
            if chunks:
                self.ready.set()
            for chunk in chunks:
                await self._paced(PLAYBACK_LEAD_S)
                event = AudioEvent(self._seq, sentence, chunk.format, chunk.sample_rate)
                await self._outlet.send(event, chunk.data)
                if chunk.duration_s:
                    self._playhead = max(self._playhead, time.perf_counter()) + chunk.duration_s
                self._seq += 1
                if not self.first_sent.is_set():
                    self.timings["tts_first_audio_ms"] = round((synthesised - started) * 1000, 1)
                    self.timings["first_audio_ms"] = round((time.perf_counter() - self._origin) * 1000, 1)
                    self.first_sent.set()
            self.spoken.append(piece)
        self.ready.set()  # all of it synthesised (a reply with nothing to say)
        await self._paced(0.0)  # the reply is spoken once it has been played

    async def _paced(self, lead_s: float) -> None:
        """Wait until sending (released) and the audio sent is at most ``lead_s`` from being played out."""
        while True:
            await self._released.wait()
            wait = self._playhead - time.perf_counter() - lead_s
            if wait <= 0:
                return
            await asyncio.sleep(wait)
