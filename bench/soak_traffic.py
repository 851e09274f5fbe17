"""The soak's clients (``bench.soak``): typing, uploading, live audio with barge-in, socket churn, a slow reader.

Every client runs its actions inside ``Gate.action()``; ``Traffic.pause`` closes the gate and waits until no action
is under way, so the server can be sampled idle, and ``resume`` opens it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import websockets
from websockets.exceptions import WebSocketException

from tests.speech import SENTENCES, resample, silence, speak, wav

RATE = 16000
CHUNK = RATE * 2 // 50  # 20 ms of 16-bit PCM
# About a minute of speech, and how long the slow reader then reads nothing. Speech is sent at the pace it plays, so a
# nap this short fills no socket buffer (the server drops a reader only once several MB wait unread for
# server.send_timeout_s): ``slow_drops`` counts the drops that happen, ``slow_reads`` the naps read through.
SLOW_REPLY = " ".join(f"Sentence number {i} is here to be spoken slowly and at some length." for i in range(16))
SLOW_READER_NAP_S = 5.0


class Gate:
    """Actions pass while it is open; ``close`` waits for those under way to finish."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def action(self) -> AsyncIterator[None]:
        await self._open.wait()
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def close(self) -> None:
        self._open.clear()
        await self._idle.wait()

    def open(self) -> None:
        self._open.set()


class Traffic:
    """The soak's clients against ``127.0.0.1:port``; ``counts`` and ``errors`` say what happened."""

    def __init__(self, port: int, seed: int = 16) -> None:
        self.port = port
        self.ws = f"ws://127.0.0.1:{port}/ws"
        self.gate = Gate()
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.tasks: list[asyncio.Task[None]] = []
        self.speech: list[bytes] = []  # 16 kHz PCM of each sentence

    async def prepare(self) -> None:
        for sentence in SENTENCES[:3]:
            pcm, rate = await asyncio.to_thread(speak, sentence)
            self.speech.append(resample(pcm, rate, RATE))

    def start(self) -> None:
        clients: list[Callable[[], Awaitable[None]]] = [
            *(lambda i=i: self._typist(f"typist{i}", reconnect_every=15 if i % 2 else 0) for i in range(6)),
            lambda: self._typist("interrupter", barge_in=True),
            lambda: self._uploader("uploader"),
            lambda: self._live("live"),
            lambda: self._churn("churn"),
            lambda: self._slow_reader("slow"),
        ]
        self.tasks = [asyncio.create_task(self._forever(client)) for client in clients]

    async def pause(self) -> None:
        await self.gate.close()

    def resume(self) -> None:
        self.gate.open()

    def check_alive(self) -> None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("a soak client died") from task.exception()

    def problems(self) -> list[str]:
        """Traffic that did not happen: a soak without it proves nothing."""
        wanted = ("turns", "uploads", "live_turns", "barge_ins", "reconnects", "slow_reads")
        return [f"no {kind} happened" for kind in wanted if not self.counts[kind]]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []

    async def _forever(self, client: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await client()
            except (OSError, WebSocketException, TimeoutError, httpx.HTTPError) as err:
                self.counts[f"client_error_{type(err).__name__}"] += 1
                await asyncio.sleep(1)

    def _note(self, event: dict[str, Any]) -> None:
        if event["type"] == "error":
            self.errors[event["code"]] += 1
        elif event["type"] == "interrupted":
            self.counts["interrupted"] += 1

    async def _until(self, ws: Any, kinds: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await ws.recv()
                if isinstance(frame, str):
                    event: dict[str, Any] = json.loads(frame)
                    self._note(event)
                    if event["type"] in kinds:
                        return event

    async def _typist(self, client_id: str, *, reconnect_every: int = 0, barge_in: bool = False) -> None:
        async with websockets.connect(f"{self.ws}/{client_id}", max_size=None) as ws:
            await self._until(ws, ("welcome",))
            n = 0
            while not reconnect_every or n < reconnect_every:
                async with self.gate.action():
                    n += 1
                    if barge_in:  # a long reply, cut by the next message
                        await ws.send(json.dumps({"type": "text", "text": f"long {n} [slow:0.1] [chunks:1] " * 8}))
                        await self._until(ws, ("reply_delta",))
                        await asyncio.sleep(0.3)
                        self.counts["barge_ins"] += 1
                    await ws.send(json.dumps({"type": "text", "text": f"hello soak {n} [slow:0.01]"}))
                    await self._until(ws, ("reply", "error"))
                    self.counts["turns"] += 1
                await asyncio.sleep(self.rng.uniform(0.5, 2.5))
        self.counts["reconnects"] += 1

    async def _uploader(self, client_id: str) -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            while True:
                async with self.gate.action():
                    audio = wav(self.rng.choice(self.speech), RATE)
                    answer = await http.post(
                        f"http://127.0.0.1:{self.port}/upload_audio", data={"client_id": client_id},
                        files={"file": ("speech.wav", audio, "audio/wav")},
                    )
                    if answer.status_code == 200:
                        self.counts["uploads"] += 1
                    else:
                        self.errors[answer.json().get("code", str(answer.status_code))] += 1
                await asyncio.sleep(self.rng.uniform(3, 6))

    async def _live(self, client_id: str) -> None:
        """Hands-free: an utterance, and as soon as its reply is heard being spoken, another one over it."""
        async with websockets.connect(f"{self.ws}/{client_id}", max_size=None) as ws:
            await self._until(ws, ("welcome",))
            await ws.send(json.dumps({"type": "config", "voice_replies": True}))
            await ws.send(json.dumps({"type": "audio_start", "sample_rate": RATE}))
            events: asyncio.Queue[str] = asyncio.Queue()
            reader = asyncio.create_task(self._drain(ws, events))
            try:
                while True:
                    async with self.gate.action():
                        await self._stream(ws, self.rng.choice(self.speech))
                        await self._stream(ws, silence(0.2, RATE))
                        if await self._wait_for(events, "audio", 10):
                            await self._stream(ws, self.rng.choice(self.speech))  # over the spoken reply
                            self.counts["live_barge_ins"] += 1
                        self.counts["live_turns"] += await self._wait_for(events, "reply", 10)
                    await self._stream(ws, silence(3.0, RATE))
            finally:
                reader.cancel()

    async def _stream(self, ws: Any, pcm: bytes) -> None:
        """Send PCM in 20 ms frames, in real time."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, at in enumerate(range(0, len(pcm), CHUNK)):
            await ws.send(pcm[at : at + CHUNK])
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))

    async def _drain(self, ws: Any, events: asyncio.Queue[str]) -> None:
        async for frame in ws:
            if isinstance(frame, str):
                event = json.loads(frame)
                self._note(event)
                events.put_nowait(event["type"])

    async def _wait_for(self, events: asyncio.Queue[str], kind: str, timeout: float) -> int:
        """1 if an event of ``kind`` comes within ``timeout`` seconds (the others are dropped), else 0."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while await events.get() != kind:
                    pass
                return 1
        return 0

    async def _churn(self, client_id: str) -> None:
        """Sockets opened, used once and closed."""
        async with self.gate.action():
            async with websockets.connect(f"{self.ws}/{client_id}", max_size=None) as ws:
                await self._until(ws, ("welcome",))
                await ws.send(json.dumps({"type": "text", "text": "one message and gone"}))
                await self._until(ws, ("reply", "error"))
            self.counts["reconnects"] += 1
        await asyncio.sleep(self.rng.uniform(0.5, 1.5))

    async def _slow_reader(self, client_id: str) -> None:
        """Asks for a long spoken reply and reads nothing for a while, then reads it through; if the server dropped the
        socket meanwhile (1011, its output unread for ``server.send_timeout_s``), the client comes back."""
        try:
            async with websockets.connect(f"{self.ws}/{client_id}", max_size=2**25, max_queue=1) as ws:
                await self._until(ws, ("welcome",))
                await ws.send(json.dumps({"type": "config", "voice_replies": True}))
                async with self.gate.action():
                    await ws.send(json.dumps({"type": "text", "text": f"[reply:{SLOW_REPLY}]"}))
                    await asyncio.sleep(SLOW_READER_NAP_S)
                    await self._until(ws, ("audio_done", "error"), timeout=120)
                self.counts["slow_reads"] += 1
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == 1011:
                self.counts["slow_drops"] += 1
        await asyncio.sleep(self.rng.uniform(1, 3))
