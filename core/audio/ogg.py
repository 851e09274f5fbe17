"""Ogg pages: walking them, the last page must be whole; refuse only what is really cut."""

from __future__ import annotations

from core.audio.layout import truncated


def check_ogg(data: bytes) -> None:
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
