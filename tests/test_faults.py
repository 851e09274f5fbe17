"""Faults in the engines and services, through a real server: each gives a stable code within its timeout, other
clients go on, and the next request works again without a restart.

The engines' service is a loopback fake of our own per test (``tests.fakes.openai_server``), told to refuse, hang,
answer late, cut or stall mid-body, or send garbage. A timeout bound is checked from above with slack for a busy
machine; the slack is well under what the engines' retries used to add (each retry waited a whole timeout again:
a hung model with ``llm.timeout_s`` = 2 answered after 7 s).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.config import Settings
from tests.conftest import Client, Served
from tests.fakes.openai_server import FakeOpenAI, ThreadedServer, closed_port, tone

T = 2.0  # every stage's timeout_s in these tests
SLACK = 2.0  # scheduling on a busy machine; a retry alone would add T
HELLO = "hello from the fake transcriber"


class Service:
    """A fake OpenAI-compatible service on a port of its own, which a test can stop (refusing) and start again."""

    def __init__(self) -> None:
        self.fake = FakeOpenAI()
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._server: ThreadedServer | None = None

    def start(self) -> Service:
        self._server = ThreadedServer(self.fake.app(), port=self.port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def service() -> Iterator[Service]:
    started = Service().start()
    yield started
    started.stop()


def engines(service: Service, *stages: str) -> dict[str, Any]:
    """Settings for ``stages`` (llm, stt, tts) served by ``service``, with timeout T and the engines' retries."""
    common = {"base_url": service.url, "timeout_s": T}
    config: dict[str, Any] = {"llm": {**common, "max_retries": 2}}
    if "stt" in stages:
        config["stt"] = {**common, "engine": "openai"}
    if "tts" in stages:
        config["tts"] = {**common, "engine": "openai", "voices": {"en": "piper"}}
        config["voice"] = {"replies": "always"}
    return config


async def timed(action: Any) -> tuple[list[dict[str, Any]], float]:
    start = time.perf_counter()
    events = await action
    return events, time.perf_counter() - start


async def upload(client: Client) -> list[dict[str, Any]]:
    await client.send(tone(1.0, "wav", rate=16000)[0])
    return await client.until_any(("reply", "error"), timeout=30)


async def status(served: Served) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.url) as http:
        body: dict[str, Any] = (await http.get("/api/status")).json()
        return body


# directive, the code, whether it comes only at the timeout, whether text was shown before it
LLM_FAULTS = [
    ("[hang]", "llm-timeout", True, False),
    ("[first:8]", "llm-timeout", True, False),
    ("[stall:1]", "llm-timeout", True, True),
    ("[cut:1]", "llm-unavailable", False, True),
    ("[garbage]", "llm-failed", False, False),
    ("[html]", "llm-failed", False, False),
]


@pytest.mark.parametrize(("directive", "code", "at_timeout", "partial"), LLM_FAULTS)
async def test_llm_fault_gives_its_code_in_time_and_spares_others(
    serve: Callable[[Settings], Served], make_settings, connect, service: Service,
    directive: str, code: str, at_timeout: bool, partial: bool,
) -> None:
    served = serve(make_settings(engines(service)))
    victim = await connect(served, "victim")
    bystander = await connect(served, "bystander")
    await victim.send({"type": "text", "text": f"tell me a long story please {directive}"})
    events, elapsed = await timed(victim.until_any(("reply", "error"), timeout=30))
    if at_timeout:
        # Meanwhile another client is answered at once: one stuck request holds no one else.
        other, other_s = await timed(bystander.chat("are you there?"))
        assert other[-1]["type"] == "reply" and other_s < SLACK, (other, other_s)
    assert events[-1]["type"] == "error" and events[-1]["code"] == code, events
    assert elapsed < (T if at_timeout else 0) + SLACK, f"{code} after {elapsed:.1f} s"
    if at_timeout:
        assert elapsed > T - 0.2, f"{code} before the timeout: {elapsed:.1f} s"
    assert any(e["type"] == "reply_delta" for e in events) == partial, events
    stored = served.stored("victim")
    assert stored[0][0] == "user" and [row[2] for row in stored[1:]] == (["error"] if partial else [])

    # Recovery without a restart: the same socket, the same service, the next message.
    again = await victim.chat("and now?")
    assert again[-1]["type"] == "reply" and "and now?" in again[-1]["text"], again


async def test_llm_slow_but_within_the_timeout_is_a_reply(
    serve: Callable[[Settings], Served], make_settings, connect, service: Service
) -> None:
    served = serve(make_settings(engines(service)))
    client = await connect(served, "patient")
    # Each gap under the timeout, the whole reply well over it: the timeout bounds waits, not replies.
    events, elapsed = await timed(client.chat("one two three four five six seven eight nine [slow:0.6] [chunks:1]"))
    assert events[-1]["type"] == "reply" and elapsed > T, (events[-1], elapsed)
    assert events[-1]["engine"] == "openai"


async def test_llm_refusing_then_back(serve, make_settings, connect, service: Service) -> None:
    served = serve(make_settings(engines(service)))
    client = await connect(served, "knocking")
    service.stop()
    events, elapsed = await timed(client.chat("anyone home?"))
    assert events[-1]["code"] == "llm-unavailable" and elapsed < T + SLACK, (events[-1], elapsed)
    assert (await status(served))["status"] == "degraded"
    service.start()
    again = await client.chat("back again?")
    assert again[-1]["type"] == "reply", again
    assert (await status(served))["status"] == "ok"


# the service's fault, the code, whether it comes only at the timeout
STT_FAULTS = [
    ("refuse", "stt-unavailable", False),
    ("[hang]", "stt-unavailable", True),
    ("[first:8]", "stt-unavailable", True),
    ("[stall:1]", "stt-unavailable", True),
    ("[cut:1]", "stt-unavailable", False),
    ("[garbage]", "stt-failed", False),
    ("[html]", "stt-failed", False),
]


@pytest.mark.parametrize(("fault", "code", "at_timeout"), STT_FAULTS)
async def test_stt_fault_gives_its_code_in_time(
    serve, make_settings, connect, service: Service, fault: str, code: str, at_timeout: bool
) -> None:
    served = serve(make_settings(engines(service, "stt")))
    client = await connect(served, "speaker")
    if fault == "refuse":
        service.stop()
    else:
        service.fake.fault["transcriptions"] = fault
    events, elapsed = await timed(upload(client))
    assert events[-1]["type"] == "error" and events[-1]["code"] == code, events
    assert elapsed < (T if at_timeout else 0) + SLACK, f"{code} after {elapsed:.1f} s"
    if at_timeout:
        assert elapsed > T - 0.2
    # Recovery: the service answers again, and the next upload is heard and answered.
    if fault == "refuse":
        service.start()
    service.fake.fault.clear()
    again = await upload(client)
    assert again[0]["type"] == "transcription" and again[0]["text"] == HELLO and again[-1]["type"] == "reply", again


# the service's fault, the code, whether it comes only at the timeout
TTS_FAULTS = [
    ("refuse", "tts-unavailable", False),
    ("[hang]", "tts-unavailable", True),
    ("[first:8]", "tts-unavailable", True),
    ("[stall:1]", "tts-unavailable", True),
    ("[cut:1]", "tts-unavailable", False),
    ("[garbage]", "tts-failed", False),
    ("[html]", "tts-failed", False),
]


@pytest.mark.parametrize(("fault", "code", "at_timeout"), TTS_FAULTS)
async def test_tts_fault_gives_its_code_in_time_and_the_text_still(
    serve, make_settings, connect, service: Service, fault: str, code: str, at_timeout: bool
) -> None:
    config = engines(service, "tts")
    if fault == "refuse":  # the model stays up; only speech is refused
        config["tts"]["base_url"] = f"http://127.0.0.1:{closed_port()}/v1"
    served = serve(make_settings(config))
    client = await connect(served, "listener")
    service.fake.fault["speech"] = "" if fault == "refuse" else fault
    start = time.perf_counter()
    await client.send({"type": "text", "text": "Say something nice."})
    events = await client.until("reply", timeout=30)
    assert events[-1]["text"], "the text reply arrives whatever the voice does"
    errors = [e for e in events if e["type"] == "error"]  # the speech may fail before the text is complete
    error = errors[0] if errors else (await client.until("error", timeout=30))[-1]
    elapsed = time.perf_counter() - start
    assert error["code"] == code, error
    assert elapsed < (T if at_timeout else 0) + SLACK, f"{code} after {elapsed:.1f} s"
    if fault != "refuse":
        await client.until("audio_done", timeout=30)  # the failed reply's speech ends
        service.fake.fault.clear()
        await client.send({"type": "text", "text": "Say it again."})
        done = await client.until("audio_done", timeout=30)
        assert any(e["type"] == "audio" for e in done) and not any(e["type"] == "error" for e in done), done


async def test_a_down_engine_wastes_no_time_of_other_turns(
    serve, make_settings, connect, service: Service
) -> None:
    """Many clients at once against a hung model: each gets its error at the timeout, together, not one after
    the other."""
    served = serve(make_settings(engines(service)))
    clients = [await connect(served, f"crowd-{n}") for n in range(8)]
    start = time.perf_counter()
    results = await asyncio.gather(*(c.chat("[hang]", timeout=30) for c in clients))
    elapsed = time.perf_counter() - start
    assert all(r[-1]["code"] == "llm-timeout" for r in results), results
    assert elapsed < T + SLACK, f"8 hung turns took {elapsed:.1f} s"


# -- Redis flapping -------------------------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_flapping_keeps_local_clients_and_reconnects_each_time(
    serve, make_settings, connect, private_redis, redis_prefix: str
) -> None:
    """Redis stops and starts three times: the instance serves its own tabs throughout, says so in
    ``/api/status``, and each time Redis is back, events reach other instances again."""
    from core.bus import RedisBus
    from core.hub import Hub
    from tests.test_redis import RecordingSink, eventually, subscribers

    private_redis.start()
    served = serve(make_settings({"redis": {"url": private_redis.url, "prefix": redis_prefix}}))
    tab, other_tab = await connect(served, "flaps"), await connect(served, "flaps")
    elsewhere = Hub(RedisBus(private_redis.url, instance_id="elsewhere", prefix=redis_prefix))
    sink = RecordingSink()
    elsewhere.start()
    elsewhere.attach("flaps", sink)
    channel = f"{redis_prefix}:client:flaps"

    async def redis_connected(wanted: bool) -> bool:
        body = await status(served)
        return body["redis"]["connected"] == wanted and (body["status"] == "ok") == wanted

    try:
        for flap in range(3):
            private_redis.stop()
            await eventually(lambda: redis_connected(False), what=f"outage {flap} in /api/status")
            during = await tab.chat(f"while down {flap}")
            assert during[-1]["type"] == "reply", during
            assert (await other_tab.until("reply"))[-1]["text"] == during[-1]["text"], "local tabs still get it"
            private_redis.start()
            await eventually(lambda: redis_connected(True), timeout=20, what=f"reconnection {flap}")

            async def both_subscribed() -> bool:
                return await subscribers(private_redis.url, channel) == 2

            await eventually(both_subscribed, timeout=20, what=f"both instances subscribed again ({flap})")
            after = await tab.chat(f"back up {flap}")
            assert (await other_tab.until("reply"))[-1]["text"] == after[-1]["text"]

            async def reached_elsewhere(text: str = after[-1]["text"]) -> bool:
                return any(e.get("text") == text for e, _ in sink.events)

            await eventually(reached_elsewhere, what=f"the reply on the other instance ({flap})")
    finally:
        await elsewhere.aclose()
    stored = served.stored("flaps")
    assert len(stored) == 12 and all(row[2] == "ok" for row in stored), "every turn kept, up or down"


# -- A full disk ----------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[str, int], Any]]:
    """Mounts a tmpfs of ``kib`` KiB at ``tmp_path / name``; skipped where mounting is not permitted."""
    import subprocess

    mounted: list[Path] = []

    def mount(name: str, kib: int) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)], capture_output=True, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Fill ``folder``'s file system to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


async def test_full_audio_disk_keeps_the_words_and_recovers(
    serve, make_settings, connect, service: Service, small_disk
) -> None:
    audio = small_disk("audio", 256)
    config = engines(service, "stt")
    config["audio"] = {"dir": str(audio)}
    served = serve(make_settings(config))
    client = await connect(served, "recorded")
    filler = fill(audio)
    events = await upload(client)
    assert events[0]["text"] == HELLO and events[-1]["type"] == "reply", "the words are heard and answered"
    stored = served.stored("recorded")
    assert [row[:2] for row in stored] == [("user", HELLO), ("assistant", events[-1]["text"])]
    log = Path(served.settings.logging.file).read_text(encoding="utf-8")
    assert "No space left on device" in log, "the lost recording is logged"
    filler.unlink()
    events = await upload(client)
    assert events[-1]["type"] == "reply"
    assert [p.name for p in audio.iterdir()], "with space again, recordings are kept again"


async def test_full_database_disk_fails_the_turn_keeps_the_socket_and_recovers(
    serve, make_settings, connect, small_disk
) -> None:
    import sqlite3

    disk = small_disk("db", 2048)
    served = serve(make_settings({"database": {"db_path": str(disk / "history.db")}}))
    client = await connect(served, "full")
    before = await client.chat("kept before the disk filled")
    assert before[-1]["type"] == "reply"
    filler = fill(disk)
    codes = set()
    for n in range(3):  # more than one write: the WAL may have had a page free
        events = await client.chat(f"while full {n} " + "x" * 2000)
        codes.add(events[-1].get("code", events[-1]["type"]))
    assert codes & {"history-failed", "history-unavailable"}, codes
    assert codes <= {"history-failed", "history-unavailable", "reply"}, codes
    filler.unlink()
    after = await client.chat("after space was freed")
    assert after[-1]["type"] == "reply", "the same socket works again"
    texts = [row[1] for row in served.stored("full")]
    assert texts[:2] == ["kept before the disk filled", before[-1]["text"]], "nothing accepted before is lost"
    assert texts[-2:] == ["after space was freed", after[-1]["text"]]
    with sqlite3.connect(disk / "history.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
