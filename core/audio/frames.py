"""FLAC metadata, MP3 and ADTS frame walks: a declared length or duration is a hint; refuse only what is really cut."""

from __future__ import annotations

from collections.abc import Callable

from core.audio.layout import Layout, truncated

# (frame length in bytes, samples in the frame, sample rate), or None if no valid header starts there
FrameParser = Callable[[bytes, int], "tuple[int, int, int] | None"]


def check_flac(data: bytes) -> Layout:
    """The metadata blocks must be whole (the decoder rejects a cut frame); STREAMINFO's total is a hint."""
    start = skip_id3(data)
    pos, declared = start + 4, None
    while pos + 4 <= len(data):
        last, kind, size = data[pos] & 0x80, data[pos] & 0x7F, int.from_bytes(data[pos + 1 : pos + 4], "big")
        if pos + 4 + size > len(data):
            raise truncated("flac", "metadata is cut")
        if kind == 0 and size >= 18:
            info = int.from_bytes(data[pos + 14 : pos + 22], "big")
            rate, total = info >> 44, info & 0xFFFFFFFFF
            if rate and total:  # 0 when the encoder could not seek back to write it
                declared = total / rate
        pos += 4 + size
        if last:
            return Layout(declared_s=declared)
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


def check_frames(data: bytes, start: int, parse: FrameParser, kind: str) -> Layout:
    """Walk frame headers to the end: the last frame must be whole. Count the samples the walk saw; a Xing/Info or
    VBRI frame count is a hint."""
    pos = first_frame(data, start, parse)
    if pos is None:
        return Layout()
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
        return Layout()
    xing = _xing_frames(data, first) if kind == "mp3" else None
    declared = xing * frame_samples / rate if xing else None
    # The decoder drops a Xing/Info frame, and the encoder's delay and padding a LAME header declares.
    return Layout(samples / rate, (4 * frame_samples + 1152) / rate, declared_s=declared)


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
