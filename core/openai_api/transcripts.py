"""A transcript in each of OpenAI's ``response_format``s: ``json``, ``text``, ``verbose_json`` (segments and words
with their times) and the subtitle formats ``srt`` and ``vtt``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from core.language import language_name
from core.models import Segment, Transcript

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
# What each format is sent as.
MEDIA_TYPES: dict[ResponseFormat, str] = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def timestamp(seconds: float, separator: str) -> str:
    """``01:02:03,456`` (SRT, separator ``,``) or ``01:02:03.456`` (WebVTT, ``.``)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: Sequence[Segment]) -> str:
    """SubRip: numbered cues, a blank line after each."""
    return "".join(
        f"{n}\n{timestamp(s.start_s, ',')} --> {timestamp(s.end_s, ',')}\n{s.text}\n\n"
        for n, s in enumerate(segments, start=1)
    )


def vtt(segments: Sequence[Segment]) -> str:
    """WebVTT: the header, then a cue per segment."""
    cues = "".join(f"{timestamp(s.start_s, '.')} --> {timestamp(s.end_s, '.')}\n{s.text}\n\n" for s in segments)
    return f"WEBVTT\n\n{cues}"


def verbose(transcript: Transcript, *, segments: bool = True, words: bool = False) -> dict[str, object]:
    """OpenAI's ``verbose_json``: the language's English name, the clip's duration, and the segments (and words)
    asked for, each segment with what Whisper measured of it (zeros from an engine that measures nothing)."""
    language = transcript.language
    body: dict[str, object] = {
        "task": "transcribe",
        "language": (language_name(language) or language or "unknown").lower(),
        "duration": round(transcript.duration_s, 3),
        "text": transcript.text,
    }
    found = transcript.segments or ()
    if segments:
        body["segments"] = [
            {
                "id": n, "seek": s.seek, "start": s.start_s, "end": s.end_s, "text": s.text, "tokens": list(s.tokens),
                "temperature": s.temperature, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for n, s in enumerate(found)
        ]
    if words:
        body["words"] = [{"word": w.text, "start": w.start_s, "end": w.end_s} for s in found for w in s.words]
    return body


def render(transcript: Transcript, fmt: ResponseFormat, *, words: bool = False, segments: bool = True) -> object:
    """The body of a transcription response: a dict for the JSON formats, text for the others."""
    if fmt == "json":
        return {"text": transcript.text}
    if fmt == "verbose_json":
        return verbose(transcript, segments=segments, words=words)
    if fmt == "srt":
        return srt(transcript.segments or ())
    if fmt == "vtt":
        return vtt(transcript.segments or ())
    return f"{transcript.text}\n" if transcript.text else ""
