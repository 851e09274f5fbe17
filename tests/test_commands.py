"""Slash commands and the status endpoint, through the real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from core.config import load_settings
from tests.conftest import Served
from tests.fakes.openai_server import FakeOpenAI
from tests.speech import silence, wav

STATUS_FIELDS = {
    "status",
    "version",
    "uptime_s",
    "active_connections",
    "llm_available",
    "db_connected",
    "config_loaded",
    "llm",
    "stt",
    "tts",
}


async def test_help_lists_every_command(server: Served, connect) -> None:
    client = await connect(server, "helper")
    await client.send("/help")
    event = await client.recv()
    assert event["type"] == "command" and event["name"] == "help"
    names = [c["name"] for c in event["data"]["commands"]]
    assert {"help", "status", "clear", "info"} <= set(names)
    for name in names:
        assert f"/{name}" in event["text"]


async def test_status_command_matches_api_status(server: Served, connect) -> None:
    client = await connect(server, "statusy")
    await client.send({"type": "text", "text": "/status"})
    event = await client.recv()
    assert event["name"] == "status" and "Status: ok" in event["text"]
    assert event["data"].keys() >= STATUS_FIELDS
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = (await http.get("/api/status")).json()
    assert body.keys() == event["data"].keys()
    assert body["active_connections"] == 1 and body["db_connected"] is True and body["llm_available"] is True
    assert body["config_loaded"] is True
    assert body["llm"] == {
        "engine": "openai",
        "model": "fake-model",
        "ready": True,
        "base_url": body["llm"]["base_url"],
    }
    for stage in ("stt", "tts"):
        assert {"engine", "model", "ready"} <= body[stage].keys()


async def test_clear_really_forgets(server: Served, connect, fake_openai: FakeOpenAI) -> None:
    client = await connect(server, "forgetful")
    other_tab = await connect(server, "forgetful")
    await client.chat("my secret is 42")
    await other_tab.until("reply")
    await client.send("/clear")
    events = await client.until("command")
    assert {"type": "cleared", "deleted": 2} in events
    assert events[-1]["data"] == {"deleted": 2} and "Cleared 2 messages" in events[-1]["text"]
    assert (await other_tab.recv())["type"] == "cleared"
    await client.chat("what is my secret?")
    assert [m["role"] for m in fake_openai.requests[-1]["messages"]] == ["system", "user"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        messages = (await http.get("/api/history/forgetful")).json()["messages"]
    assert [m["content"] for m in messages][0] == "what is my secret?"


async def test_clear_waits_for_the_reply_being_written(server: Served, connect) -> None:
    client = await connect(server, "clear-race")
    await client.send("slowly [slow:0.2]")
    await client.send("/clear")
    events = await client.until("command")
    assert "reply" in [e["type"] for e in events]
    assert events[-1]["data"]["deleted"] == 2


async def test_info_reports_the_conversation(server: Served, connect) -> None:
    client = await connect(server, "curious")
    await connect(server, "curious")
    await client.chat("hello")
    await client.send("/info")
    event = await client.until("command")
    data = event[-1]["data"]
    assert data["client_id"] == "curious" and data["message_count"] == 2 and data["open_tabs"] == 2
    assert data["first_activity"] <= data["last_activity"]
    assert data["engines"]["llm"]["engine"] == "openai"
    assert "curious" in event[-1]["text"] and "2 open tab" in event[-1]["text"]


@pytest.mark.parametrize("line", ["/dance", "/", "/HELPME please"])
async def test_unknown_command_gets_a_hint(server: Served, connect, line: str) -> None:
    client = await connect(server, "lost")
    await client.send(line)
    event = await client.recv()
    assert event["type"] == "error" and event["code"] == "unknown-command" and "/help" in event["message"]


async def test_commands_are_not_stored_or_sent_to_the_llm(server: Served, connect, fake_openai) -> None:
    client = await connect(server, "cmd-only")
    before = len(fake_openai.requests)
    for line in ("/help", "/status", "/info"):
        await client.send(line)
        await client.recv()
    assert len(fake_openai.requests) == before
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/api/history/cmd-only")).json()["messages"] == []


async def test_status_never_shows_secrets_and_logs_keep_them_out(serve, make_settings, connect, tmp_path) -> None:
    served = serve(make_settings(environ={"OPENAI_API_KEY": "sk-very-secret-key"}))
    client = await connect(served, "secretive")
    await client.chat("tell me something private-text-123")
    await client.send("/status")
    status = await client.recv()
    await client.send("/info")
    info = await client.recv()
    async with httpx.AsyncClient(base_url=served.url) as http:
        body = (await http.get("/api/status")).text
    for text in (body, str(status), str(info)):
        assert "sk-very-secret-key" not in text
    await asyncio.sleep(0.1)
    log = (tmp_path / "web_bot.log").read_text()
    assert "sk-very-secret-key" not in log
    assert "private-text-123" not in log, "user text is logged only at DEBUG"
    assert "connected secretive" in log and "turn client=secretive" in log and "command /status" in log


async def test_page_is_served(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/")
        script = await http.get("/static/app.js")
    assert page.status_code == 200 and "<textarea" in page.text
    assert script.status_code == 200
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in script.text


def test_every_catalogue_has_englishs_keys_and_placeholders() -> None:
    import re

    from core.i18n import catalogue, locales

    english = catalogue("en")
    placeholders = re.compile(r"{(\w+)}")
    assert set(locales()) >= {"en", "ru"}
    for locale in locales():
        words = catalogue(locale)
        # Plural keys may differ by language (CLDR categories): compare their stems.
        stems = {re.sub(r"\.(one|few|many|other)$", "", k) for k in words}
        assert stems == {re.sub(r"\.(one|few|many|other)$", "", k) for k in english}, locale
        for key, text in words.items():
            stem = re.sub(r"\.(one|few|many|other)$", "", key)
            model = english.get(key) or english[f"{stem}.other"]
            assert set(placeholders.findall(text)) == set(placeholders.findall(model)), (locale, key)


@pytest.mark.parametrize(
    ("count", "english", "russian"),
    [(1, "1 message", "1 сообщение"), (2, "2 messages", "2 сообщения"), (5, "5 messages", "5 сообщений"),
     (11, "11 messages", "11 сообщений"), (21, "21 messages", "21 сообщение"), (22, "22 messages", "22 сообщения")],
)
def test_plural_forms(count: int, english: str, russian: str) -> None:
    from core.i18n import plural

    assert english in plural("en", "clear", count)
    assert russian in plural("ru", "clear", count)


async def test_commands_answer_in_the_pages_language(server: Served, connect) -> None:
    client = await connect(server, "russian-page")
    await client.send({"type": "config", "locale": "ru"})
    assert (await client.recv())["type"] == "config"
    await client.send("/help")
    event = await client.recv()
    assert event["text"].startswith("Команды:") and "список команд" in event["text"]
    assert {"name": "help", "summary": "список команд"} in event["data"]["commands"]
    await client.send("/status")
    assert (await client.recv())["text"].startswith("Состояние: в порядке")
    await client.send("/voice maybe")
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == "bad-command" and "/voice on" in error["message"]
    await client.send("/nope")
    assert "неизвестная команда /nope" in (await client.recv())["message"]
    await client.send({"type": "config", "locale": ""})
    await client.recv()
    await client.send("/help")
    assert (await client.recv())["text"].startswith("Commands:")


@pytest.fixture(scope="module")
def hearing(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI) -> Iterator[Served]:
    """A server with the real Whisper base (stt.languages the default en, ru), shared by the language tests."""
    folder = tmp_path_factory.mktemp("hearing")
    config = {
        "llm": {"engine": "openai", "base_url": f"{fake_openai.url}/v1",  # type: ignore[attr-defined]
                "model_name": "fake-model", "timeout_s": 5, "max_retries": 0},
        "database": {"db_path": str(folder / "history.db")},
        "audio": {"dir": str(folder / "audio")},
        "logging": {"file": str(folder / "web_bot.log"), "level": "INFO"},
        "stt": {"engine": "whisper"},
        "tts": {"engine": "none"},
        "limits": {"enabled": False},
        "history": {"titles": "first-words"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    served = Served(load_settings(folder / "config.json", environ={}))
    yield served
    served.stop()


@pytest.mark.slow
async def test_config_refuses_a_language_the_speech_model_does_not_know(hearing: Served, connect) -> None:
    """It was echoed back as fixed, and every utterance was then silently detected instead."""
    client = await connect(hearing, "unknown-language")
    await client.send({"type": "config", "language": "ru"})
    before = await client.recv()
    assert before["type"] == "config" and before["language"] == "ru"
    await client.send({"type": "config", "language": "xx", "voice_replies": not before["voice_replies"]})
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == "bad-message" and "'xx'" in error["message"]
    # The socket is still open, and nothing of the refused message was applied.
    await client.send({"type": "config"})
    after = await client.recv()
    assert after["type"] == "config" and after["language"] == "ru" and after["voice_replies"] == before["voice_replies"]
    await client.send("/help")  # the page's locale falls back to the fixed language: still Russian
    assert (await client.recv())["text"].startswith("Команды:")
    await client.send({"type": "config", "language": ""})
    assert (await client.recv())["language"] is None


# Each language a client may fix, and what it is taken as (None: refused). Whisper knows de, outside stt.languages:
# that list only bounds detection, and a language given is used as is (README, stt.language).
LANGUAGES: dict[str, str | None] = {
    "ru": "ru", "en": "en", "RU": "ru", "ru-RU": "ru", "en_GB": "en", "de": "de",
    "xx": None, "zz": None, "qq-QQ": None, "auto": None, "klingon": None,
}


@pytest.mark.slow
@pytest.mark.parametrize("tag", LANGUAGES)
async def test_the_socket_and_v1_agree_on_which_languages_there_are(hearing: Served, connect, tag: str) -> None:
    async with httpx.AsyncClient(base_url=f"{hearing.url}/v1", timeout=60) as http:
        answer = await http.post("/audio/transcriptions", data={"model": "whisper-1", "language": tag},
                                 files={"file": ("quiet.wav", wav(silence(0.5), 16000))})
    client = await connect(hearing, f"tag-{sorted(LANGUAGES).index(tag)}")
    await client.send({"type": "config", "language": tag})
    event = await client.recv()
    taken = LANGUAGES[tag]
    if taken is None:
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad-request", answer.text
        assert event["type"] == "error" and event["code"] == "bad-message", event
    else:
        assert answer.status_code == 200, answer.text
        assert event["type"] == "config" and event["language"] == taken, event
