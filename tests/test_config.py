"""Configuration: defaults, the file, the environment, and errors that name the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ROOT, load_settings
from core.errors import ConfigError
from core.voice.endpointing import Endpointer


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_repository_config_loads_with_offline_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.config_file == str(ROOT / "data" / "config.json")
    assert settings.llm.engine == "auto" and settings.llm.api_key is None
    assert settings.database.db_path == str(ROOT / "data" / "web_bot.db")
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.logging.file == str(ROOT / "web_bot.log")
    assert settings.stt.engine == "whisper" and settings.tts.engine == "piper"
    assert settings.voice.replies == "auto"


@pytest.mark.parametrize(
    ("in_file", "in_env", "mode"),
    [
        (None, None, "auto"),
        (True, None, "always"),
        (False, None, "never"),
        ("always", None, "always"),
        (True, "false", "never"),
        (None, "on", "always"),
        (None, "0", "never"),
        ("never", "auto", "auto"),
    ],
)
def test_voice_replies_modes_and_their_older_spelling(tmp_path: Path, in_file, in_env, mode: str) -> None:
    path = write(tmp_path, {} if in_file is None else {"voice": {"replies": in_file}})
    environ = {} if in_env is None else {"WEB_BOT_VOICE__REPLIES": in_env}
    assert load_settings(path, environ=environ).voice.replies == mode


def test_voice_replies_refuses_anything_else(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"voice\.replies"):
        load_settings(write(tmp_path, {"voice": {"replies": "sometimes"}}), environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"llm": {"base_url": "http://file/v1", "temperature": 0.1}})
    settings = load_settings(path, environ={"WEB_BOT_LLM__BASE_URL": "http://env/v1", "WEB_BOT_LLM__MAX_TOKENS": "99"})
    assert settings.llm.base_url == "http://env/v1"
    assert settings.llm.max_tokens == 99 and settings.llm.temperature == 0.1


def test_openai_variables_are_honoured_but_explicit_keys_win(tmp_path: Path) -> None:
    path = write(tmp_path, {"llm": {"api_key": "sk-from-file"}})
    settings = load_settings(path, environ={"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://o/v1"})
    assert settings.llm.api_key is not None and settings.llm.api_key.get_secret_value() == "sk-env"
    assert settings.llm.base_url == "http://o/v1"
    settings = load_settings(path, environ={"OPENAI_API_KEY": "sk-env", "WEB_BOT_LLM__API_KEY": "sk-web"})
    assert settings.llm.api_key is not None and settings.llm.api_key.get_secret_value() == "sk-web"
    assert "sk-web" not in repr(settings) and "sk-web" not in str(settings.model_dump())


def test_file_api_key_is_accepted(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {"llm": {"api_key": "sk-file"}}), environ={})
    assert settings.llm.api_key is not None and settings.llm.api_key.get_secret_value() == "sk-file"


def test_web_bot_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"llm": {"model_name": "from-named-file"}})
    assert load_settings(environ={"WEB_BOT_CONFIG": str(path)}).llm.model_name == "from-named-file"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"WEB_BOT_CONFIG": str(tmp_path / "missing.json")})


@pytest.mark.parametrize(
    ("data", "environ", "named"),
    [
        ({"llm": {"bogus": 1}}, {}, "llm.bogus: unknown key"),
        ({"nonsense": {}}, {}, "nonsense: unknown key"),
        ({"llm": {"temperature": "hot"}}, {}, "llm.temperature"),
        ({"llm": {"engine": "magic"}}, {}, "llm.engine"),
        ({}, {"WEB_BOT_LLM__NOPE": "1"}, "llm.nope: unknown key"),
        ({}, {"WEB_BOT_SERVER__PORT": "seventy"}, "server.port"),
        ({}, {"WEB_BOT_PORT": "1"}, "WEB_BOT_PORT"),
        ({"llm": 5}, {}, "llm: must be an object"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, data: dict, environ: dict, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, data), environ=environ)
    assert named in str(err.value)


def test_relative_paths_resolve_against_the_project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(write(tmp_path, {"audio": {"dir": "stored/audio"}}), environ={})
    assert settings.audio.dir == str(ROOT / "stored" / "audio")


def test_bad_config_stops_start_up_with_the_key_named(tmp_path: Path) -> None:
    path = write(tmp_path, {"database": {"colour": "blue"}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEB_BOT_")}
    run = subprocess.run(
        [sys.executable, "-m", "web_bot", "--config", str(path), "--port", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "database.colour: unknown key" in run.stderr


def test_speech_is_detected_among_english_and_russian_by_default(tmp_path: Path) -> None:
    for settings in (load_settings(write(tmp_path, {}), environ={}), load_settings(environ={})):
        assert settings.stt.model == "" and settings.stt.language == "" and settings.stt.languages == ["en", "ru"]


@pytest.mark.parametrize(
    ("in_file", "in_env", "languages"),
    [(["en", "fr"], None, ["en", "fr"]), ([], None, []), (None, "de, fr", ["de", "fr"]), (None, "", [])],
)
def test_stt_languages_from_the_file_or_the_environment(
    tmp_path: Path, in_file: list[str] | None, in_env: str | None, languages: list[str]
) -> None:
    path = write(tmp_path, {} if in_file is None else {"stt": {"languages": in_file}})
    environ = {} if in_env is None else {"WEB_BOT_STT__LANGUAGES": in_env}
    assert load_settings(path, environ=environ).stt.languages == languages


@pytest.mark.parametrize("code", ["EN", "english", "e", "en-US", "", 7])
def test_stt_languages_are_language_codes(tmp_path: Path, code: object) -> None:
    with pytest.raises(ConfigError, match=r"stt\.languages\.1"):
        load_settings(write(tmp_path, {"stt": {"languages": ["en", code]}}), environ={})


def test_the_confirming_and_doubt_silences_never_outlast_max_silence(tmp_path: Path) -> None:
    """A configuration valid before vad.confirm_silence_ms and vad.doubt_silence_ms existed stays valid: max_silence
    still ends every pause."""
    settings = load_settings(write(tmp_path, {"vad": {"max_silence_ms": 500}}), environ={})
    assert settings.vad.confirm_silence_ms == 700
    judge = Endpointer(object(), silence_ms=200, max_silence_ms=settings.vad.max_silence_ms,  # type: ignore[arg-type]
                       confirm_silence_ms=settings.vad.confirm_silence_ms,
                       doubt_silence_ms=settings.vad.doubt_silence_ms)
    assert judge.confirm_silence_ms == 500
    assert settings.vad.doubt_silence_ms == 1500 and judge.doubt_silence_ms == 0  # held pauses end at max_silence
