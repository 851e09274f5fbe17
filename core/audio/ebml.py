"""WebM/Matroska EBML elements: a declared size/length/duration is a hint; refuse only what is really cut."""

from __future__ import annotations

import logging

from core.audio.layout import damaged, truncated

logger = logging.getLogger(__name__)

_EBML_SEGMENT, _EBML_CLUSTER = 0x18538067, 0x1F43B675


def check_ebml(data: bytes, kind: str) -> None:
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
