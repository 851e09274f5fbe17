"""Audio decoding: any accepted upload or recording → mono 16-bit PCM at 16 kHz, decoded once, in-process, by PyAV.

The container is recognised from the content (magic bytes, else PyAV's own probe), never from a file name.
Truncation is found without trusting the demuxer, which happily stops at the end of whatever bytes it got:

- WAV, AIFF: the data chunk declares more bytes than the file holds.
- MP3, ADTS AAC: walking the frame headers, the last frame ends past the end of the file; a Xing/Info/VBRI
  header declares more frames than were decoded.
- FLAC: the decoder rejects the cut frame; STREAMINFO declares more samples than were decoded.
- Ogg: walking the pages, the last page ends past the end of the file; the last page's granule position
  promises more samples than were decoded (pages lost in the middle).
- WebM/Matroska: walking the EBML elements (descending into Segment and Cluster, whose sizes MediaRecorder leaves
  unknown), an element ends past the end of the file; a Duration element promises more than was decoded.
- MP4/M4A: a top-level box ends past the end of the file (or the demuxer finds no ``moov``); the track's
  duration promises more than was decoded.

Decoders verify checksums and count every error as corruption. A cut that falls exactly between two frames or
pages of a format that declares no length (raw ADTS, Ogg, MediaRecorder's WebM) reads as a shorter recording:
nothing in the bytes says otherwise. Decoding stops as soon as the decoded duration passes the limit.
"""

from __future__ import annotations

import io
import logging
import wave

import av
import numpy as np

from core.audio.headers import (
    MP4_BOXES,
    Declared,
    adts_frame,
    check_structure,
    first_frame,
    frames_at,
    mpeg_frame,
    skip_id3,
    truncated,
)
from core.errors import AudioError
from core.models import AudioClip

logger = logging.getLogger(__name__)

TARGET_RATE = 16000

# sniffed container -> PyAV demuxer
_DEMUXERS = {
    "wav": "wav",
    "aiff": "aiff",
    "flac": "flac",
    "mp3": "mp3",
    "adts": "aac",
    "mp4": "mov",
    "ogg": "ogg",
    "webm": "matroska",
    "matroska": "matroska",
}
# PyAV's names for the same demuxers, for files only its probe recognises
_PROBED = {
    "wav": "wav",
    "aiff": "aiff",
    "flac": "flac",
    "mp3": "mp3",
    "aac": "adts",
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",
    "ogg": "ogg",
    "matroska,webm": "matroska",
}


def sniff_container(data: bytes) -> str | None:
    """The container ``data`` holds, from its first bytes: wav, aiff, flac, mp3, adts (raw AAC), mp4, ogg, webm or
    matroska; None if none of them."""
    head = data[:12]
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in data[:64] else "matroska"
    if head[4:8] == b"ftyp" or (head[4:8] in MP4_BOXES and 8 <= int.from_bytes(head[:4], "big") <= len(data)):
        return "mp4"
    start = skip_id3(data)
    if data[start : start + 4] == b"fLaC":
        return "flac"
    if frames_at(data, start, adts_frame):
        return "adts"
    if first_frame(data, start, mpeg_frame) is not None:
        return "mp3"
    return None


def decode_audio(data: bytes, *, max_duration_s: float) -> AudioClip:
    """Decode ``data`` to 16 kHz mono PCM16; raise AudioError unsupported-audio, corrupt-audio or audio-too-long."""
    kind = sniff_container(data)
    declared = check_structure(kind, data) if kind else None
    if declared and declared.seconds - declared.tolerance_s > max_duration_s:
        raise _too_long(max_duration_s)
    try:
        container = av.open(
            io.BytesIO(data),
            mode="r",
            format=_DEMUXERS[kind] if kind else None,
            # The format is known, so there is nothing to probe for; FFmpeg's default 5 MB probe costs ~9 ms on
            # every 16-bit WAV (it looks for S/PDIF inside), ten times the decoding itself.
            options={"probesize": "2048"} if kind else {},
            metadata_errors="ignore",
        )
    except av.FFmpegError as err:
        if kind is None and data[:3] == b"ID3" and skip_id3(data) >= len(data):
            raise truncated("mp3", "it ends inside its ID3 tag") from err
        if kind is None:
            raise AudioError("the file is not audio in a format we accept", code="unsupported-audio") from err
        raise AudioError(f"the {kind} file is damaged and cannot be opened", code="corrupt-audio") from err
    with container:
        if kind is None:
            kind = _PROBED.get(container.format.name)
            if kind is None:
                raise AudioError(f"{container.format.name} files are not accepted", code="unsupported-audio")
        if not container.streams.audio:
            raise AudioError(f"the {kind} file holds no audio track", code="unsupported-audio")
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # FFmpeg knows no decoder for this codec
            raise AudioError(f"the audio in this {kind} file is in a codec we cannot decode", code="unsupported-audio")
        # Verify checksums (FLAC frames, Ogg pages, protected MP3) and drop a frame on any error, so damage shows
        # as a decoder error or as samples missing from the declared duration, instead of being papered over.
        stream.codec_context.options = {"err_detect": "crccheck+explode"}
        declared = declared or _declared_by_demuxer(kind, container, stream)
        pcm, decoded_s = _decode(container, stream, kind, max_duration_s)
    if not pcm:
        raise AudioError(f"the {kind} file holds no audio samples", code="corrupt-audio")
    if declared and decoded_s < declared.seconds - declared.tolerance_s:
        raise AudioError(
            f"the {kind} file is truncated: {decoded_s:.2f} s of the {declared.seconds:.2f} s it declares",
            code="corrupt-audio",
        )
    return AudioClip(pcm, TARGET_RATE)


def _declared_by_demuxer(kind: str, container: av.container.InputContainer, stream: av.AudioStream) -> Declared | None:
    """What the demuxer read from the headers: MP4's track duration, Ogg's last granule position, Matroska's
    Duration element (absent from MediaRecorder's WebM)."""
    if kind == "mp4" and stream.duration and stream.time_base:
        return Declared(float(stream.duration * stream.time_base), 0.2)
    if kind in ("ogg", "webm", "matroska") and container.duration:
        return Declared(container.duration / av.time_base, 0.1)
    return None


def _decode(
    container: av.container.InputContainer, stream: av.AudioStream, kind: str, limit_s: float
) -> tuple[bytes, float]:
    """Decode and resample every frame of ``stream``; return the PCM and the decoded duration in seconds."""
    out: list[bytes] = []
    decoded_s = 0.0
    resampler: av.AudioResampler | None = None
    setup: tuple[str, str, int] | None = None
    try:
        for frame in container.decode(stream):
            decoded_s += frame.samples / frame.sample_rate
            if decoded_s > limit_s:
                raise _too_long(limit_s)
            frame.pts = None  # timestamps are irrelevant here and may jump in recordings
            if resampler is None or (frame.format.name, frame.layout.name, frame.sample_rate) != setup:
                if resampler is not None:  # the stream changed shape mid-way: flush and start again
                    out.extend(_pcm(piece) for piece in resampler.resample(None))
                resampler = av.AudioResampler(format="s16", layout="mono", rate=TARGET_RATE)
                setup = (frame.format.name, frame.layout.name, frame.sample_rate)
            out.extend(_pcm(piece) for piece in resampler.resample(frame))
        if resampler is not None:
            out.extend(_pcm(piece) for piece in resampler.resample(None))
    except av.DecoderNotFoundError as err:
        raise AudioError(f"no decoder for the audio in this {kind} file", code="unsupported-audio") from err
    except (av.FFmpegError, ValueError) as err:
        raise AudioError(f"the {kind} file is damaged: {err}", code="corrupt-audio") from err
    return b"".join(out), decoded_s


def _pcm(frame: av.AudioFrame) -> bytes:
    # The plane is padded for SIMD; only the first samples * 2 bytes are audio.
    return bytes(frame.planes[0])[: frame.samples * 2]


def _too_long(limit_s: float) -> AudioError:
    return AudioError(f"the audio is longer than {limit_s:g} s", code="audio-too-long")


def clip_from_pcm16(pcm: bytes, rate: int) -> AudioClip:
    """An AudioClip of mono PCM16 at any ``rate``, resampled to 16 kHz."""
    if len(pcm) % 2:
        raise AudioError("16-bit PCM must have an even number of bytes", code="corrupt-audio")
    if not 1000 <= rate <= 384000:
        raise AudioError(f"a sample rate of {rate} Hz is not supported", code="unsupported-audio")
    if rate == TARGET_RATE or not pcm:
        return AudioClip(pcm, TARGET_RATE)
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=TARGET_RATE)
    pieces = [*resampler.resample(frame), *resampler.resample(None)]
    return AudioClip(b"".join(_pcm(piece) for piece in pieces), TARGET_RATE)


def pcm_to_wav(pcm: bytes, rate: int) -> bytes:
    """A RIFF WAV holding mono 16-bit ``pcm`` at ``rate``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buf.getvalue()
