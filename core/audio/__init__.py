"""Audio decoding: any accepted upload or recording → mono 16-bit PCM at 16 kHz, decoded once, in-process, by PyAV.

The container is recognised from the content (magic bytes, else PyAV's own probe), never from a file name.

A size, length or duration a header declares is a hint, not proof: streaming writers leave placeholders there (0,
0x7FFFFFFF, 0x7FFFF000, 0xFFFFFFFF) and a cut file keeps its full-length header. A file that decodes to its end
is accepted, a disagreement between header and audio logged at DEBUG. ``corrupt-audio`` is for audio really cut
(a partial sample, block or frame; a structure ending past the end of the file) or damaged:

- WAV (RIFF, RF64/BW64 with ds64, WAVE_FORMAT_EXTENSIBLE) and AIFF/AIFF-C: the sound runs to the end of its
  data/SSND chunk or of the file, whichever comes first (FFmpeg obeys a size smaller than the audio), and must end
  on a whole sample (PCM, float, A-law, mu-law) or IMA4 block. Chunks before it, and chunk-shaped ones after it,
  must be whole (odd sizes padded); COMM's numSampleFrames and the RIFF/FORM size are hints. Placeholders FFmpeg
  cannot read past (AIFF's FORM or SSND of 0, RF64's ds64 data size of 0) are mended in a copy.
- MP3, ADTS AAC: walking the frame headers, the last frame must be whole. Xing/Info/VBRI frame counts are hints.
- FLAC: the metadata blocks must be whole; the decoder rejects a cut frame (every frame has a CRC).
  STREAMINFO's total samples are a hint.
- Ogg: walking the pages, the last page must be whole; the last page's granule position, a timestamp of audio
  that is there, must be decoded, so pages lost in the middle show.
- WebM/Matroska: walking the EBML elements, every block (and every other element but Segment and Cluster) must
  be whole, and inside the Segment every element must parse. Segment and Cluster sizes (unknown in
  MediaRecorder's files) and the Duration element are hints.
- MP4/M4A: top-level boxes must be whole, except an ``mdat`` whose samples the ``moov`` before it lists; every
  audio sample the sample table lists must be in the file. mvhd/tkhd/mdhd durations are hints; an edit list
  shorter than the media is obeyed, as FFmpeg presents only the edit.

So a cut that falls exactly between two samples, frames, pages or blocks reads as a shorter recording whatever
the header declares: nothing in the bytes tells it from a streaming writer's placeholder (an MP4 cut anywhere
loses the samples its ``moov`` lists, or the ``moov`` itself). Decoders verify checksums and count every error as
corruption. Decoding stops as soon as the decoded duration passes the limit.
"""

from __future__ import annotations

import io
import logging
import wave

import av
import numpy as np

from core.audio.frames import adts_frame, first_frame, frames_at, mpeg_frame, skip_id3
from core.audio.layout import Layout, truncated
from core.audio.mp4 import MP4_BOXES
from core.audio.structure import check_structure
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
    layout = check_structure(kind, data) if kind else Layout()
    if layout.present_s is not None and layout.present_s - layout.tolerance_s > max_duration_s:
        raise _too_long(max_duration_s)
    try:
        container = av.open(
            io.BytesIO(layout.mended or data),
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
        # as a decoder error or as samples missing from what is there, instead of being papered over.
        stream.codec_context.options = {"err_detect": "crccheck+explode"}
        present, tolerance = layout.present_s, layout.tolerance_s
        if present is None and kind == "ogg" and container.duration:
            present, tolerance = container.duration / av.time_base, 0.1  # the last page's granule position
        declared = layout.declared_s or _declared_by_demuxer(kind, container, stream)
        pcm, decoded_s, span_s = _decode(container, stream, kind, max_duration_s)
        if kind == "flac" and span_s is not None:
            present, tolerance = span_s, 0.01  # every FLAC frame's header numbers its samples: none may be lost
    if not pcm:
        raise AudioError(f"the {kind} file holds no audio samples", code="corrupt-audio")
    if present is not None and decoded_s < present - tolerance:
        raise AudioError(
            f"the {kind} file is damaged: {decoded_s:.2f} s decoded of the {present:.2f} s it holds",
            code="corrupt-audio",
        )
    if declared is not None and abs(decoded_s - declared) > max(tolerance, 0.1):
        logger.debug("the %s file declares %.2f s and decodes to %.2f s: a header's hint", kind, declared, decoded_s)
    return AudioClip(pcm, TARGET_RATE)


def _declared_by_demuxer(kind: str, container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """What the demuxer read from the headers, only to log: MP4's track duration, Matroska's Duration element
    (absent from MediaRecorder's WebM)."""
    if kind == "mp4" and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if kind in ("webm", "matroska") and container.duration:
        return float(container.duration / av.time_base)
    return None


def _decode(
    container: av.container.InputContainer, stream: av.AudioStream, kind: str, limit_s: float
) -> tuple[bytes, float, float | None]:
    """Decode and resample every frame of ``stream``; return the PCM, the decoded duration in seconds, and the
    span the frames' timestamps cover (None without timestamps)."""
    out: list[bytes] = []
    decoded_s = 0.0
    first_s: float | None = None
    end_s: float | None = None
    resampler: av.AudioResampler | None = None
    setup: tuple[str, str, int] | None = None
    try:
        for frame in container.decode(stream):
            decoded_s += frame.samples / frame.sample_rate
            if decoded_s > limit_s:
                raise _too_long(limit_s)
            if frame.pts is not None and frame.time_base:
                start_s = float(frame.pts * frame.time_base)
                first_s = start_s if first_s is None else first_s
                end_s = start_s + frame.samples / frame.sample_rate
            frame.pts = None  # the resampler needs none, and a recording's may jump
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
    span_s = end_s - first_s if end_s is not None and first_s is not None else None
    return b"".join(out), decoded_s, span_s


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
