"""Fallback chains (``llm.fallbacks``, ``stt.fallbacks``, ``tts.fallbacks``): the next engine answers when one is
down, the engine used is reported per turn, in ``/api/status`` and in the metrics, and a dead engine is skipped
until it is worth probing again."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from core.config import load_settings
from core.errors import ConfigError
from core.fallback import Breaker
from tests.fakes.openai_server import closed_port
from tests.test_faults import HELLO, SLACK, Service, T, status, timed, upload


@pytest.fixture
def backup() -> Any:
    started = Service().start()
    yield started
    started.stop()


def dead() -> str:
    return f"http://127.0.0.1:{closed_port()}/v1"


def test_fallbacks_are_validated_and_inherit(tmp_path) -> None:
    settings = load_settings(
        environ={
            "WEB_BOT_LLM__ENGINE": "openai",
            "WEB_BOT_LLM__TIMEOUT_S": "7",
            "WEB_BOT_LLM__FALLBACKS": '[{"engine": "local", "max_tokens": 9}, {"base_url": "http://b/v1"}]',
        }
    )
    from core.config import fallback_settings

    local, remote = fallback_settings(settings.llm)
    assert (local.engine, local.max_tokens, local.timeout_s) == ("local", 9, 7.0), "unset keys are the stage's own"
    assert (remote.engine, remote.base_url) == ("openai", "http://b/v1")
    for entry, named in [
        ({"engine": "local", "bogus": 1}, "fallbacks[0].bogus: unknown key"),
        ({"engine": "magic"}, "fallbacks[0].engine"),
        ({"timeout_s": -1}, "fallbacks[0].timeout_s"),
        ({"fallbacks": []}, "fallbacks[0].fallbacks: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=r"llm: " + named.replace("[", r"\[").replace("]", r"\]")):
            load_settings(environ={"WEB_BOT_LLM__FALLBACKS": f"[{_json(entry)}]"})
    with pytest.raises(ConfigError, match=r"stt: fallbacks\[0\].engine: none is no engine"):
        load_settings(environ={"WEB_BOT_STT__FALLBACKS": '[{"engine": "none"}]'})
    with pytest.raises(ConfigError, match=r"tts\.fallbacks"):
        load_settings(environ={"WEB_BOT_TTS__FALLBACKS": "not json"})


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def test_breaker_skips_then_probes_once() -> None:
    now = [0.0]
    breaker = Breaker(10.0, clock=lambda: now[0])
    assert breaker.allows() and breaker.state == "closed"
    breaker.failed(down=False)
    assert breaker.state == "closed", "one request refused is no engine down"
    breaker.failed(down=True)
    assert breaker.state == "open" and not breaker.allows() and breaker.retry_in_s() == 10.0
    now[0] = 10.0
    assert breaker.state == "half-open" and breaker.allows(), "the first request after down_for_s probes"
    assert not breaker.allows(), "and only that one"
    breaker.failed(down=True)
    assert breaker.state == "open" and not breaker.allows()
    now[0] = 20.0
    assert breaker.allows()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allows() and breaker.retry_in_s() is None


async def metrics(served: Any) -> str:
    async with httpx.AsyncClient(base_url=served.url) as http:
        return (await http.get("/metrics")).text


async def test_llm_fails_over_reports_the_engine_and_skips_the_dead_one(
    serve, make_settings, connect, backup: Service
) -> None:
    config = {"llm": {"base_url": dead(), "timeout_s": T, "max_retries": 2, "fallbacks": [{"base_url": backup.url}]}}
    served = serve(make_settings(config))
    client = await connect(served, "failing-over")
    events, elapsed = await timed(client.chat("first"))
    assert events[-1]["type"] == "reply" and events[-1]["engine"] == "openai-2", events[-1]
    assert "first" in events[-1]["text"] and elapsed < T + SLACK
    events, elapsed = await timed(client.chat("second"))
    assert events[-1]["engine"] == "openai-2" and elapsed < SLACK, "the dead engine is skipped, not waited for"
    body = await status(served)
    chain = body["llm"]["chain"]
    assert chain["last_used"] == "openai-2" and body["status"] == "ok"
    first, second = chain["engines"]
    assert (first["name"], first["state"], first["failed"], first["skipped"]) == ("openai-1", "open", 1, 1)
    assert first["last_error"] == "llm-unavailable" and first["retry_in_s"] > 0
    assert (second["name"], second["served"], second["state"]) == ("openai-2", 2, "closed")
    text = await metrics(served)
    assert 'webbot_engine_requests_total{engine="openai-2",outcome="served",stage="llm"} 2.0' in text
    assert 'webbot_engine_requests_total{engine="openai-1",outcome="llm-unavailable",stage="llm"} 1.0' in text
    assert 'webbot_engine_up{engine="openai-1",stage="llm"} 0.0' in text


async def test_a_hung_engine_leaves_time_for_the_next_and_is_probed_again(
    serve, make_settings, connect, backup: Service
) -> None:
    primary = Service().start()
    try:
        primary.fake.fault["chat"] = "[hang]"
        config = {
            "llm": {
                "base_url": primary.url, "timeout_s": T, "max_retries": 2, "down_for_s": 1.0,
                "fallbacks": [{"base_url": backup.url}],
            }
        }
        served = serve(make_settings(config))
        client = await connect(served, "probing")
        events, elapsed = await timed(client.chat("hello"))
        assert events[-1]["engine"] == "openai-2", events[-1]
        assert T / 2 - 0.2 < elapsed < T + SLACK, f"the hung engine had half the time: {elapsed:.1f} s"
        asked = primary.fake.started["chat"]
        events, elapsed = await timed(client.chat("again"))
        assert events[-1]["engine"] == "openai-2" and elapsed < SLACK and primary.fake.started["chat"] == asked
        primary.fake.fault.clear()  # it recovers; after down_for_s, the next turn probes it and it serves again
        time.sleep(1.1)
        events = await client.chat("and now?")
        assert events[-1]["engine"] == "openai-1" and primary.fake.started["chat"] == asked + 1, events[-1]
    finally:
        primary.stop()


async def test_all_down_is_the_last_engines_error_in_time(serve, make_settings, connect) -> None:
    config = {"llm": {"base_url": dead(), "timeout_s": T, "fallbacks": [{"base_url": dead()}]}}
    served = serve(make_settings(config))
    client = await connect(served, "alone")
    events, elapsed = await timed(client.chat("anyone?"))
    assert events[-1]["code"] == "llm-unavailable" and elapsed < T + SLACK, events


@pytest.mark.slow
async def test_llm_falls_back_to_the_embedded_model(serve, make_settings, connect) -> None:
    config = {"llm": {"base_url": dead(), "timeout_s": 30, "fallbacks": [{"engine": "local", "max_tokens": 8}]}}
    served = serve(make_settings(config))
    client = await connect(served, "offline")
    events = await client.chat("Say hi.", timeout=60)
    assert events[-1]["type"] == "reply" and events[-1]["engine"] == "local" and events[-1]["text"], events[-1]
    assert (await status(served))["llm"]["chain"]["last_used"] == "local"


async def test_stt_fails_over(serve, make_settings, connect, backup: Service) -> None:
    config = {"stt": {"engine": "openai", "base_url": dead(), "timeout_s": T, "fallbacks": [{"base_url": backup.url}]}}
    served = serve(make_settings(config))
    client = await connect(served, "heard")
    events = await upload(client)
    assert events[0]["type"] == "transcription" and events[0]["text"] == HELLO, events
    chain = (await status(served))["stt"]["chain"]
    assert chain["last_used"] == "openai-2" and chain["engines"][0]["state"] == "open"
    assert backup.fake.transcriptions_received, "the fallback heard it"


@pytest.mark.slow
async def test_tts_falls_back_to_the_offline_voice(serve, make_settings, connect) -> None:
    config = {
        "tts": {
            "engine": "openai", "base_url": dead(), "timeout_s": T, "voices": {"en": "piper"},
            "fallbacks": [{"engine": "piper"}],
        },
        "voice": {"replies": "always"},
    }
    served = serve(make_settings(config))
    client = await connect(served, "spoken")
    await client.send({"type": "text", "text": "Say something."})
    events = await client.until("audio_done", timeout=60)
    assert any(e["type"] == "audio" for e in events) and not any(e["type"] == "error" for e in events), events
    voice = (await status(served))["tts"]["voices"]["en"]
    assert voice["chain"]["last_used"] == "piper:en" and voice["chain"]["engines"][0]["state"] == "open"
    assert 'webbot_engine_requests_total{engine="piper:en",outcome="served",stage="tts"}' in await metrics(served)
