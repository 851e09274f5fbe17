"""The README's ways of starting the server, each run for real as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from core.config import ROOT
from tests.fakes.openai_server import FakeOpenAI, free_port


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            return httpx.get(f"{url}/api/status", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("server did not become ready")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen[str]] = []

    def start(args: list[str], extra_env: dict[str, str]) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_BOT_", "OPENAI_"))}
        env.update(
            WEB_BOT_DATABASE__DB_PATH=str(tmp_path / "run.db"),
            WEB_BOT_LOGGING__FILE=str(tmp_path / "run.log"),
            WEB_BOT_AUDIO__DIR=str(tmp_path / "audio"),
            HF_HUB_OFFLINE="1",
            **extra_env,
        )
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


async def chat_once(port: int, text: str) -> dict:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/entry") as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(text)
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes):  # spoken reply audio
                continue
            event = json.loads(frame)
            if event["type"] in ("reply", "error"):
                return event


def fake_config(tmp_path: Path, fake: FakeOpenAI) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "llm": {"engine": "openai", "base_url": f"{fake.url}/v1", "model_name": "fake-model"},  # type: ignore[attr-defined]
        "stt": {"engine": "none"}, "tts": {"engine": "none"},
    }))
    return path


async def test_uvicorn_app_with_web_bot_config(launch, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    port = free_port()
    proc = launch(
        [sys.executable, "-m", "uvicorn", "web_bot.app:app", "--host", "127.0.0.1", "--port", str(port)],
        {"WEB_BOT_CONFIG": str(fake_config(tmp_path, fake_openai))},
    )
    status = wait_ready(f"http://127.0.0.1:{port}", proc)
    assert status["llm"]["engine"] == "openai" and status["config_loaded"] is True
    assert (await chat_once(port, "via uvicorn"))["text"].startswith("You said: via uvicorn")
    # The README's curl line, as written.
    curl = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/api/status"], capture_output=True, text=True)
    assert curl.returncode == 0 and json.loads(curl.stdout)["db_connected"] is True


async def test_python_m_web_bot_with_config(launch, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    port = free_port()
    proc = launch(
        [sys.executable, "-m", "web_bot", "--host", "127.0.0.1", "--port", str(port),
         "--config", str(fake_config(tmp_path, fake_openai))],
        {},
    )
    wait_ready(f"http://127.0.0.1:{port}", proc)
    assert (await chat_once(port, "via python -m"))["type"] == "reply"
    assert "connected entry" in (tmp_path / "run.log").read_text()


@pytest.mark.slow
async def test_make_run_answers_offline_with_the_local_model(launch) -> None:
    """`make run` on the offline defaults: no key, no network, the embedded model answers."""
    port = free_port()
    proc = launch(["make", "--no-print-directory", "run", f"PORT={port}"], {"WEB_BOT_LLM__MAX_TOKENS": "24"})
    status = wait_ready(f"http://127.0.0.1:{port}", proc, timeout=600)
    assert status["llm"]["engine"] == "local" and status["llm"]["ready"] is True
    assert status["stt"]["engine"] == "whisper" and status["stt"]["ready"] is True
    assert status["tts"]["engine"] == "piper" and status["tts"]["ready"] is True
    assert status["llm_available"] is True and status["db_connected"] is True
    reply = await chat_once(port, "Hello! Who are you?")
    assert reply["type"] == "reply" and reply["text"].strip()


def test_make_migrate_upgrades_the_configured_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_BOT_", "OPENAI_"))}
    env["WEB_BOT_DATABASE__DB_PATH"] = str(tmp_path / "migrated.db")
    run = subprocess.run(
        ["make", "--no-print-directory", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "migrated.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"messages", "alembic_version"} <= tables
