"""Server-side voice activity detection: Silero VAD (the ONNX model faster-whisper ships) on streamed 16 kHz PCM.

One ``SileroModel`` (an ONNX session, whose ``run`` is thread-safe) serves every stream; each stream owns a
``VoiceActivityDetector`` that carries the model's recurrent state, the 64-sample context and the audio of the
utterance in progress. ``feed`` is synchronous and cheap (one ~0.1 ms model run per 32 ms window).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW = 512  # samples the model judges at once (32 ms at 16 kHz)
CONTEXT = 64  # samples of the previous window the v5/v6 model expects before each window
_BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
# A would-be utterance whose voiced windows are interrupted by this much silence before reaching
# ``min_speech_ms`` was a blip (a click, a cough), not the start of a turn.
_BLIP_GAP_MS = 200


def bundled_model_path() -> str:
    """The Silero VAD v6 ONNX file inside the installed faster-whisper (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("faster-whisper is not installed")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "assets" / "silero_vad_v6.onnx"
        if path.is_file():
            return str(path)
    raise RuntimeError("faster-whisper ships no silero_vad_v6.onnx")


class SileroModel:
    """The Silero VAD ONNX session, shared by every stream; loading blocks, so do it in a worker thread."""

    def __init__(self, path: str | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # A window is a few hundred multiply-adds per layer: threads cost more than they save.
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        self.path = path or bundled_model_path()
        self._session: Any = onnxruntime.InferenceSession(
            self.path, sess_options=options, providers=["CPUExecutionProvider"]
        )

    def run(self, window: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Speech probability of one ``(1, 576)`` float32 window (context + samples) and the next state."""
        prob, h, c = self._session.run(None, {"input": window, "h": h, "c": c})
        return float(prob.reshape(-1)[0]), h, c


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """Speech began ``at_ms`` after the stream started (or was reset); it lasted ``min_speech_ms`` already."""

    at_ms: int


# Why an utterance ended: ``silence_ms`` of silence, ``max_utterance_s`` of audio, the stream's end (``flush``),
# or the caller's decision while the speaker was silent (``cut``: the endpointer judged the turn over).
CutReason = Literal["silence", "max-length", "flush", "cut"]


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """An utterance: 16 kHz mono PCM16 from ``prefix_padding_ms`` before the speech to a little after it."""

    utterance: bytes
    start_ms: int
    end_ms: int
    reason: CutReason

    @property
    def duration_s(self) -> float:
        return len(self.utterance) / 2 / SAMPLE_RATE


VADEvent = SpeechStart | SpeechEnd


class VoiceActivityDetector:
    """Turns one stream of 16 kHz mono PCM16 into SpeechStart and SpeechEnd events; not thread-safe."""

    def __init__(
        self,
        model: SileroModel,
        *,
        threshold: float = 0.5,
        silence_ms: int = 500,
        prefix_padding_ms: int = 300,
        suffix_padding_ms: int = 200,
        min_speech_ms: int = 250,
        max_utterance_s: float = 30.0,
    ) -> None:
        self._model = model
        self.threshold = threshold
        # Once speech has started, only clearly lower probabilities count as silence (Silero's own hysteresis).
        self.neg_threshold = max(threshold - 0.15, 0.01)
        self.silence_ms = silence_ms
        self.prefix_padding_ms = prefix_padding_ms
        self.suffix_padding_ms = suffix_padding_ms
        self.min_speech_ms = min_speech_ms
        self.max_utterance_s = max_utterance_s
        self.reset()

    def reset(self) -> None:
        """Forget everything: the model's state, the audio held and the clock."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = bytearray()  # bytes of an incomplete window
        self._samples = 0  # samples judged so far: the clock
        self._state: Literal["idle", "maybe", "speech"] = "idle"
        self._recent = bytearray()  # while idle: the last prefix_padding_ms of audio
        self._audio = bytearray()  # while maybe/speech: the utterance so far, prefix included
        self._start = 0  # sample where the speech began
        self._voiced = 0  # voiced samples while deciding whether this is speech
        self._silent = 0  # samples since the last voiced window
        self._last_voiced = 0  # sample just after the last voiced window

    @property
    def speaking(self) -> bool:
        """True between a SpeechStart and its SpeechEnd."""
        return self._state == "speech"

    @property
    def position_ms(self) -> int:
        """How much audio has been judged since the stream started (or was reset)."""
        return self._samples * 1000 // SAMPLE_RATE

    @property
    def silence_so_far_ms(self) -> int:
        """While speaking: how long it has been silent since the last voiced window (0 otherwise)."""
        return self._ms(self._silent) if self._state == "speech" else 0

    @property
    def voiced_ms(self) -> int:
        """While speaking: how much of the utterance so far was voiced (0 otherwise)."""
        return self._ms(self._voiced) if self._state == "speech" else 0

    @property
    def last_voiced_ms(self) -> int:
        """Where the last voiced window of the current utterance ended (a SpeechEnd's ``end_ms``)."""
        return self._ms(self._last_voiced)

    def utterance_so_far(self) -> bytes | None:
        """While speaking: the utterance exactly as a SpeechEnd would carry it if the silence ended it now.

        Once ``suffix_padding_ms`` of silence has passed, this equals the final utterance unless speech resumes,
        so it can be transcribed early, while the rest of ``silence_ms`` is still being waited for.
        """
        if self._state != "speech":
            return None
        extra = self._silent - self.suffix_padding_ms * SAMPLE_RATE // 1000
        return bytes(self._audio[: len(self._audio) - extra * 2] if extra > 0 else self._audio)

    def feed(self, pcm: bytes) -> list[VADEvent]:
        """Judge ``pcm`` (any length; an incomplete window waits for the next call) and report what happened."""
        self._pending += pcm
        events: list[VADEvent] = []
        size = WINDOW * 2
        usable = len(self._pending) // size * size
        for offset in range(0, usable, size):
            event = self._judge(bytes(self._pending[offset : offset + size]))
            if event is not None:
                events.append(event)
        del self._pending[:usable]
        return events

    def flush(self, *, tentative: bool = False) -> SpeechEnd | None:
        """End the utterance now (push-to-talk released): it, if speech had started (or, ``tentative``, if any voiced
        window had been heard: a word shorter than ``min_speech_ms``), else None; then reset."""
        end: SpeechEnd | None = None
        if self._state == "speech" or (tentative and self._state == "maybe"):
            self._audio += self._pending[: len(self._pending) // 2 * 2]
            end = SpeechEnd(bytes(self._audio), self._ms(self._start), self._ms(self._last_voiced), "flush")
        self.reset()
        return end

    def cut(self) -> SpeechEnd | None:
        """End the utterance now, as ``silence_ms`` would have (the trailing silence beyond ``suffix_padding_ms``
        dropped, the recent audio kept as the next one's prefix): it, if speech had started, else None."""
        if self._state != "speech":
            return None
        return self._end("cut")

    def _ms(self, samples: int) -> int:
        return samples * 1000 // SAMPLE_RATE

    def _judge(self, raw: bytes) -> VADEvent | None:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        window = np.concatenate((self._context, samples)).reshape(1, -1)
        prob, self._h, self._c = self._model.run(window, self._h, self._c)
        self._context = samples[-CONTEXT:]
        start = self._samples
        self._samples += WINDOW

        if self._state == "idle":
            if prob < self.threshold:
                self._recent += raw
                del self._recent[: max(0, len(self._recent) - self.prefix_padding_ms * _BYTES_PER_MS)]
                return None
            self._state = "maybe"
            self._audio = self._recent + raw
            self._recent = bytearray()
            self._start = start
            self._voiced = 0
            self._silent = 0
        else:
            self._audio += raw
        voiced = prob >= (self.threshold if self._state == "maybe" else self.neg_threshold)
        if voiced:
            self._voiced += WINDOW
            self._silent = 0
            self._last_voiced = self._samples
        else:
            self._silent += WINDOW

        if self._state == "maybe":
            if self._voiced >= self.min_speech_ms * SAMPLE_RATE // 1000:
                self._state = "speech"
                return SpeechStart(self._ms(self._start))
            if self._silent >= _BLIP_GAP_MS * SAMPLE_RATE // 1000:
                self._back_to_idle(keep_prefix=True)
            return None

        if self._silent >= self.silence_ms * SAMPLE_RATE // 1000:
            return self._end("silence")
        if len(self._audio) >= self.max_utterance_s * SAMPLE_RATE * 2:
            return self._end("max-length")
        return None

    def _end(self, reason: Literal["silence", "max-length", "cut"]) -> SpeechEnd:
        audio = self._audio
        if reason != "max-length":
            extra = self._silent - self.suffix_padding_ms * SAMPLE_RATE // 1000  # silence beyond the padding
            if extra > 0:
                audio = audio[: len(audio) - extra * 2]
        end = SpeechEnd(bytes(audio), self._ms(self._start), self._ms(self._last_voiced), reason)
        # After a max-length cut the speech goes on: no prefix, or the next utterance would repeat its tail.
        self._back_to_idle(keep_prefix=reason != "max-length")
        return end

    def _back_to_idle(self, *, keep_prefix: bool) -> None:
        keep = self.prefix_padding_ms * _BYTES_PER_MS if keep_prefix else 0
        self._recent = self._audio[max(0, len(self._audio) - keep) :] if keep else bytearray()
        self._state = "idle"
        self._audio = bytearray()
        self._voiced = 0
        self._silent = 0
