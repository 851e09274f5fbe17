"""Cheap walks over audio containers' headers: which container a file holds, whether it is really cut short, and
how long the audio really in it lasts (see ``core.audio`` for each format's rule).

A size, length or duration a header declares is a hint: streaming writers leave placeholders there, and a cut file
keeps its full-length header. Only what the bytes show is judged; disagreements are logged at DEBUG.
"""

from __future__ import annotations

from core.audio.ebml import check_ebml
from core.audio.frames import adts_frame, check_flac, check_frames, mpeg_frame, skip_id3
from core.audio.iff import check_iff
from core.audio.layout import Layout
from core.audio.mp4 import check_mp4
from core.audio.ogg import check_ogg


def check_structure(kind: str, data: bytes) -> Layout:
    """Raise corrupt-audio if ``data`` is really cut short; say what its headers and bytes tell of its length."""
    if kind in ("wav", "aiff"):
        return check_iff(data, kind)
    if kind == "flac":
        return check_flac(data)
    if kind == "mp3":
        return check_frames(data, skip_id3(data), mpeg_frame, kind)
    if kind == "adts":
        return check_frames(data, skip_id3(data), adts_frame, kind)
    if kind == "ogg":
        check_ogg(data)
    elif kind in ("webm", "matroska"):
        check_ebml(data, kind)
    elif kind == "mp4":
        check_mp4(data)
    return Layout()
