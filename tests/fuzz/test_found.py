"""Inputs that fuzzing found crashing or breaking a property, kept as plain regression tests (``tests/test_fuzz.py``
finds them; each test's docstring says what it did before the fix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.audio import decode_audio
from core.config import load_settings
from core.errors import AudioError, ConfigError, ProtocolError
from core.realtime.protocol import RealtimeConfig, RealtimeError
from core.speech_text import SentenceSplitter, clean_for_speech
from core.unicode import TextRepair, valid_text
from tests import speech
from tests.conftest import Served
from tests.fuzz.strategies import deep
from web_bot.protocol import parse_text_frame


@pytest.mark.parametrize("frame", [deep(5000, "{"), '{"type":"text","text":' + deep(5000)])
def test_json_nested_thousands_deep_is_bad_json(frame: str) -> None:
    """Python's JSON parser raised RecursionError, which escaped the parser (and ended the socket)."""
    with pytest.raises(ProtocolError) as err:
        parse_text_frame(frame)
    assert err.value.code == "bad-json"


async def test_a_frame_nested_too_deep_gets_an_error_and_the_socket_stays_open(server: Served, connect: Any) -> None:
    client = await connect(server, "deep-json")
    await client.send(deep(100_000, "{"))
    error = (await client.until("error"))[-1]
    assert error["code"] == "bad-json"
    await client.send({"type": "ping"})
    assert (await client.until("pong"))[-1]["type"] == "pong"


def test_a_configuration_file_nested_too_deep_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(deep(100_000, "{"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(path, environ={})


@pytest.mark.parametrize("name", ["WEB_BOT_TTS__VOICES", "WEB_BOT_LLM__FALLBACKS"])
def test_json_in_the_environment_nested_too_deep_is_a_config_error(name: str) -> None:
    """JSON-valued keys passed the parser's RecursionError on."""
    with pytest.raises(ConfigError, match="nested too deep"):
        load_settings(environ={name: deep(100_000, "{" if name.endswith("VOICES") else "[")})


@pytest.mark.parametrize("environ", [{"WEB_BOT_AUDIO__DIR": "~nobody-here/audio"},
                                     {"WEB_BOT_DATABASE__DB_PATH": "~nobody-here/web_bot.db"}])
def test_a_home_folder_of_no_user_is_a_config_error(environ: dict[str, str]) -> None:
    """``Path.expanduser`` raised RuntimeError for ``~name`` when no user has that name."""
    with pytest.raises(ConfigError, match="home directory"):
        load_settings(environ=environ)


@pytest.mark.parametrize("config", ["~nobody-here/config.json", "x" * 5000])
def test_an_unreadable_configuration_file_name_is_a_config_error(config: str) -> None:
    """``WEB_BOT_CONFIG`` naming a home folder of no user (RuntimeError) or a name too long for the file system
    (OSError from ``Path.is_file``)."""
    with pytest.raises(ConfigError, match="configuration file"):
        load_settings(environ={"WEB_BOT_CONFIG": config})


@pytest.mark.parametrize("part", [True, "format", ["format"], 5])
@pytest.mark.parametrize("side", ["input", "output"])
def test_realtime_audio_settings_that_are_not_objects_are_refused(part: object, side: str) -> None:
    """``session.audio.input`` of ``true`` raised TypeError (``"format" in True``), which ended the session."""
    with pytest.raises(RealtimeError) as err:
        RealtimeConfig(model="m").update({"audio": {side: part}}, "ga")
    assert err.value.param == f"session.audio.{side}"


def test_a_nul_between_surrogate_halves_is_repaired_alike_whole_and_streamed() -> None:
    """Whole, NUL was dropped first and the halves paired; streamed, the NUL kept them apart."""
    text = "\ud800\x00\udc00"
    repair = TextRepair()
    streamed = "".join(repair.feed(ch) for ch in text) + repair.flush()
    assert valid_text(text) == streamed == "\ufffd\ufffd"


@pytest.mark.parametrize(
    ("text", "spoken"),
    [("&#96;http://", "http://"), ("&lt;b&gt;bold&lt;/b&gt; &#42;&#42;x&#42;&#42;", "bold x"), ("a &lt; b", "a < b")],
)
def test_markup_written_as_entities_is_cleaned_too(text: str, spoken: str) -> None:
    """Entities were unescaped after cleaning, so ``&#96;`` put a backtick back into what was read aloud."""
    assert clean_for_speech(text) == spoken


@pytest.mark.xfail(strict=True, reason="known: a piece cut mid-line that starts 'a. ' loses it as a list marker")
def test_a_letter_and_full_stop_after_a_clause_cut_is_spoken() -> None:
    splitter = SentenceSplitter()
    sentences = splitter.feed("There are three options here, a. the first one, b. the second one.")
    assert "a." in " ".join(sentences + splitter.flush())


@pytest.mark.parametrize("exponent", [b"\x7f\xff", b"\x40\x50"])
def test_an_aiff_sample_rate_past_any_float_is_corrupt_audio(exponent: bytes) -> None:
    """The COMM chunk's 80-bit sample rate with a huge exponent: ``2.0 ** exponent`` raised OverflowError."""
    data = bytearray(speech.encode(speech.noise(0.5, level=0.2), 16000, "aiff"))
    rate = data.index(b"COMM") + 16  # after the chunk's header, channels, frames and sample size
    data[rate : rate + 2] = exponent
    with pytest.raises(AudioError) as err:
        decode_audio(bytes(data), max_duration_s=60)
    assert err.value.code in ("corrupt-audio", "unsupported-audio")
