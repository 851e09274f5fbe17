"""Crash load: clients that chat and upload while the server is killed (SIGKILL) and started again, and the
ledger of what each was acknowledged. ``bench.chaos_check`` checks the history against it afterwards.

A text turn's words are ``<tag> [reply:answer to <tag> is stored once and whole] [slow:S] [chunks:1]``: the loopback
fake LLM (``tests.fakes.openai_server``) streams that answer a word at a time, so a kill lands mid-reply often, and
every stored reply can be checked word for word. Uploads go through ``POST /upload_audio`` with a short tone, which
the fake speech-to-text hears as ``FAKE_TRANSCRIPT``. Used by ``tests/test_crash.py`` and ``bench/bench_crash.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import wave
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from websockets.exceptions import WebSocketException

from bench.common import ROOT, free_port

FAKE_TRANSCRIPT = "hello from the fake transcriber"
TERMINAL = ("reply", "error", "interrupted")


def turn_text(tag: str, slow_s: float, words: int = 0) -> str:
    """A message whose reply is ``expected_reply(tag, words)``, streamed a word every ``slow_s`` seconds."""
    return f"{tag} [reply:{expected_reply(tag, words)}] [slow:{slow_s}] [chunks:1]"


def expected_reply(tag: str, words: int = 0) -> str:
    return f"answer to {tag} is stored once and whole" + "".join(f" w{i}" for i in range(words))


def tone_wav(seconds: float = 0.6, rate: int = 16000) -> bytes:
    samples = (np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 8000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


@dataclass
class Ledger:
    """What the clients sent and were told, across every kill: the acknowledgments the history must keep."""

    sent: dict[str, set[str]] = field(default_factory=dict)  # client -> texts sent
    uploads: Counter[str] = field(default_factory=Counter)  # client -> uploads posted
    acked: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)  # (client, id) -> (text, source)
    replies: dict[tuple[str, int], str] = field(default_factory=dict)  # (client, id) -> reply text
    errors: Counter[str] = field(default_factory=Counter)  # error code -> count
    closes: Counter[int] = field(default_factory=Counter)  # close code seen by a client -> count
    turns_done: int = 0  # text turns whose reply came
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set at each reply

    def note(self, client_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "user_message":
            self.acked[(client_id, int(event["message_id"]))] = (event["text"], event["source"])
        elif kind == "reply" and event.get("message_id") is not None:
            self.replies[(client_id, int(event["message_id"]))] = event["text"]
        elif kind == "error":
            self.errors[event["code"]] += 1


class Server:
    """``python -m web_bot`` on one port, killed and started again on the same database and port.

    Each start is a fresh process forked from ``bench.forkserver``, which has the server's imports done, so a restart
    costs the app's own start-up only (``starts``: seconds from each start to ``/api/status`` answering).
    """

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.config_path = workdir / "crash-config.json"
        self.config_path.write_text(json.dumps(config))
        self.pid: int | None = None
        self.log: Path | None = None
        self.starts: list[float] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_BOT_", "OPENAI_"))}
        env["HF_HUB_OFFLINE"] = "1"
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--config", str(self.config_path)]
        self._forks = subprocess.Popen(
            [sys.executable, "-m", "bench.forkserver", *args], cwd=ROOT, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )

    def start(self) -> None:
        assert self._forks.stdin is not None and self._forks.stdout is not None
        began = time.monotonic()
        self.log = self.workdir / f"server-{len(self.starts)}.log"
        self._forks.stdin.write(f"{self.log}\n")
        self._forks.stdin.flush()
        self.pid = int(self._forks.stdout.readline())
        deadline = began + 180
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the server exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.url}/api/status", timeout=2)
                self.starts.append(time.monotonic() - began)
                return
            time.sleep(0.05)
        raise TimeoutError(f"the server did not answer: {self.log_tail()}")

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        self._signal(signal.SIGKILL, 30)

    def terminate(self, timeout: float = 120) -> float:
        """SIGTERM, and the seconds until the process is gone."""
        return self._signal(signal.SIGTERM, timeout)

    def _signal(self, sig: int, timeout: float) -> float:
        assert self.pid is not None
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        while self.alive():
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"server {self.pid} still runs {timeout} s after signal {sig}")
            time.sleep(0.01)
        return time.monotonic() - began

    def close(self) -> None:
        if self.alive():
            self.kill()
        if self._forks.stdin is not None:
            self._forks.stdin.close()
        try:
            self._forks.wait(10)
        except subprocess.TimeoutExpired:
            self._forks.kill()
            self._forks.wait()
        if self._forks.stdout is not None:
            self._forks.stdout.close()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log is not None and self.log.exists() else ""


async def _reconnect_pause(rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(0.05, 0.25))


async def texter(server: Server, client_id: str, ledger: Ledger, stop: asyncio.Event, slow_s: float, seed: int) -> None:
    """Chats one turn at a time, each new words; reconnects whenever the socket goes (the server was killed)."""
    rng = random.Random(seed)
    sent = ledger.sent.setdefault(client_id, set())
    n = 0
    while not stop.is_set():
        try:
            async with websockets.connect(
                f"ws://127.0.0.1:{server.port}/ws/{client_id}", max_size=None, open_timeout=5, close_timeout=1
            ) as ws:
                if json.loads(await ws.recv()).get("type") != "welcome":
                    continue
                while not stop.is_set():
                    n += 1
                    tag = f"{client_id}-{n}"
                    text = turn_text(tag, slow_s)
                    sent.add(text)
                    await ws.send(json.dumps({"type": "text", "text": text, "client_msg_id": tag}))
                    if await _until_answered(ws, client_id, tag, ledger):
                        ledger.turns_done += 1
                        ledger.answered.set()
        except (OSError, WebSocketException, TimeoutError) as err:
            if isinstance(err, websockets.ConnectionClosed) and err.rcvd is not None:
                ledger.closes[err.rcvd.code] += 1
        await _reconnect_pause(rng)


async def _until_answered(ws: Any, client_id: str, tag: str, ledger: Ledger) -> bool:
    """Read events until this turn ends (its reply, error or interruption); whether a reply came."""
    turn_id = None
    async with asyncio.timeout(30):
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes):
                continue
            event = json.loads(frame)
            ledger.note(client_id, event)
            if event["type"] == "user_message" and event.get("client_msg_id") == tag:
                turn_id = event.get("turn_id")
            elif event["type"] in TERMINAL and (turn_id is None or event.get("turn_id") == turn_id):
                # An error before the message was stored has no user_message: it is this turn's too.
                return bool(event["type"] == "reply")


async def uploader(server: Server, client_id: str, ledger: Ledger, stop: asyncio.Event, seed: int) -> None:
    """Posts short recordings one after another, with a socket open beside them that hears their user_message."""
    rng = random.Random(seed)
    audio = tone_wav()
    listening = asyncio.create_task(_listen(server, client_id, ledger, stop, rng))
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            while not stop.is_set():
                try:
                    ledger.uploads[client_id] += 1
                    answer = await http.post(
                        f"{server.url}/upload_audio", data={"client_id": client_id},
                        files={"file": ("tone.wav", audio, "audio/wav")},
                    )
                    body = answer.json()
                    if answer.status_code == 200:
                        ledger.replies[(client_id, int(body["message_id"]))] = body["response"]
                    else:
                        ledger.errors[body.get("code", f"http-{answer.status_code}")] += 1
                except (httpx.HTTPError, ValueError):
                    await _reconnect_pause(rng)
                await asyncio.sleep(rng.uniform(0.1, 0.4))
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


async def _listen(server: Server, client_id: str, ledger: Ledger, stop: asyncio.Event, rng: random.Random) -> None:
    while not stop.is_set():
        try:
            async with websockets.connect(
                f"ws://127.0.0.1:{server.port}/ws/{client_id}", max_size=None, open_timeout=5, close_timeout=1
            ) as ws:
                async for frame in ws:
                    if isinstance(frame, str):
                        ledger.note(client_id, json.loads(frame))
        except (OSError, WebSocketException, TimeoutError):
            pass
        await _reconnect_pause(rng)


@dataclass
class Load:
    """The clients running against a server: ``texters`` chatting, ``uploaders`` posting recordings."""

    server: Server
    ledger: Ledger
    texters: int = 45
    uploaders: int = 5
    slow_s: float = 0.02
    seed: int = 16
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for i in range(self.texters):
            coro = texter(self.server, f"t{i}", self.ledger, self.stop, self.slow_s, self.seed * 1000 + i)
            self.tasks.append(asyncio.create_task(coro))
        for i in range(self.uploaders):
            coro = uploader(self.server, f"u{i}", self.ledger, self.stop, self.seed * 2000 + i)
            self.tasks.append(asyncio.create_task(coro))

    async def close(self) -> None:
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def progress(self, turns: int, timeout: float = 60) -> None:
        """Wait until ``turns`` more text turns have been answered (the server is really serving)."""
        target = self.ledger.turns_done + turns
        async with asyncio.timeout(timeout):
            while self.ledger.turns_done < target:
                self.ledger.answered.clear()
                await self.ledger.answered.wait()


async def kill_under_load(
    server: Server, load: Load, kills: int, seed: int, after_kill: Callable[[], None] | None = None
) -> None:
    """Start the server and the load; kill the server (SIGKILL) ``kills`` times at random moments, each after a
    few turns were answered since its start, starting it again each time; then stop the load and the server."""
    rng = random.Random(seed)
    await asyncio.to_thread(server.start)
    load.start()
    for _ in range(kills):
        await load.progress(rng.randint(3, 15), timeout=120)
        await asyncio.sleep(rng.uniform(0, 0.2))
        server.kill()
        if after_kill is not None:
            after_kill()
        await asyncio.to_thread(server.start)
    await load.progress(10, timeout=120)
    await load.close()
    await asyncio.to_thread(server.terminate)


async def sigterm_with_long_replies(server: Server, clients: int, words: int) -> tuple[float, list[int | None]]:
    """Start the server; give each client a reply of ``words`` words at 0.5 s each under way and a message queued
    behind it; SIGTERM. Returns the seconds until the process was gone, and the close code each socket got."""
    await asyncio.to_thread(server.start)
    sockets = []
    for i in range(clients):
        ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/ws/s{i}", max_size=None)
        if json.loads(await ws.recv())["type"] != "welcome":
            raise RuntimeError("no welcome")
        sockets.append(ws)
        for n in (1, 2):
            await ws.send(json.dumps({"type": "text", "text": turn_text(f"s{i}-{n}", 0.5, words)}))
    for ws in sockets:  # every first reply is under way
        while json.loads(await ws.recv())["type"] != "reply_delta":
            pass
    took = await asyncio.to_thread(server.terminate, 600)
    closes: list[int | None] = []
    for ws in sockets:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as closed:
            closes.append(closed.rcvd.code if closed.rcvd is not None else None)
        except TimeoutError:
            closes.append(None)
    return took, closes
