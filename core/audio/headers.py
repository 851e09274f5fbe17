"""Cheap walks over audio containers' headers: which container a file holds, whether it is cut short, and the
duration it declares (see ``core.audio`` for what each format's check looks at)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from core.errors import AudioError

MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"}

# (frame length in bytes, samples in the frame, sample rate), or None if no valid header starts there
FrameParser = Callable[[bytes, int], "tuple[int, int, int] | None"]


@dataclass(frozen=True, slots=True)
class Declared:
    """A duration the file's headers promise, and how far short of it decoding may fall."""

    seconds: float
    tolerance_s: float


def truncated(kind: str, detail: str) -> AudioError:
    return AudioError(f"the {kind} file is truncated ({detail})", code="corrupt-audio")


def check_structure(kind: str, data: bytes) -> Declared | None:
    """Raise corrupt-audio if ``data`` is visibly cut short; return the duration its headers declare, if any."""
    if kind == "wav":
        return _check_iff(data, "little", b"data", kind)
    if kind == "aiff":
        return _check_iff(data, "big", b"SSND", kind)
    if kind == "flac":
        return _check_flac(data)
    if kind == "mp3":
        return _check_frames(data, skip_id3(data), mpeg_frame, kind)
    if kind == "adts":
        return _check_frames(data, skip_id3(data), adts_frame, kind)
    if kind == "ogg":
        _check_ogg(data)
    elif kind in ("webm", "matroska"):
        _check_ebml(data, kind)
    elif kind == "mp4":
        _check_mp4(data)
    return None


def _check_iff(data: bytes, order: Literal["little", "big"], data_id: bytes, kind: str) -> Declared | None:
    """RIFF/WAV (little-endian) and FORM/AIFF (big-endian) chunks; sizes of 0 or 0xFFFFFFFF mean "streamed"."""
    if data[:4] != b"RIFF" and kind == "wav":
        return None  # RF64/BW64 keep their sizes in a ds64 chunk; the decoder copes
    pos, frames, rate, block = 12, 0, 0, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], order)
        body = pos + 8
        if chunk == b"fmt ":
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
            block = int.from_bytes(data[body + 12 : body + 14], "little")
        elif chunk == b"COMM":
            frames = int.from_bytes(data[body + 2 : body + 6], "big")
            rate = int(_extended(data[body + 8 : body + 18]))
        if chunk == data_id:
            if size in (0, 0xFFFFFFFF):
                return None
            if body + size > len(data):
                raise truncated(kind, f"{len(data) - body} of {size} audio bytes")
            if kind == "wav" and block and rate:
                return Declared(size / block / rate, 0.01)
        elif body + size > len(data):
            raise truncated(kind, f"chunk {chunk!r} is cut")
        pos = body + size + (size & 1)
    if kind == "aiff" and frames and rate:
        return Declared(frames / rate, 0.01)
    return None


def _extended(raw: bytes) -> float:
    """An 80-bit IEEE extended float, as AIFF stores its sample rate."""
    if len(raw) < 10:
        return 0.0
    exponent = ((raw[0] & 0x7F) << 8 | raw[1]) - 16383
    return float(int.from_bytes(raw[2:10], "big") * 2.0 ** (exponent - 63))


def _check_flac(data: bytes) -> Declared | None:
    start = skip_id3(data)
    pos, declared = start + 4, None
    while pos + 4 <= len(data):
        last, kind, size = data[pos] & 0x80, data[pos] & 0x7F, int.from_bytes(data[pos + 1 : pos + 4], "big")
        if pos + 4 + size > len(data):
            raise truncated("flac", "metadata is cut")
        if kind == 0 and size >= 18:
            info = int.from_bytes(data[pos + 14 : pos + 22], "big")
            rate, total = info >> 44, info & 0xFFFFFFFFF
            if rate and total:
                declared = Declared(total / rate, 0.01)
        pos += 4 + size
        if last:
            return declared
    raise truncated("flac", "metadata is cut")


def skip_id3(data: bytes) -> int:
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
    return 10 + size + (10 if data[5] & 0x10 else 0)


_MPEG_KBPS = {
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def mpeg_frame(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(length in bytes, samples, sample rate) of the MPEG audio frame whose header starts at ``pos``."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (data[pos + 1] >> 3) & 3, 4 - ((data[pos + 1] >> 1) & 3)
    index, rate_index, padding = data[pos + 2] >> 4, (data[pos + 2] >> 2) & 3, (data[pos + 2] >> 1) & 1
    if version == 1 or layer == 4 or index in (0, 15) or rate_index == 3:
        return None  # reserved values, or free-format bitrate we cannot walk
    kbps = _MPEG_KBPS[(1 if version == 3 else 2, layer)][index]
    rate = _MPEG_RATES[version][rate_index]
    if layer == 1:
        return (12000 * kbps // rate + padding) * 4, 384, rate
    samples = 1152 if layer == 2 or version == 3 else 576
    return samples // 8 * 1000 * kbps // rate + padding, samples, rate


def adts_frame(data: bytes, pos: int) -> tuple[int, int, int] | None:
    if pos + 7 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xF6 != 0xF0:
        return None
    rate_index = (data[pos + 2] >> 2) & 0xF
    length = (data[pos + 3] & 3) << 11 | data[pos + 4] << 3 | data[pos + 5] >> 5
    if rate_index >= len(_ADTS_RATES) or length < 7:
        return None
    return length, 1024 * ((data[pos + 6] & 3) + 1), _ADTS_RATES[rate_index]


def frames_at(data: bytes, pos: int, parse: FrameParser) -> bool:
    """A frame header at ``pos`` followed by a second one (or by the end of a one-frame file): real sync, not a
    stray 0xFF byte."""
    frame = parse(data, pos)
    return frame is not None and (pos + frame[0] == len(data) or parse(data, pos + frame[0]) is not None)


def first_frame(data: bytes, start: int, parse: FrameParser) -> int | None:
    """Where the first frame starts within 4 KiB of ``start`` (encoders and taggers leave junk before it)."""
    for pos in range(start, min(len(data), start + 4096)):
        if data[pos] == 0xFF and frames_at(data, pos, parse):
            return pos
    return None


def _check_frames(data: bytes, start: int, parse: FrameParser, kind: str) -> Declared | None:
    """Walk frame headers to the end: the last frame must be whole. Count the samples the walk saw."""
    pos = first_frame(data, start, parse)
    if pos is None:
        return None
    first, samples, rate, frame_samples = pos, 0, 0, 0
    while pos < len(data):
        frame = parse(data, pos)
        if frame is None:
            if len(data) - pos < 7 and data[pos] == 0xFF:
                raise truncated(kind, "the last frame header is cut")
            break  # a trailing tag (ID3v1, APE) or junk: nothing more to judge
        length, frame_samples, rate = frame
        if pos + length > len(data):
            raise truncated(kind, f"the last frame lacks {pos + length - len(data)} bytes")
        samples, pos = samples + frame_samples, pos + length
    if not rate:
        return None
    tolerance = 3 * frame_samples / rate
    xing = _xing_frames(data, first) if kind == "mp3" else None
    if xing:
        return Declared(xing * frame_samples / rate, tolerance)
    return Declared(samples / rate, tolerance)


def _xing_frames(data: bytes, pos: int) -> int | None:
    """The frame count a Xing/Info (LAME) or VBRI header in the first frame declares."""
    version, mono = (data[pos + 1] >> 3) & 3, data[pos + 3] >> 6 == 3
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    at = pos + 4 + side
    if data[at : at + 4] in (b"Xing", b"Info") and int.from_bytes(data[at + 4 : at + 8], "big") & 1:
        return int.from_bytes(data[at + 8 : at + 12], "big")
    at = pos + 36
    if data[at : at + 4] == b"VBRI":
        return int.from_bytes(data[at + 14 : at + 18], "big")
    return None


def _check_ogg(data: bytes) -> None:
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS":
            return  # junk between pages: the demuxer resyncs, and so do we not judge
        if pos + 27 > len(data) or pos + 27 + data[pos + 26] > len(data):
            raise truncated("ogg", "the last page header is cut")
        segments = data[pos + 26]
        size = 27 + segments + sum(data[pos + 27 : pos + 27 + segments])
        if pos + size > len(data):
            raise truncated("ogg", f"the last page lacks {pos + size - len(data)} bytes")
        pos += size


_EBML_SEGMENT, _EBML_CLUSTER = 0x18538067, 0x1F43B675


def _check_ebml(data: bytes, kind: str) -> None:
    """Walk EBML elements, descending into Segment and Cluster (whose size MediaRecorder leaves unknown)."""
    pos = 0
    while pos < len(data):
        element = _ebml_id(data, pos)
        if element is None:
            return  # not an element header: junk we cannot judge
        eid, id_len = element
        if pos + id_len >= len(data):
            raise truncated(kind, "the last element header is cut")
        sized = _ebml_size(data, pos + id_len)
        if sized is None:
            return
        size, size_len = sized
        head = id_len + size_len
        if pos + head > len(data):
            raise truncated(kind, "the last element header is cut")
        if size is not None and pos + head + size > len(data):
            raise truncated(kind, f"an element lacks {pos + head + size - len(data)} bytes")
        if eid in (_EBML_SEGMENT, _EBML_CLUSTER):
            pos += head  # descend: the children follow
        elif size is None:
            return  # an unknown-size element we do not know how to descend into
        else:
            pos += head + size


def _ebml_id(data: bytes, pos: int) -> tuple[int, int] | None:
    first = data[pos]
    length = 8 - first.bit_length() + 1
    if first == 0 or length > 4:
        return None
    return int.from_bytes(data[pos : pos + length], "big"), length


def _ebml_size(data: bytes, pos: int) -> tuple[int | None, int] | None:
    """(size, or None when unknown; length of the size field), or None if no valid size starts at ``pos``."""
    first = data[pos]
    if first == 0:
        return None
    length = 9 - first.bit_length()
    value = int.from_bytes(data[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _check_mp4(data: bytes) -> None:
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        elif size == 0:
            return  # the last box runs to the end of the file by definition
        if size < 8:
            return  # not a box header: junk we cannot judge
        if pos + size > len(data):
            raise truncated("mp4", f"the {data[pos + 4 : pos + 8].decode('latin-1')!r} box is cut")
        pos += size
    if pos < len(data):
        raise truncated("mp4", "the last box header is cut")
