"""Shared fixtures: a clean environment, the loopback OpenAI fake, real servers and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from core.config import Settings, load_settings
from tests.accounts import password_settings, people  # noqa: F401  (fixtures for every test module)
from tests.backends import (  # noqa: F401  (fixtures for every test module)
    postgres_database,
    postgres_url,
    private_redis,
    redis_prefix,
    redis_server_url,
)
from tests.fakes.openai_server import FakeOpenAI, ThreadedServer
from web_bot.app import create_app


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("WEB_BOT_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    server = ThreadedServer(fake.app()).start()
    fake.url = server.url  # type: ignore[attr-defined]
    yield fake
    server.stop()


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


@pytest.fixture
def make_settings(tmp_path: Path, fake_openai: FakeOpenAI) -> Callable[..., Settings]:
    """Settings for a test server: the fake LLM, a SQLite file and logs in tmp_path, no speech engines."""

    def make(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
        config = {
            "llm": {
                "engine": "openai",
                "base_url": f"{fake_openai.url}/v1",  # type: ignore[attr-defined]
                "model_name": "fake-model",
                "timeout_s": 5,
                "max_retries": 0,
            },
            "database": {"db_path": str(tmp_path / "history.db")},
            "audio": {"dir": str(tmp_path / "audio")},
            "logging": {"file": str(tmp_path / "web_bot.log"), "level": "INFO"},
            "stt": {"engine": "none"},
            "tts": {"engine": "none"},
            # Abuse limits would refuse the bursts other tests send from one address; tests of limits turn them on.
            "limits": {"enabled": False},
            # A title asked of the fake model would be one more request in what other tests count.
            "history": {"titles": "first-words"},
        }
        path = tmp_path / "config.json"
        path.write_text(json.dumps(merge(config, overrides or {})))
        return load_settings(path, environ=environ or {})

    return make


@pytest.fixture
async def whisper_stt():
    """The default Whisper engine, for tests that check what audio says."""
    from core.config import STTSettings
    from core.stt import build_stt

    engine = await build_stt(STTSettings())
    yield engine
    await engine.aclose()


class Served:
    """A running web-bot on 127.0.0.1."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server = ThreadedServer(create_app(settings), ws_max_size=16 * 1024 * 1024).start()
        self.url = self._server.url
        self.ws_url = self.url.replace("http://", "ws://")

    def stop(self) -> None:
        self._server.stop()

    def stored(self, client_id: str) -> list[tuple[str, str, str]]:
        """The client's stored messages as (role, content, status), oldest first, read from the SQLite file."""
        with sqlite3.connect(self.settings.database.db_path) as db:
            rows: list[tuple[str, str, str]] = db.execute(
                "SELECT role, content, status FROM messages WHERE client_id=? ORDER BY id", (client_id,)
            ).fetchall()
        return rows


@pytest.fixture
def serve() -> Iterator[Callable[[Settings], Served]]:
    started: list[Served] = []

    def start(settings: Settings) -> Served:
        served = Served(settings)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def server(serve: Callable[[Settings], Served], make_settings: Callable[..., Settings]) -> Served:
    return serve(make_settings())


class Client:
    """A real WebSocket client that reads JSON events."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, message: str | dict[str, Any] | bytes) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            if isinstance(frame, str):
                event: dict[str, Any] = json.loads(frame)
                return event

    async def until(self, kind: str, timeout: float = 15) -> list[dict[str, Any]]:
        """Events up to and including the first of type ``kind``."""
        events = []
        while True:
            event = await self.recv(timeout)
            events.append(event)
            if event["type"] == kind:
                return events

    async def chat(self, text: str, timeout: float = 15) -> list[dict[str, Any]]:
        await self.send({"type": "text", "text": text})
        return await self.until_any(("reply", "error"), timeout)

    async def until_any(self, kinds: tuple[str, ...], timeout: float = 15) -> list[dict[str, Any]]:
        events = []
        while True:
            event = await self.recv(timeout)
            events.append(event)
            if event["type"] in kinds:
                return events

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Any]]:
    opened: list[Client] = []

    async def open_client(served: Served, client_id: str, *, welcome: bool = True) -> Client:
        ws = await websockets.connect(f"{served.ws_url}/ws/{client_id}", max_size=None)
        client = Client(ws)
        opened.append(client)
        if welcome:
            first = await client.recv()
            assert first["type"] == "welcome"
            client.welcome = first  # type: ignore[attr-defined]
        return client

    yield open_client
    for client in opened:
        await client.close()
