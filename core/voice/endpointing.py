"""Endpointing: deciding that a user's turn is over, apart from hearing that they speak (``core.voice.vad``).

A fixed silence is a poor judge of a finished turn: people pause mid-sentence ("a table for… four people"), and
open benchmarks of real human turns show a silence-only endpointer cutting users off 22–56 % of the time at
300–600 ms (Smart Turn's model card, pipecat-ai/smart-turn). So, with an end-of-turn model, a silence of
``silence_ms`` only asks the question: the model judges the utterance so far, once per pause; if the user has not
finished, the turn goes on until they speak again or ``max_silence_ms`` of silence ends it whatever the model said.
The model is asked once because it answers for the pause it hears: as the silence grows, an unfinished sentence
looks finished (measured on Piper speech: cuts scoring 0.01–0.1 after 200 ms of silence score above 0.9 after
350–500 ms), which is why pipecat also asks it once, at 200 ms.
The audio model hears how a sentence is said, not what it says: on our pause set it took "Remind me to call the",
"Turn the volume" and "Convert 100" (Whisper's words before a mid-sentence pause) for finished turns at 0.9 and
more. So the words are read too, when the LLM can read them (``core.interfaces.TurnTextJudge``: the local model's
chance that its chat template's end-of-turn token comes next, as LiveKit's turn detector reads it): words it gives
less than ``text_unfinished_below`` hold the turn whatever the audio says, and words it gives more than
``text_finished_above`` end it even when the audio model hesitates, as it does on some complete questions. The words
are those transcribed early (``vad.early_transcription_ms``, which must come before ``silence_ms``); a reading that
takes longer than ``core.voice.listener.WORDS_WAIT_S`` (the model busy with another reply) is not waited for.
A pause judged finished ends the turn at once only when both judges are sure of it (the audio model at
``sure_above`` or more, and the words, when read, above ``text_finished_above``); otherwise it ends once the silence
has lasted ``confirm_silence_ms`` (at or under ``silence_ms``: never), unless speech resumes first. Of 19 cut-offs
on our pause set and a held-out set, 16 came where the words so far made a request of their own ("Set a timer | for
ten minutes"): the words cannot tell those pauses from finished turns, and the audio model is hardly less sure of
them; what remains is the length of the pause. The early reply is written and its speech synthesised (held)
meanwhile (``core.turn``), so on two cores a turn ended by the confirming silence loses little of its first audio,
which was ready ~0.8 s after the end of speech; its ``speech_stopped`` comes ~0.3 s later than a sure verdict's.
Early in a conversation the local model reads most complete requests below 0.5, so most turns are confirmed then;
later, with a history, most are sure.
Words held below ``text_unfinished_below`` are graded too (``wait_ms``): with no history the untuned model reads
short commands and answers at 1e-4 to 0.002 ("Set a timer for 10 minutes", "Yes"), and fragments ("Set a timer for",
"Remind me to call the") at 1e-8 to 1e-5. So a pause the audio model judged finished whose words read at least
``text_unlikely_below`` ends once the silence has lasted ``doubt_silence_ms``; only lower readings, or an audio model
that hears an unfinished sentence too, wait for ``max_silence_ms``.
A pause judged to end the turn (at once, or after its silence) ends it no sooner than the reply started early for
it is ready to be heard (``reply_ready_wait_ms``, ``core.voice.listener``): ending sooner answers no sooner, and
until then a user who speaks again is still in their turn. On two cores the first audio is ready 1–1.4 s after the
end of speech, which took ``bench_turns``' cut-offs from 11/40 to 3/40 (two of them 1200 ms pauses) with first audio
unchanged; on a fast machine the window is shorter, and the confirming silence matters more.
Without a model (``vad.end_of_turn`` = ``silence``), ``silence_ms`` of silence ends the turn, as OpenAI's
``server_vad`` does.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import TYPE_CHECKING, Protocol

from core.events import EndReason
from core.voice.vad import SAMPLE_RATE, CutReason

if TYPE_CHECKING:
    from core.config import VADSettings

logger = logging.getLogger(__name__)

# How each way the VAD can cut an utterance reads as the end of a turn, with a model judging and without.
_REASONS: dict[CutReason, EndReason] = {
    "cut": "end_of_turn",
    "max-length": "max_utterance",
    "flush": "push_to_talk",
}


class EndOfTurnModel(Protocol):
    """Judges from audio alone whether a speaker has finished their turn."""

    name: str

    def predict(self, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> float:
        """Probability (0..1) that the turn is complete, given the utterance so far (mono PCM16); blocking."""
        ...


class Endpointer:
    """The endpointing policy, and the end-of-turn model every stream of the server shares.

    The model runs in worker threads, at most ``max_concurrent`` at once (a judgement takes 10–60 ms on a CPU).
    """

    def __init__(
        self,
        model: EndOfTurnModel | None,
        *,
        silence_ms: int,
        max_silence_ms: int,
        threshold: float = 0.5,
        max_concurrent: int = 2,
        reads_text: bool = False,
        text_unfinished_below: float = 0.01,
        text_finished_above: float = 0.5,
        confirm_silence_ms: int = 0,
        sure_above: float = 0.9,
        text_unlikely_below: float = 0.0,
        doubt_silence_ms: int = 0,
        reply_ready_wait_ms: int = 0,
    ) -> None:
        self.model = model
        self.silence_ms = silence_ms
        self.max_silence_ms = max_silence_ms if model is not None else silence_ms
        self.threshold = threshold
        self.reads_text = reads_text and model is not None
        self.text_unfinished_below = text_unfinished_below
        self.text_finished_above = text_finished_above
        # At or under silence_ms, every finished judgement ends the turn at once.
        self.confirm_silence_ms = min(confirm_silence_ms, self.max_silence_ms)
        self.sure_above = sure_above
        self.text_unlikely_below = text_unlikely_below
        # Never shorter than the confirming silence: a doubted pause waits at least as long as a probable end. 0, or
        # at or over max_silence_ms: words that hold the turn hold it until max_silence_ms.
        doubt_silence_ms = max(doubt_silence_ms, self.confirm_silence_ms) if doubt_silence_ms else 0
        self.doubt_silence_ms = doubt_silence_ms if doubt_silence_ms < self.max_silence_ms else 0
        # A pause judged to end the turn ends it no sooner than the early reply is ready, up to this much silence.
        self.reply_ready_wait_ms = min(reply_ready_wait_ms, self.max_silence_ms) if model is not None else 0
        self._slots = asyncio.Semaphore(max_concurrent)

    @classmethod
    def from_settings(cls, model: EndOfTurnModel, vad: VADSettings, *, reads_text: bool) -> Endpointer:
        """The policy ``vad`` configures, judged by ``model``; ``reads_text``: the LLM can read the words."""
        return cls(
            model,
            silence_ms=vad.silence_ms,
            max_silence_ms=vad.max_silence_ms,
            threshold=vad.end_of_turn_threshold,
            reads_text=vad.end_of_turn_text and reads_text,
            text_unfinished_below=vad.text_unfinished_below,
            text_finished_above=vad.text_finished_above,
            confirm_silence_ms=vad.confirm_silence_ms,
            sure_above=vad.end_of_turn_sure,
            text_unlikely_below=vad.text_unlikely_below,
            doubt_silence_ms=vad.doubt_silence_ms,
            reply_ready_wait_ms=vad.reply_ready_wait_ms,
        )

    def with_threshold(self, threshold: float, *, confirm: bool = True) -> Endpointer:
        """This policy with another end-of-turn threshold, sharing the model and its worker slots (a Realtime
        session's ``semantic_vad`` eagerness); without ``confirm``, every finished verdict ends the turn at once, not
        even waiting for the early reply to be ready."""
        variant = copy.copy(self)
        variant.threshold = threshold
        if not confirm:
            variant.confirm_silence_ms = 0
            variant.reply_ready_wait_ms = 0
        return variant

    @property
    def name(self) -> str:
        """What ends a turn, for ``/api/status``: the model's name, or ``silence``."""
        return self.model.name if self.model is not None else "silence"

    def reason(self, cut: CutReason) -> EndReason:
        """Why the turn ended, when the VAD cut the utterance for ``cut``."""
        if cut == "silence":
            return "max_silence" if self.model is not None else "end_of_turn"
        return _REASONS[cut]

    def due(self, silence_ms: int, judged: bool) -> bool:
        """Whether a pause that has lasted ``silence_ms`` (and was ``judged`` already, or not) is to be judged now."""
        return self.model is not None and not judged and silence_ms >= self.silence_ms

    async def judge(self, pcm: bytes) -> float | None:
        """The model's probability that the utterance ``pcm`` (16 kHz mono PCM16) is a finished turn; None if it
        failed (logged; the turn then ends at ``max_silence_ms``)."""
        assert self.model is not None
        async with self._slots:
            try:
                return await asyncio.to_thread(self.model.predict, pcm, SAMPLE_RATE)
            except Exception:
                logger.exception("the end-of-turn model failed on a %.1f s utterance", len(pcm) / 2 / SAMPLE_RATE)
                return None

    def finished(self, audio: float | None, text: float | None = None) -> bool | None:
        """Whether a judged pause ends the turn, from the audio model's probability and the LLM's reading of the
        words (None: not read); None when there is no judgement at all (the turn then ends at ``max_silence_ms``)."""
        if text is not None and text > self.text_finished_above:
            return True
        if audio is None:
            return None
        return audio >= self.threshold and (text is None or text >= self.text_unfinished_below)

    def sure(self, audio: float | None, text: float | None = None) -> bool:
        """Whether a pause judged finished (``finished`` True) ends the turn now rather than once the silence has
        lasted ``confirm_silence_ms``: the audio model gave it ``sure_above`` or more and the words, when they are
        read, more than ``text_finished_above`` (a reading that did not come is no certainty)."""
        if self.confirm_silence_ms <= self.silence_ms:
            return True
        if audio is None or audio < self.sure_above:
            return False
        return not self.reads_text or (text is not None and text > self.text_finished_above)

    def held_by_words(self, audio: float | None, text: float | None) -> bool:
        """Whether a judged pause is unfinished only because of the words, and they are not quite unlikely to end a
        turn: the audio model judged it finished, and the words' reading is at least ``text_unlikely_below`` but
        under ``text_unfinished_below`` (never, when ``text_unlikely_below`` is at or over it). That band holds the
        untuned model's reading of short commands and answers early in a conversation: "Yes" 0.002, "Set a timer
        for 10 minutes" 0.0005, against 1e-8 to 1e-5 for "Set a timer for" or "Remind me to call the"."""
        if audio is None or text is None or audio < self.threshold:
            return False
        return self.text_unlikely_below <= text < self.text_unfinished_below

    def wait_ms(self, audio: float | None, text: float | None = None) -> int | None:
        """How long the silence of a judged pause must last for it to end the turn, given the audio model's
        probability and the words' reading: 0 (at once: both judges are sure), ``confirm_silence_ms`` (judged
        finished, not surely), ``doubt_silence_ms`` (``held_by_words``), or None: only ``max_silence_ms`` ends it.
        The less either judge believes the turn is over, the longer the silence that must confirm it."""
        finished = self.finished(audio, text)
        if finished:
            return 0 if self.sure(audio, text) else self.confirm_silence_ms
        if finished is False and self.doubt_silence_ms and self.held_by_words(audio, text):
            return self.doubt_silence_ms
        return None

    def describe(self) -> dict[str, object]:
        return {
            "end_of_turn": self.name,
            "reads_text": self.reads_text,
            "silence_ms": self.silence_ms,
            "max_silence_ms": self.max_silence_ms,
            "confirm_silence_ms": self.confirm_silence_ms,
            "doubt_silence_ms": self.doubt_silence_ms,
            "reply_ready_wait_ms": self.reply_ready_wait_ms,
            "text_unlikely_below": self.text_unlikely_below,
            "text_unfinished_below": self.text_unfinished_below,
            "text_finished_above": self.text_finished_above,
        }
