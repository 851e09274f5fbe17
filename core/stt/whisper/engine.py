"""WhisperSTT: faster-whisper (CTranslate2) on the CPU, with the model loaded once for the server's life.

The default model is multilingual Whisper base from pip packages (``model_files``), so speech input works with no
network in every language Whisper knows. A clip is heard in the language it is given (a client's fixed language,
or ``stt.language``); without one, Whisper detects it among ``stt.languages`` (empty: any of its own). An
English-only model hears English whatever it is told.

A clip of up to ``SHORT_CLIP_S`` of speech is encoded in a window sized to it rather than Whisper's fixed 30 s:
the encoder's cost grows faster than linearly with the window, and on a 3 s clip it was ~85 % of the time (346 ms
of 400 ms on two cores; 35 ms for a 10 s window). Whisper was trained on 30 s windows, and in windows much
shorter than 10 s it sometimes repeats itself to the token limit, so the window is never below
``window_floor_s``, and an answer that still looks degenerate (it hits the token cap, compresses like a loop by
faster-whisper's own test, or says a run of five words twice) is redone with the full window. Longer clips go
through faster-whisper's usual 30 s windows.

The language is detected on that same short encoding: one decoder step gives every language token's probability
(~16 ms), where faster-whisper's ``detect_language`` encodes a 30 s window of its own (1.2-1.6 s on two cores).
The best language the allow-list permits wins, and its probability is its share of the allowed languages' total.
A longer clip is detected the same way on its first short window, then transcribed in that language.

Silence and noise never reach the model: faster-whisper's bundled Silero VAD drops them first. What still comes
back with a no-speech probability above 0.8 is dropped too: Whisper's classic hallucinations on non-speech ("you",
"Thank you.") score about 0.99 there, while every real utterance measured, down to one word at 0 dB SNR, scored
below 0.25.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core.audio import TARGET_RATE, clip_from_pcm16
from core.errors import STTError
from core.models import AudioClip, EngineInfo, Transcript
from core.stt import available_cpus
from core.stt.whisper.model_files import BASE, resolve_model
from core.stt.whisper.timed import timed_segments

T = TypeVar("T")

logger = logging.getLogger(__name__)

SHORT_CLIP_S = 20.0
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window, in 10 ms mel frames
SAMPLES_PER_FRAME = 160
# faster-whisper redoes a window whose text compresses better than this (a loop); so do we.
LOOP_COMPRESSION_RATIO = 2.4

# What one clip was heard as: text (empty for none), language, and how sure detection was (None if not detected).
Recognised = tuple[str, str | None, float | None]


class WhisperSTT:
    """Transcribes with a faster-whisper model, at most ``max_concurrent`` clips at a time, off the event loop."""

    def __init__(
        self,
        *,
        model: str = "",
        language: str = "",
        languages: Sequence[str] = ("en", "ru"),
        max_concurrent: int = 1,
        beam_size: int = 1,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        vad_filter: bool = True,
        no_speech_threshold: float = 0.8,
        window_floor_s: float = 10.0,
        window_margin_s: float = 1.0,
        cache_dir: Path | None = None,
    ) -> None:
        self._model_name = model
        self._language = language
        self._allowed = list(languages)
        self._max_concurrent = max_concurrent
        self._beam_size = beam_size
        self._compute_type = compute_type
        # CTranslate2 splits each clip over intra-op threads; concurrent clips share the cores between them.
        self._cpu_threads = cpu_threads or max(1, available_cpus() // max_concurrent)
        self._vad_filter = vad_filter
        self._no_speech_threshold = no_speech_threshold
        self._window_floor = round(window_floor_s * 100)
        self._window_margin = round(window_margin_s * 100)
        self._cache_dir = cache_dir
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="stt-whisper")
        self._model: Any = None
        self._languages: list[str] = []  # what the loaded model knows

    def info(self) -> EngineInfo:
        extra: dict[str, object] = {
            "compute_type": self._compute_type,
            "beam_size": self._beam_size,
            "cpu_threads": self._cpu_threads,
            "vad": self._vad_filter,
            "language": _code(self._language) or "detect",
            "languages": list(self._allowed),
        }
        return EngineInfo("whisper", self._display_name(), self._model is not None, extra)

    def _display_name(self) -> str:
        if not self._model_name:
            return BASE
        return Path(self._model_name).name if Path(self._model_name).is_dir() else self._model_name

    async def start(self) -> None:
        """Load the model in the worker thread (joining the bundled base model first, the first time)."""
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._executor, self._load)
        logger.info("whisper loaded: %s (%s, %d threads)", self._display_name(), self._compute_type, self._cpu_threads)

    def _load(self) -> Any:
        try:
            from faster_whisper import WhisperModel
        except ImportError as err:
            raise STTError("faster-whisper is not installed", code="stt-unavailable") from err
        path = resolve_model(self._model_name, cache=self._cache_dir)
        try:
            model = WhisperModel(
                path,
                device="cpu",
                compute_type=self._compute_type,
                cpu_threads=self._cpu_threads,
                num_workers=self._max_concurrent,
            )
        except (RuntimeError, ValueError, OSError) as err:
            raise STTError(f"cannot load the Whisper model {path}: {err}", code="stt-unavailable") from err
        self._languages = _known_languages(model)
        if model.model.is_multilingual:
            wanted = [*self._allowed, _code(self._language)]
            unknown = [tag for tag in wanted if tag and tag not in self._languages]
            if unknown:
                message = f"the Whisper model {self._display_name()} knows no language {', '.join(unknown)}"
                raise STTError(message, code="stt-unavailable")
        return model

    async def transcribe(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        if self._model is None:
            raise STTError("the Whisper model is not loaded", code="stt-unavailable")
        wanted = language or self._language
        text, heard, probability = await self._run(self._recognise, audio, wanted, prompt)
        return Transcript(text, heard, audio.duration_s, probability)

    async def transcribe_timed(
        self, audio: AudioClip, *, language: str | None = None, prompt: str | None = None, words: bool = False
    ) -> Transcript:
        """The clip's segments with their times (``TimedSTT``), and each one's words when ``words``."""
        if self._model is None:
            raise STTError("the Whisper model is not loaded", code="stt-unavailable")
        wanted = language or self._language
        return await self._run(self._timed, audio, wanted, prompt, words)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args, stop)`` in the worker thread. If the caller is cancelled (a client who hung up), ``stop`` is
        set, and the work ends at its next 30 s window instead of holding the model for the rest of a long clip."""
        stop = threading.Event()
        job = functools.partial(work, *args, stop)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job)
        except asyncio.CancelledError:
            stop.set()
            raise

    def _timed(
        self, audio: AudioClip, language: str | None, prompt: str | None, words: bool, stop: threading.Event
    ) -> Transcript:
        """Blocking, in the worker thread: the language is detected as ``_recognise`` does, on the speech alone."""
        samples, wanted = self._samples(audio), self._wanted(language)
        try:
            speech = _speech_only(samples) if self._vad_filter and samples.size else samples
            if not speech.size:
                return Transcript("", None, audio.duration_s, None, ())
            lang, probability = (wanted, None) if wanted else self._detect(self._encode(speech[: self._floor_size]))
            segments = timed_segments(
                self._model, samples, language=lang, prompt=prompt, words=words, beam_size=self._beam_size,
                vad=self._vad_filter, no_speech_threshold=self._no_speech_threshold, stop=stop,
            )
        except (RuntimeError, ValueError) as err:
            logger.exception("whisper failed on a %.1f s clip", audio.duration_s)
            raise STTError("speech-to-text failed", code="stt-failed") from err
        if not segments:
            return Transcript("", None, audio.duration_s, None, ())
        return Transcript(" ".join(s.text for s in segments), lang, audio.duration_s, probability, segments)

    def _samples(self, audio: AudioClip) -> np.ndarray:
        if audio.sample_rate != TARGET_RATE:
            audio = clip_from_pcm16(audio.pcm, audio.sample_rate)
        return np.frombuffer(audio.pcm, dtype="<i2").astype(np.float32) / 32768.0

    def knows_language(self, language: str) -> bool:
        """Whether the loaded model can hear ``language`` (``en``, ``en-GB``, ``auto``); True before it is loaded."""
        if self._model is None or (tag := _code(language)) is None:
            return True
        return tag in self._languages if self._model.model.is_multilingual else tag == "en"

    def _wanted(self, language: str | None) -> str | None:
        """The language to hear a clip in (None: detect it); an English-only model always hears English."""
        wanted = _code(language) if self._model.model.is_multilingual else "en"
        if wanted and wanted not in self._languages:
            logger.warning("whisper: the model knows no language %r; detecting the language instead", language)
            wanted = None
        return wanted

    def _recognise(
        self, audio: AudioClip, language: str | None, prompt: str | None = None, stop: threading.Event | None = None
    ) -> Recognised:
        """Blocking: the text Whisper heard (empty for none), its language, and how sure detection was. Runs in the
        worker thread."""
        samples, wanted = self._samples(audio), self._wanted(language)
        try:
            if self._vad_filter and samples.size:
                samples = _speech_only(samples)
            if not samples.size:
                return "", None, None
            if samples.size <= SHORT_CLIP_S * TARGET_RATE:
                return self._short_clip(samples, wanted, prompt, stop)
            # Detected on the first short window: cheap, and a few seconds of speech are plenty to tell.
            lang, probability = (wanted, None) if wanted else self._detect(self._encode(samples[: self._floor_size]))
            text = self._windows(samples, lang, prompt, stop)
            return (text, lang, probability) if text else ("", None, None)
        except (RuntimeError, ValueError) as err:
            logger.exception("whisper failed on a %.1f s clip", audio.duration_s)
            raise STTError("speech-to-text failed", code="stt-failed") from err

    @property
    def _floor_size(self) -> int:
        return self._window_floor * SAMPLES_PER_FRAME

    def _short_clip(
        self, samples: np.ndarray, wanted: str | None, prompt: str | None = None, stop: threading.Event | None = None
    ) -> Recognised:
        """One window sized to the clip, for detection and decoding both; the full window if the text looks
        degenerate."""
        encoded = self._encode(samples)
        lang, probability = (wanted, None) if wanted else self._detect(encoded)
        text = self._decode(encoded, samples.size, lang, prompt)
        if text is None:
            logger.info(
                "whisper: a %.1f s clip looked degenerate in a short window; using 30 s", samples.size / TARGET_RATE
            )
            text = self._windows(samples, lang, prompt, stop)
        return (text, lang, probability) if text else ("", None, None)

    def _encode(self, samples: np.ndarray) -> Any:
        """The encoder's output for a window sized to ``samples`` (never below the floor, nor above 30 s)."""
        import ctranslate2

        frames = min(
            FULL_WINDOW_FRAMES, max(self._window_floor, samples.size // SAMPLES_PER_FRAME + self._window_margin)
        )
        # The window past the speech holds the log-mel of silence, as faster-whisper's own padding gives it.
        padded = np.pad(samples, (0, max(0, frames * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME - samples.size)))
        features = self._model.feature_extractor(padded)[:, :frames]
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
        return self._model.model.encode(view, to_cpu=False)

    def _detect(self, encoded: Any) -> tuple[str, float]:
        """The likeliest allowed language of an encoded window, and its share of the allowed languages' chances."""
        scores = dict(self._model.model.detect_language(encoded)[0])
        chances = {tag: scores.get(f"<|{tag}|>", 0.0) for tag in self._allowed or self._languages}
        best = max(chances, key=chances.__getitem__)
        total = sum(chances.values())
        return best, (chances[best] / total if total > 0 else 0.0)

    def _decode(self, encoded: Any, size: int, language: str, prompt: str | None = None) -> str | None:
        """The text of an encoded short window; None when the answer looks degenerate and needs the full window."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio

        multilingual = bool(self._model.model.is_multilingual)
        tokenizer = Tokenizer(self._model.hf_tokenizer, multilingual, task="transcribe", language=language)
        # Previous text goes before the start of transcript, as faster-whisper's initial_prompt does (its last 223
        # tokens: half of Whisper's 448-token context).
        previous = [tokenizer.sot_prev, *tokenizer.encode(" " + prompt.strip())[-223:]] if prompt else []
        tokens_in = [*previous, *tokenizer.sot_sequence, tokenizer.no_timestamps]
        # Fast speech is about 5 tokens a second; a loop runs into this cap instead of Whisper's 448.
        cap = 16 + int(size / TARGET_RATE * 8)
        result = self._model.model.generate(
            encoded, [tokens_in], beam_size=self._beam_size, max_length=cap + len(previous),
            return_no_speech_prob=True,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text: str = tokenizer.decode(tokens).strip()
        if result.no_speech_prob > self._no_speech_threshold:
            return ""
        if len(tokens) >= cap - 1 or (text and get_compression_ratio(text) > LOOP_COMPRESSION_RATIO) or _repeats(text):
            return None
        return text

    def _windows(
        self, samples: np.ndarray, language: str, prompt: str | None = None, stop: threading.Event | None = None
    ) -> str:
        """faster-whisper's own transcription, in 30 s windows (each decoded as the segments are read), until
        ``stop`` is set."""
        segments, _ = self._model.transcribe(
            samples,
            language=language,
            beam_size=self._beam_size,
            vad_filter=False,  # already applied
            condition_on_previous_text=False,  # a hallucinated window must not seed the next one
            initial_prompt=prompt or None,
            # Timestamps let a window end mid-way and the next start there; without them, a dense 30 s window
            # came back as its first sentence alone.
            without_timestamps=False,
        )
        kept = []
        for segment in segments:
            if stop is not None and stop.is_set():
                break
            if segment.no_speech_prob <= self._no_speech_threshold:
                kept.append(segment.text)
        return "".join(kept).strip()

    async def aclose(self) -> None:
        # Wait for a running transcription off the event loop, then let the model go.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._model = None


def _code(language: str | None) -> str | None:
    """Whisper's code for a language as clients and settings spell it: ``en-GB`` → ``en``; ``auto`` → None."""
    primary = (language or "").split("-")[0].split("_")[0].strip().lower()
    return primary if primary and primary != "auto" else None


def _known_languages(model: Any) -> list[str]:
    """The languages a loaded model has tokens for (base has 99; faster-whisper's list also holds large-v3's)."""
    if not model.model.is_multilingual:
        return ["en"]
    tokens = model.hf_tokenizer
    return [tag for tag in model.supported_languages if tokens.token_to_id(f"<|{tag}|>") is not None]


def _repeats(text: str, words: int = 5) -> bool:
    """Whether some run of ``words`` words comes twice: in a clip this short, far likelier a loop than speech
    (and a false alarm only costs the full window's time)."""
    tokens = text.lower().split()
    runs = [tuple(tokens[i : i + words]) for i in range(len(tokens) - words + 1)]
    return len(set(runs)) < len(runs)


def _speech_only(samples: np.ndarray) -> np.ndarray:
    """The clip with its non-speech removed by faster-whisper's bundled Silero VAD (empty if it holds none)."""
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    chunks = get_speech_timestamps(samples, VadOptions())
    if not chunks:
        return samples[:0]
    pieces, _ = collect_chunks(samples, chunks)
    return np.concatenate(pieces)
