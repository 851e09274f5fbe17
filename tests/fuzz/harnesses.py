"""The atheris harnesses: one ``TestOneInput(data)`` per target, raising only when something crashed or a property
failed. Run by ``python -m tests.fuzz`` (coverage-guided, instrumented); the suite calls them on seeds too.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import atheris

from core.errors import AudioError, ConfigError, ProtocolError
from core.unicode import valid_text
from tests.fuzz import targets


def frames(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    frame = fdp.ConsumeUnicode(fdp.remaining_bytes())
    try:
        targets.parse_frame(frame)
    except ProtocolError as err:
        assert err.code in ("bad-json", "bad-message", "unknown-type"), err.code
    try:
        checked = targets.chat_text(frame, 4000)
    except ProtocolError:
        return
    checked.encode("utf-8")


def text(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    options = {
        "max_chars": fdp.ConsumeIntInRange(1, 200),
        "first_min_chars": fdp.ConsumeIntInRange(0, 60) if fdp.ConsumeBool() else None,
        "first_max_chars": fdp.ConsumeIntInRange(0, 120) if fdp.ConsumeBool() else None,
        "clean": fdp.ConsumeBool(),
    }
    sizes = [fdp.ConsumeIntInRange(1, 25) for _ in range(fdp.ConsumeIntInRange(1, 4))]
    reply = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    targets.clean(reply).encode("utf-8")
    whole, chunked = targets.split(reply, sizes, options)
    assert whole == chunked, (whole, chunked)


def unicode(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    sizes = [fdp.ConsumeIntInRange(1, 9) for _ in range(fdp.ConsumeIntInRange(1, 4))]
    broken = fdp.ConsumeUnicode(fdp.remaining_bytes())
    whole, streamed = targets.repair(broken, sizes)
    whole.encode("utf-8")
    assert whole == streamed and valid_text(whole) == whole and "\x00" not in whole


def config(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    environ = {}
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        environ["WEB_BOT_" + fdp.ConsumeUnicodeNoSurrogates(12)] = fdp.ConsumeUnicodeNoSurrogates(12)
    environ.pop("WEB_BOT_CONFIG", None)
    try:
        targets.load_config(fdp.ConsumeBytes(fdp.remaining_bytes()), environ)
    except ConfigError as err:
        assert err.code == "config-invalid"


def realtime(data: bytes) -> None:
    from core.realtime.protocol import RealtimeError

    try:
        session = json.loads(data)
    except (ValueError, RecursionError):
        return
    for dialect in ("beta", "ga"):
        with contextlib.suppress(RealtimeError):
            json.dumps(targets.realtime_update(session, dialect), allow_nan=False)


def audio(data: bytes) -> None:
    try:
        size, rate = targets.decode(data, 2.0)
    except AudioError as err:
        assert err.code in ("corrupt-audio", "unsupported-audio", "audio-too-long"), err.code
        return
    assert rate == 16000 and size % 2 == 0 and size <= 2.1 * 2 * rate


HARNESSES: dict[str, Callable[[bytes], None]] = {
    "frames": frames, "text": text, "unicode": unicode, "config": config, "realtime": realtime, "audio": audio,
}


def seeds(name: str) -> list[bytes]:
    """A few well-formed inputs for ``name``'s corpus, so the fuzzer starts from inputs that reach deep."""
    if name == "audio":
        from tests import speech

        pcm = speech.noise(0.3, level=0.2)
        return [speech.encode(pcm, 16000, c) for c in ("wav", "aiff", "mp3", "flac", "ogg-opus", "webm-opus", "m4a")]
    if name == "config":
        return [json.dumps({"llm": {"engine": "openai", "timeout_s": 5}, "tts": {"voices": {"en": "piper"}},
                            "limits": {"messages": "20/minute"}, "vad": {"silence_ms": 300}}).encode()]
    if name == "realtime":
        return [json.dumps(s).encode() for s in (
            {"instructions": "Be brief.", "voice": "alloy", "modalities": ["text"], "turn_detection": None},
            {"type": "realtime", "output_modalities": ["audio"], "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": {"type": "server_vad"}},
                "output": {"voice": "marin", "speed": 1.2}}},
        )]
    samples = ['{"type":"text","text":"hi","client_msg_id":"a-1"}', '{"type":"config","language":"ru"}',
               '{"type":"audio_start","sample_rate":16000,"mode":"push_to_talk"}', "## Title\n**Bold**, see "
               "[docs](https://example.com). Dr. Smith said: e.g. 3.14!\n```py\nx = 1\n```\n- item\n| a | b |"]
    return [s.encode("utf-8") for s in samples]
