"""WAV (RIFF, RF64/BW64) and AIFF/AIFF-C chunks: a declared size or length is a hint; refuse only what is really cut."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from core.audio.layout import Layout, is_fourcc, truncated

logger = logging.getLogger(__name__)


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


def check_iff(data: bytes, kind: str) -> Layout:
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
        if sound is not None and not is_fourcc(data[pos : pos + 4]):
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
    if exponent > 64:  # no sample rate is that large (and 2.0 ** exponent overflows): a damaged header, rate unknown
        return 0.0
    return float(int.from_bytes(raw[2:10], "big") * 2.0 ** (exponent - 63))
