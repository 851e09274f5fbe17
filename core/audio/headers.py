"""Cheap walks over audio containers' headers: which container a file holds, whether it is really cut short, and
how long the audio really in it lasts (see ``core.audio`` for each format's rule).

A size, length or duration a header declares is a hint: streaming writers leave placeholders there, and a cut file
keeps its full-length header. Only what the bytes show is judged; disagreements are logged at DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.errors import AudioError

logger = logging.getLogger(__name__)

MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"}

# (frame length in bytes, samples in the frame, sample rate), or None if no valid header starts there
FrameParser = Callable[[bytes, int], "tuple[int, int, int] | None"]


@dataclass(frozen=True, slots=True)
class Layout:
    """What a file's headers say about its audio, checked against the bytes really there.

    ``present_s`` is counted from whole samples or frames in the file: decoding must reach it, less
    ``tolerance_s``. ``declared_s`` is what a header claims, a hint logged when decoding disagrees. ``mended``
    holds the bytes to decode instead, when placeholder sizes a streaming writer left would stop FFmpeg.
    """

    present_s: float | None = None
    tolerance_s: float = 0.0
    declared_s: float | None = None
    mended: bytes | None = None


def truncated(kind: str, detail: str) -> AudioError:
    return AudioError(f"the {kind} file is truncated ({detail})", code="corrupt-audio")


def damaged(kind: str, detail: str) -> AudioError:
    return AudioError(f"the {kind} file is damaged ({detail})", code="corrupt-audio")


def check_structure(kind: str, data: bytes) -> Layout:
    """Raise corrupt-audio if ``data`` is really cut short; say what its headers and bytes tell of its length."""
    if kind in ("wav", "aiff"):
        return _check_iff(data, kind)
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
    return Layout()


def _is_fourcc(raw: bytes) -> bool:
    """Four printable ASCII characters starting with a letter (or AIFF's ``(c) ``): a chunk's or box's type."""
    return len(raw) == 4 and (raw[:1].isalpha() or raw == b"(c) ") and all(32 <= byte < 127 for byte in raw)


@dataclass(frozen=True, slots=True)
class _Blocks:
    """How a WAV's or AIFF's sound is cut into blocks: ``size`` bytes (None if the codec's blocks are not known)
    holding ``samples`` samples of every channel."""

    rate: int
    size: int | None
    samples: int = 1


# WAVE format tags whose block is one sample of each channel: PCM, IEEE float, A-law, mu-law
_WAVE_SAMPLES = {1, 3, 6, 7}
# AIFF-C compression type -> (bytes per channel in a block, or None to go by the sample size; samples in a block)
_AIFC_BLOCKS: dict[bytes, tuple[int | None, int]] = {
    **dict.fromkeys((b"NONE", b"twos", b"sowt"), (None, 1)),
    **dict.fromkeys((b"raw ", b"ulaw", b"ULAW", b"alaw", b"ALAW"), (1, 1)),
    **{b"in24": (3, 1), b"in32": (4, 1), b"fl32": (4, 1), b"FL32": (4, 1), b"fl64": (8, 1), b"FL64": (8, 1)},
    b"ima4": (34, 64),
}


def _wave_blocks(data: bytes, body: int, size: int) -> _Blocks:
    """The ``fmt `` chunk at ``body``; WAVE_FORMAT_EXTENSIBLE keeps the real format tag in its sub-format."""
    tag = int.from_bytes(data[body : body + 2], "little")
    if tag == 0xFFFE and size >= 40:
        tag = int.from_bytes(data[body + 24 : body + 26], "little")
    block = int.from_bytes(data[body + 12 : body + 14], "little")
    return _Blocks(int.from_bytes(data[body + 4 : body + 8], "little"), block if tag in _WAVE_SAMPLES else None)


def _aiff_blocks(data: bytes, body: int, size: int, aifc: bool) -> tuple[_Blocks, int]:
    """The ``COMM`` chunk at ``body``, and the numSampleFrames it declares."""
    channels, frames = int.from_bytes(data[body : body + 2], "big"), int.from_bytes(data[body + 2 : body + 6], "big")
    width, samples = (int.from_bytes(data[body + 6 : body + 8], "big") + 7) // 8, 1
    if aifc and size >= 22:
        known, samples = _AIFC_BLOCKS.get(data[body + 18 : body + 22], (0, 1))
        if known is not None:
            width = known
    return _Blocks(int(_extended(data[body + 8 : body + 18])), width * channels or None, samples), frames


def _check_iff(data: bytes, kind: str) -> Layout:
    """RIFF/RF64 WAV (little-endian) and FORM AIFF/AIFF-C (big-endian). The sound runs to the end of its chunk or
    of the file, whichever comes first, and must end on a whole block; chunks around it must be whole."""
    order: Literal["little", "big"] = "big" if kind == "aiff" else "little"
    sound_id = b"SSND" if kind == "aiff" else b"data"
    ds64 = data[:4] in (b"RF64", b"BW64")
    blocks: _Blocks | None = None
    frames = 0
    sound: tuple[int, int, int] | None = None  # (where the sound chunk starts, its first audio byte, its size)
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], order)
        body = pos + 8
        if chunk == b"fmt ":
            blocks = _wave_blocks(data, body, size)
        elif chunk == b"COMM":
            blocks, frames = _aiff_blocks(data, body, size, data[8:12] == b"AIFC")
        elif chunk == sound_id and sound is None:
            if ds64 and data[12:16] == b"ds64":  # the real size is the ds64 chunk's; FFmpeg ignores this one
                size = int.from_bytes(data[28:36], "little")
            offset = 8 + int.from_bytes(data[body : body + 4], "big") if kind == "aiff" else 0
            sound = (pos, body + offset, size)
            if _placeholder(kind, size) or body + size >= len(data):
                break  # the audio runs to the end of the file: nothing after it to walk
        if body + size > len(data):
            raise truncated(kind, f"the {chunk.decode('latin-1')!r} chunk is cut")
        pos = body + size + (size & 1)
        if sound is not None and not _is_fourcc(data[pos : pos + 4]):
            break  # past the sound, what is no chunk is audio beyond a short declared size (FFmpeg stops) or junk
    if sound is None:
        return Layout()  # no sound chunk: the demuxer refuses the file
    at, start, size = sound
    unknown = _placeholder(kind, size)
    end = len(data) if unknown else min(at + 8 + size, len(data))
    audio = max(end - start, 0)
    if unknown or at + 8 + size > len(data):
        if blocks and blocks.size and audio % blocks.size:
            what = "sample" if blocks.samples == 1 else "block"
            raise truncated(kind, f"its last {what} has {audio % blocks.size} of {blocks.size} bytes")
        logger.debug(
            "the %s file's %s chunk declares %s audio bytes and holds %d: decoding them all",
            kind,
            sound_id.decode(),
            "an unknown number of" if unknown else size - (start - at - 8),
            audio,
        )
    mended = _mend(data, kind, at) if _unreadable(data, kind, sound) else None
    if not blocks or not blocks.size or not blocks.rate:
        return Layout(mended=mended)
    whole = audio // blocks.size * blocks.samples
    if frames and frames != whole:
        logger.debug("the aiff file's COMM chunk declares %d sample frames and its SSND holds %d", frames, whole)
    return Layout(whole / blocks.rate, 0.01, mended=mended)


def _placeholder(kind: str, size: int) -> bool:
    """A sound chunk size that says "until the end of the file": 0 or 0xFFFFFFFF (FFmpeg reads both so for a WAV;
    for AIFF, what a SSND chunk cannot hold, its own 8-byte header)."""
    return size in (0, 0xFFFFFFFF) or (kind == "aiff" and size < 8)


def _unreadable(data: bytes, kind: str, sound: tuple[int, int, int]) -> bool:
    """Sizes FFmpeg cannot read past: an AIFF's FORM too small to reach the SSND chunk or a SSND of size 0, an
    RF64's ds64 data size of 0 (what FFmpeg itself writes when it streams)."""
    at, _, size = sound
    if kind == "aiff":
        form = int.from_bytes(data[4:8], "big")
        return size < 8 or (form < 0x80000000 and form <= at - 8)
    return data[12:16] == b"ds64" and size == 0


def _mend(data: bytes, kind: str, at: int) -> bytes:
    """A copy of ``data`` whose header sizes say that the sound chunk at ``at`` runs to the end of the file."""
    logger.debug("the %s file's header sizes are placeholders FFmpeg cannot read past: decoding a mended copy", kind)
    out = bytearray(data)
    if kind == "aiff":
        out[4:8] = min(len(data) - 8, 0xFFFFFFFF).to_bytes(4, "big")
        out[at + 4 : at + 8] = min(len(data) - at - 8, 0xFFFFFFFF).to_bytes(4, "big")
    else:
        out[20:28] = (len(data) - 8).to_bytes(8, "little")
        out[28:36] = (len(data) - at - 8).to_bytes(8, "little")
    return bytes(out)


def _extended(raw: bytes) -> float:
    """An 80-bit IEEE extended float, as AIFF stores its sample rate."""
    if len(raw) < 10:
        return 0.0
    exponent = ((raw[0] & 0x7F) << 8 | raw[1]) - 16383
    return float(int.from_bytes(raw[2:10], "big") * 2.0 ** (exponent - 63))


def _check_flac(data: bytes) -> Layout:
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


def _check_frames(data: bytes, start: int, parse: FrameParser, kind: str) -> Layout:
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
    """Walk EBML elements, descending into Segment and Cluster. Their sizes are hints (MediaRecorder leaves them
    unknown, a cut file keeps them whole): every other element, blocks above all, must be whole, and inside the
    Segment every element must parse."""
    pos, segment_end = 0, None
    while pos < len(data):
        inside = segment_end is not None and pos < segment_end
        element = _ebml_id(data, pos)
        if element is None:
            if inside and data[pos:].strip(b"\0"):  # zeros to the end are a writer's reserved space
                raise damaged(kind, f"no element where one must start, at byte {pos}")
            return  # junk outside the Segment: not ours to judge
        eid, id_len = element
        if pos + id_len >= len(data):
            raise truncated(kind, "the last element header is cut")
        sized = _ebml_size(data, pos + id_len)
        if sized is None:
            if inside and data[pos:].strip(b"\0"):
                raise damaged(kind, f"an element at byte {pos} has no valid size")
            return
        size, size_len = sized
        head = id_len + size_len
        if pos + head > len(data):
            raise truncated(kind, "the last element header is cut")
        if eid in (_EBML_SEGMENT, _EBML_CLUSTER):
            if size is not None and pos + head + size > len(data):
                logger.debug("the %s file's element %#x declares %d bytes past the end", kind, eid, size)
            if eid == _EBML_SEGMENT:
                segment_end = len(data) if size is None else min(pos + head + size, len(data))
            pos += head  # descend: the children follow
        elif size is None:
            return  # an unknown-size element we do not know how to descend into
        elif pos + head + size > len(data):
            raise truncated(kind, f"an element lacks {pos + head + size - len(data)} bytes")
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
    """Top-level boxes must be whole, except an ``mdat`` when a ``moov`` before it lists audio samples (its size is
    then a hint); every audio sample the ``moov`` lists must be in the file."""
    pos, samples_end = 0, None
    while pos + 8 <= len(data):
        box, size, head = data[pos + 4 : pos + 8], int.from_bytes(data[pos : pos + 4], "big"), 8
        if size == 1:
            size, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos  # the last box runs to the end of the file by definition
        if size < head or not _is_fourcc(box):
            logger.debug("the mp4 file has no box at byte %d: junk, or samples past a short mdat", pos)
            break
        if box == b"moov" and pos + size <= len(data):
            samples_end = _samples_end(data, pos + head, pos + size)
        if pos + size > len(data):
            if box != b"mdat" or samples_end is None:
                raise truncated("mp4", f"the {box.decode('latin-1')!r} box is cut")
            logger.debug("the mp4 file's mdat declares %d bytes and holds %d", size - head, len(data) - pos - head)
            break
        pos += size
    else:
        if pos < len(data):
            raise truncated("mp4", "the last box header is cut")
    if samples_end is not None and samples_end > len(data):
        raise truncated("mp4", f"its audio samples run {samples_end - len(data)} bytes past the end")


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, first byte of the body, end) of each whole box in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, head = int.from_bytes(data[pos : pos + 4], "big"), 8
        if size == 1:
            size, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            return
        yield data[pos + 4 : pos + 8], pos + head, pos + size
        pos += size


def _box(data: bytes, start: int, end: int, path: tuple[bytes, ...]) -> tuple[int, int] | None:
    """(body, end) of the box at ``path`` below ``data[start:end]``."""
    for box, body, stop in _boxes(data, start, end):
        if box == path[0]:
            return (body, stop) if len(path) == 1 else _box(data, body, stop, path[1:])
    return None


def _samples_end(data: bytes, start: int, end: int) -> int | None:
    """Where the last audio sample listed by the ``moov`` box in ``data[start:end]`` ends; None if it lists none
    (a fragmented file lists them in its ``moof`` boxes)."""
    last = None
    for box, body, stop in _boxes(data, start, end):
        handler = _box(data, body, stop, (b"mdia", b"hdlr")) if box == b"trak" else None
        if handler is None or data[handler[0] + 8 : handler[0] + 12] != b"soun":
            continue
        table = _box(data, body, stop, (b"mdia", b"minf", b"stbl"))
        if table is None:
            continue
        track_end = _track_end(data, *table)
        if track_end is not None:
            last = max(last or 0, track_end)
    return last


def _track_end(data: bytes, start: int, end: int) -> int | None:
    """Where the last sample of the sample table ``stbl`` in ``data[start:end]`` ends: chunk offsets (stco or
    co64), samples per chunk (stsc) and sample sizes (stsz)."""
    tables = {box: (body, stop) for box, body, stop in _boxes(data, start, end)}
    offsets = _table(data, *tables[b"co64"], 8) if b"co64" in tables else None
    if offsets is None and b"stco" in tables:
        offsets = _table(data, *tables[b"stco"], 4)
    if offsets is None or b"stsz" not in tables or b"stsc" not in tables:
        return None
    body, stop = tables[b"stsz"]
    uniform, count = int.from_bytes(data[body + 4 : body + 8], "big"), int.from_bytes(data[body + 8 : body + 12], "big")
    sums = None if uniform else np.concatenate(([0], np.cumsum(_table(data, body + 4, stop, 4), dtype=np.int64)))
    total = count if sums is None else len(sums) - 1
    body, stop = tables[b"stsc"]
    runs = _table(data, body, stop, 4, width=3)
    sample, last, run = 0, None, 0
    for chunk, offset in enumerate(offsets.tolist(), start=1):
        while run + 1 < len(runs) and runs[run + 1][0] <= chunk:
            run += 1
        if not len(runs) or sample >= total:
            break
        n = min(int(runs[run][1]), total - sample)
        length = n * uniform if sums is None else int(sums[sample + n] - sums[sample])
        last = max(last or 0, offset + length)
        sample += n
    return last


def _table(data: bytes, body: int, stop: int, size: int, width: int = 1) -> npt.NDArray[np.int64]:
    """The entries of a full box's table at ``data[body:stop]`` (version and flags, a count, then ``width``
    big-endian integers of ``size`` bytes each), as many as the count says and the box holds."""
    count = min(int.from_bytes(data[body + 4 : body + 8], "big"), max(stop - body - 8, 0) // (size * width))
    values = np.frombuffer(data, dtype=f">u{size}", count=count * width, offset=body + 8) if count else np.zeros(0)
    return values.astype(np.int64).reshape(-1, width) if width > 1 else values.astype(np.int64)
