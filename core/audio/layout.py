"""What every container check reports, ``Layout``, and the corrupt-audio errors the checks raise."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import AudioError


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


def is_fourcc(raw: bytes) -> bool:
    """Four printable ASCII characters starting with a letter (or AIFF's ``(c) ``): a chunk's or box's type."""
    return len(raw) == 4 and (raw[:1].isalpha() or raw == b"(c) ") and all(32 <= byte < 127 for byte in raw)
