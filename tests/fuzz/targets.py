"""What the fuzzers call, one function per target; each returns a small picklable summary of what it produced.

They run in ``tests.fuzz.bounded``'s worker process (hypothesis) or in an atheris process (``python -m
tests.fuzz``), and raise whatever the code under test raised: the caller decides which errors are allowed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from core.audio import decode_audio
from core.config import load_settings
from core.speech_text import SentenceSplitter, clean_for_speech
from core.unicode import TextRepair, valid_text
from web_bot.protocol import check_chat_text, parse_text_frame


def parse_frame(frame: str) -> dict[str, Any]:
    """``parse_text_frame``; the message's fields."""
    return parse_text_frame(frame).model_dump()


def chat_text(text: str, max_chars: int) -> str:
    return check_chat_text(text, max_chars)


def clean(text: str) -> str:
    return clean_for_speech(text)


def split(text: str, sizes: list[int], options: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The sentences of ``text`` fed whole, and fed in pieces of ``sizes`` (cycled), by a fresh splitter each."""
    whole = SentenceSplitter(**options)
    at_once = whole.feed(text) + whole.flush()
    pieces = SentenceSplitter(**options)
    chunked: list[str] = []
    start, turn = 0, 0
    while start < len(text):
        size = sizes[turn % len(sizes)] if sizes else len(text)
        chunked += pieces.feed(text[start : start + size])
        start, turn = start + size, turn + 1
    chunked += pieces.flush()
    return at_once, chunked


def repair(text: str, sizes: list[int]) -> tuple[str, str]:
    """``valid_text`` of ``text`` whole, and ``TextRepair`` fed it in pieces of ``sizes`` (cycled)."""
    repair = TextRepair()
    out: list[str] = []
    start, turn = 0, 0
    while start < len(text):
        size = sizes[turn % len(sizes)] if sizes else len(text)
        out.append(repair.feed(text[start : start + size]))
        start, turn = start + size, turn + 1
    out.append(repair.flush())
    return valid_text(text), "".join(out)


def load_config(document: bytes, environ: dict[str, str]) -> dict[str, Any]:
    """``load_settings`` of a configuration file holding ``document`` and of ``environ``; the settings as JSON."""
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as folder:
        path = Path(folder) / "config.json"
        path.write_bytes(document)
        settings = load_settings(path, environ=environ)
    dumped: dict[str, Any] = json.loads(settings.model_dump_json())
    return dumped


def load_environment(environ: dict[str, str]) -> dict[str, Any]:
    """``load_settings`` from ``environ`` alone (``WEB_BOT_CONFIG`` may name any file, or none)."""
    dumped: dict[str, Any] = json.loads(load_settings(environ=environ).model_dump_json())
    return dumped


def decode(data: bytes, max_duration_s: float) -> tuple[int, int]:
    """``decode_audio``; the PCM's length in bytes and its rate."""
    clip = decode_audio(data, max_duration_s=max_duration_s)
    return len(clip.pcm), clip.sample_rate


def realtime_update(session: object, dialect: str) -> dict[str, Any]:
    """``RealtimeConfig.update`` of a fresh session, and the session object it then sends."""
    # Imported here: core.realtime's package imports the whole pipeline (seconds), which the other targets skip.
    from core.realtime.protocol import RealtimeConfig

    assert dialect in ("beta", "ga")
    return RealtimeConfig(model="fuzz").update(session, dialect).to_wire(dialect)
