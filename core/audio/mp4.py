"""MP4/M4A boxes and sample tables: a declared size/length/duration is a hint; refuse only what is really cut."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from core.audio.layout import is_fourcc, truncated

logger = logging.getLogger(__name__)

MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"}


def check_mp4(data: bytes) -> None:
    """Top-level boxes must be whole, except an ``mdat`` when a ``moov`` before it lists audio samples (its size is
    then a hint); every audio sample the ``moov`` lists must be in the file."""
    pos, samples_end = 0, None
    while pos + 8 <= len(data):
        box, size, head = data[pos + 4 : pos + 8], int.from_bytes(data[pos : pos + 4], "big"), 8
        if size == 1:
            size, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos  # the last box runs to the end of the file by definition
        if size < head or not is_fourcc(box):
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
