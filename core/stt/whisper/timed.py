"""Whisper's transcription with times: segments (about a sentence each) and, when asked, words, each with when it
was said, for subtitles and OpenAI's ``verbose_json``.

The page's path (``WhisperSTT.transcribe``) decodes without timestamps in a window sized to the clip; this one is
faster-whisper's own, in 30 s windows with timestamp tokens (and cross-attention alignment for words), so it is
asked only when times are wanted. faster-whisper's VAD skips the silences and maps the times back to the clip's.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from core.models import Segment, Word


def timed_segments(
    model: Any,
    samples: np.ndarray,
    *,
    language: str,
    prompt: str | None,
    words: bool,
    beam_size: int,
    vad: bool,
    no_speech_threshold: float,
    stop: threading.Event | None = None,
) -> tuple[Segment, ...]:
    """The segments Whisper hears in ``samples`` (16 kHz float), with times in seconds from the clip's start
    (blocking: run it in the engine's worker thread). A segment Whisper itself thinks is not speech is left out,
    as the page's path drops it. Windows are decoded as the segments are read: once ``stop`` is set no more are."""
    found, _ = model.transcribe(
        samples,
        language=language,
        beam_size=beam_size,
        vad_filter=vad,
        word_timestamps=words,
        condition_on_previous_text=False,  # a hallucinated window must not seed the next one
        initial_prompt=prompt or None,
        without_timestamps=False,
    )
    kept: list[Segment] = []
    for segment in found:
        if stop is not None and stop.is_set():
            break
        text = segment.text.strip()
        if not text or segment.no_speech_prob > no_speech_threshold:
            continue
        heard = tuple(
            Word(round(float(word.start), 3), round(float(word.end), 3), word.word.strip())
            for word in segment.words or ()
            if word.word.strip()
        )
        kept.append(Segment(
            round(float(segment.start), 3), round(float(segment.end), 3), text, heard,
            seek=int(segment.seek), tokens=tuple(int(t) for t in segment.tokens),
            temperature=float(segment.temperature or 0.0), avg_logprob=round(float(segment.avg_logprob), 4),
            compression_ratio=round(float(segment.compression_ratio), 4),
            no_speech_prob=round(float(segment.no_speech_prob), 4),
        ))
    return tuple(kept)
