"""Endpointing: deciding that a user's turn is over, apart from hearing that they speak (``core.voice.vad``).

A fixed silence is a poor judge of a finished turn: people pause mid-sentence ("a table for… four people"), and
open benchmarks of real human turns show a silence-only endpointer cutting users off 22–56 % of the time at
300–600 ms (Smart Turn's model card, pipecat-ai/smart-turn). So, with an end-of-turn model, a silence of
``silence_ms`` only asks the question: the model judges the utterance so far, once per pause; if the user has not
finished, the turn goes on until they speak again or ``max_silence_ms`` of silence ends it whatever the model said.
The model is asked once because it answers for the pause it hears: as the silence grows, an unfinished sentence
looks finished (measured on Piper speech: cuts scoring 0.01–0.1 after 200 ms of silence score above 0.9 after
350–500 ms), which is why pipecat also asks it once, at 200 ms.
Without a model (``vad.end_of_turn`` = ``silence``), ``silence_ms`` of silence ends the turn, as OpenAI's
``server_vad`` does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from core.events import EndReason
from core.voice.vad import SAMPLE_RATE, CutReason

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
    ) -> None:
        self.model = model
        self.silence_ms = silence_ms
        self.max_silence_ms = max_silence_ms if model is not None else silence_ms
        self.threshold = threshold
        self._slots = asyncio.Semaphore(max_concurrent)

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

    def describe(self) -> dict[str, object]:
        return {
            "end_of_turn": self.name,
            "silence_ms": self.silence_ms,
            "max_silence_ms": self.max_silence_ms,
        }
