"""Speaker: reads a reply aloud while it is being written, one sentence at a time, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass

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
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(slots=True)
class _Played:
    start: float  # perf_counter
    end: float
    text: str


class Playback:
    """When the listener hears each sentence of a reply, estimated from the audio sent: a page plays each frame as it
    arrives, or after the one before it (and plays on, quieter, what it has while the reply is held). A word is placed
    in its sentence's audio by its share of the sentence's characters (off by a few hundred milliseconds: speech is
    not spoken evenly).

    What the microphone can hear back of a reply is the words played just before (``core.voice.interruption``).
    """

    def __init__(self) -> None:
        self._played: list[_Played] = []

    def add(self, start: float, end: float, text: str) -> None:
        """``text`` plays from ``start`` to ``end`` (perf_counter seconds; equal when its length is unknown)."""
        self._played.append(_Played(start, max(start, end), text))

    def words_between(self, since: float, until: float) -> str:
        """The words whose estimated playing time overlaps ``since``…``until`` (perf_counter seconds), in order."""
        heard = []
        for played in self._played:
            if played.end < since or played.start > until:
                continue
            seconds_per_char = (played.end - played.start) / max(1, len(played.text))
            for word in _WORD.finditer(played.text):
                starts, ends = (played.start + seconds_per_char * at for at in word.span())
                if starts <= until and ends >= since:
                    heard.append(word.group())
        return " ".join(heard)


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
        self._plays_from: list[float] = []  # perf_counter when each of ``spoken`` starts playing
        self.failed: TTSError | None = None
        self._told: set[str] = set()  # error codes this reply's tabs were already sent
        self._given: list[str] = []
        self.timings: dict[str, float] = {}
        self._seq = 0
        self._playhead = 0.0  # perf_counter when the audio sent so far will have been played, if played without gaps
        self.playback = Playback()  # when the listener hears each sentence sent

    def release(self, origin: float) -> None:
        """Start sending (what is already synthesised goes at once); ``origin`` is when the user's speech ended."""
        self._origin = origin
        self._released.set()

    def hold(self) -> None:
        """Send nothing more until ``resume`` (the user may be interrupting; synthesis goes on meanwhile). The page
        plays what it has, quieter (``reply_paused``), so the playback clock runs on."""
        self._released.clear()

    def resume(self) -> None:
        """Send again after ``hold``."""
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

    def heard(self, at: float) -> list[str]:
        """The pieces of ``spoken`` the page had begun to play by ``at`` (perf_counter): the rest were sent ahead
        (``PLAYBACK_LEAD_S``) but not heard."""
        return [piece for piece, start in zip(self.spoken, self._plays_from, strict=True) if start <= at]

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
            plays_from: float | None = None
            for chunk in chunks:
                await self._paced(PLAYBACK_LEAD_S)
                event = AudioEvent(self._seq, sentence, chunk.format, chunk.sample_rate)
                await self._outlet.send(event, chunk.data)
                self._playhead = max(self._playhead, time.perf_counter())
                if plays_from is None:
                    plays_from = self._playhead
                self._playhead += chunk.duration_s or 0.0
                self._seq += 1
                if not self.first_sent.is_set():
                    self.timings["tts_first_audio_ms"] = round((synthesised - started) * 1000, 1)
                    self.timings["first_audio_ms"] = round((time.perf_counter() - self._origin) * 1000, 1)
                    self.first_sent.set()
            if plays_from is not None:
                self.playback.add(plays_from, self._playhead, sentence)
            self.spoken.append(piece)
            self._plays_from.append(max(self._playhead, time.perf_counter()) if plays_from is None else plays_from)
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
