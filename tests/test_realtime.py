"""``WS /v1/realtime`` through the official openai SDK's realtime clients (beta and GA) against a real server: speech in
as base64 PCM16, the transcript, audio deltas and ``response.done`` out, barge-in with truncation, manual commits,
typed items, errors, and the session kept as a conversation."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from openai import AsyncOpenAI

from core.realtime.protocol import RealtimeConfig, for_dialect
from core.realtime.responses import heard_text
from tests.conftest import Served
from tests.fakes.openai_server import FakeOpenAI
from tests.speech import SENTENCES, resample, silence, speak, wer

RATE = 24000
CHUNK_S = 0.04
LONG_REPLY = (
    "Paris is the capital of France. It stands on the river Seine. Many people visit it every year. "
    "The city is known for its museums and its food. Spring is the best time to go there."
)


def speech24k(text: str) -> bytes:
    pcm, rate = speak(text)
    return resample(pcm, rate, RATE)


def client_for(served: Served, key: str = "any-key") -> AsyncOpenAI:
    # The SDK's beta realtime client always says wss:// unless told the socket's own base URL.
    return AsyncOpenAI(base_url=f"{served.url}/v1", websocket_base_url=f"{served.ws_url}/v1", api_key=key,
                       max_retries=0)


async def stream(connection: Any, pcm: bytes, pace: float = 2.0) -> None:
    """Append ``pcm`` in 40 ms chunks, ``pace`` times faster than real time."""
    step = int(RATE * CHUNK_S) * 2
    for start in range(0, len(pcm), step):
        chunk = pcm[start : start + step]
        await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        await asyncio.sleep(CHUNK_S / pace)


async def events_until(connection: Any, stop: set[str], timeout: float = 90) -> list[Any]:
    """Server events (the SDK's models) up to one whose type is in ``stop``."""
    seen: list[Any] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await connection.recv()
            seen.append(event)
            if event.type in stop:
                return seen


def stored(served: Served, client_id: str) -> list[tuple[str, str, str, str | None]]:
    with sqlite3.connect(served.settings.database.db_path) as db:
        return db.execute(
            "SELECT role, content, status, audio_path FROM messages WHERE client_id=? ORDER BY id", (client_id,)
        ).fetchall()


@pytest.fixture
def voice_server(serve, make_settings) -> Served:
    settings = make_settings({"stt": {"engine": "whisper"}, "tts": {"engine": "piper"}})
    return serve(settings)


async def transcribe_deltas(pcm: bytes, whisper_stt: Any) -> str:
    from core.models import AudioClip

    clip = AudioClip(resample(pcm, RATE, 16000), 16000)
    return (await whisper_stt.transcribe(clip, language="en")).text


# -- the protocol, without a server ------------------------------------------------------------------------------


def test_a_ga_session_update_reads_as_the_betas() -> None:
    ga = {
        "type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"],
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": {"model": "whisper-1"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 700}},
                  "output": {"voice": "verse"}},
    }
    config = RealtimeConfig(model="m").update(ga, "ga")
    assert config.instructions == "Be brief." and config.modalities == ("text",) and config.voice == "verse"
    assert config.turn_detection is not None and config.turn_detection["silence_duration_ms"] == 700
    assert config.turn_detection["threshold"] == 0.5  # OpenAI's default, filled in
    assert config.transcription == {"model": "whisper-1"}
    wire = config.to_wire("ga")
    assert wire["audio"]["input"]["turn_detection"]["type"] == "server_vad" and wire["output_modalities"] == ["text"]


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"input_audio_format": "g711_ulaw"}, "session.input_audio_format"),
        ({"turn_detection": {"type": "server_vad", "threshold": 3}}, "turn_detection.threshold"),
        ({"turn_detection": {"type": "magic"}}, "session.turn_detection.type"),
        ({"modalities": ["video"]}, "session.modalities"),
        ({"tools": [{"type": "function", "name": "f"}]}, "session.tools"),
        ({"instructions": 5}, "session.instructions"),
    ],
)
def test_what_a_session_cannot_take_is_named(session: dict[str, Any], param: str) -> None:
    from core.realtime.protocol import RealtimeError

    with pytest.raises(RealtimeError) as caught:
        RealtimeConfig(model="m").update(session, "beta")
    assert caught.value.param == param


def test_ga_clients_get_ga_names() -> None:
    event = {"type": "response.audio.delta", "delta": "AAAA"}
    assert for_dialect(event, "ga")["type"] == "response.output_audio.delta"
    assert for_dialect(event, "beta") == event
    part = for_dialect({"type": "response.content_part.added", "part": {"type": "audio", "transcript": ""}}, "ga")
    assert part["part"]["type"] == "output_audio"
    item = {"id": "i", "role": "assistant", "content": [{"type": "audio", "transcript": "Hi"}]}
    done = for_dialect({"type": "response.done", "response": {"modalities": ["text", "audio"], "output": [item]}}, "ga")
    assert done["response"]["output"][0]["content"][0]["type"] == "output_audio"
    assert done["response"]["output_modalities"] == ["audio"] and "modalities" not in done["response"]


def test_the_heard_part_of_a_reply_is_cut_by_time() -> None:
    sentences = [(0.0, 1000.0, "One two three four."), (1000.0, 2000.0, "Five six seven eight.")]
    assert heard_text(sentences, 2000) == "One two three four. Five six seven eight."
    assert heard_text(sentences, 1500) == "One two three four. Five six"
    assert heard_text(sentences, 999) == "One two three"
    assert heard_text(sentences, 0) == ""


# -- through the SDK -------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_one_spoken_turn_through_the_beta_client(voice_server: Served, whisper_stt: Any) -> None:
    """The SDK's beta realtime client speaks one utterance; it gets the transcript, audio deltas and
    ``response.done``, and the turn is stored as a conversation with its recording."""
    said = SENTENCES[0]
    async with client_for(voice_server).beta.realtime.connect(model="web-bot") as connection:
        created = await connection.recv()
        assert created.type == "session.created"
        conversation = created.session.model_extra["conversation"]  # type: ignore[union-attr]
        await connection.session.update(session={
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
        })
        updated = await events_until(connection, {"session.updated"})
        assert updated[-1].session.turn_detection.silence_duration_ms == 600
        await stream(connection, silence(0.3, RATE) + speech24k(said) + silence(1.5, RATE))
        events = await events_until(connection, {"response.done"})
    kinds = [e.type for e in events]
    order = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
             "input_audio_buffer.committed", "response.created", "response.audio.delta",
             "response.audio_transcript.done", "response.done"]
    for earlier, later in itertools.pairwise(order):
        assert kinds.index(earlier) < kinds.index(later), kinds
    transcript = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert wer(said, transcript.transcript) <= 0.25, transcript.transcript
    done = events[-1]
    assert done.response.status == "completed"
    spoken = next(e for e in events if e.type == "response.audio_transcript.done").transcript
    assert spoken.startswith("You said:")
    audio = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.audio.delta")
    assert len(audio) / 2 / RATE > 1.0
    heard = await transcribe_deltas(audio, whisper_stt)
    assert "you said" in heard.lower(), heard
    rows = stored(voice_server, conversation)
    assert [r[0] for r in rows] == ["user", "assistant"] and rows[0][3] is not None  # the recording is kept
    assert rows[1][1] == spoken


@pytest.mark.slow
async def test_the_ga_client_gets_text_answers_to_typed_items(server: Served) -> None:
    """The GA client (``client.realtime``): a typed item and ``response.create`` with text output get
    ``response.output_text.delta``/``done``; the session's instructions reach the model as its system prompt."""
    async with client_for(server).realtime.connect(model="web-bot") as connection:
        assert (await connection.recv()).type == "session.created"
        await connection.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                                 "instructions": "You are a pirate."})
        await events_until(connection, {"session.updated"})
        await connection.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there"}],
        })
        await connection.response.create()
        events = await events_until(connection, {"response.done"})
    kinds = [e.type for e in events]
    assert "conversation.item.added" in kinds and "response.output_text.delta" in kinds, kinds
    text = next(e for e in events if e.type == "response.output_text.done").text
    assert text.startswith("You said: Hello there")
    assert events[-1].response.status == "completed"


@pytest.mark.slow
async def test_committed_audio_is_answered_on_response_create(voice_server: Served) -> None:
    """Without turn detection the client commits its audio and asks for the response itself."""
    said = SENTENCES[1]
    async with client_for(voice_server).beta.realtime.connect(model="web-bot") as connection:
        created = await connection.recv()
        conversation = created.session.model_extra["conversation"]  # type: ignore[union-attr]
        # A language the speech model does not know is refused, not quietly detected instead.
        await connection.session.update(session={"input_audio_transcription": {"model": "whisper-1", "language": "xx"}})
        error = (await events_until(connection, {"error"}))[-1]
        assert error.error.code == "invalid_value"
        assert error.error.param == "session.input_audio_transcription.language"
        await connection.session.update(session={"voice": "klingon"})  # /v1/audio/speech refuses it too
        error = (await events_until(connection, {"error"}))[-1]
        assert error.error.code == "invalid_value" and error.error.param == "session.voice"
        await connection.session.update(session={"turn_detection": None, "modalities": ["text"],
                                                 "input_audio_transcription": {"model": "whisper-1", "language": "en"}})
        await events_until(connection, {"session.updated"})
        await stream(connection, speech24k(said), pace=20)
        await connection.input_audio_buffer.commit()
        await connection.response.create()
        events = await events_until(connection, {"response.done"})
        kinds = [e.type for e in events]
        assert kinds.index("input_audio_buffer.committed") < kinds.index("response.created"), kinds
        heard = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
        assert wer(said, heard.transcript) <= 0.25
        # An empty commit is refused, and the session goes on.
        await connection.input_audio_buffer.commit()
        error = (await events_until(connection, {"error"}))[-1]
        assert error.error.code == "input_audio_buffer_commit_empty"
    rows = stored(voice_server, conversation)
    assert [r[0] for r in rows] == ["user", "assistant"] and rows[0][3] is not None


@pytest.mark.slow
async def test_speaking_over_the_reply_cancels_it_and_truncate_keeps_what_was_played(
    voice_server: Served, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Barge-in: speech while the reply is spoken ends the response as cancelled (``turn_detected``); the client's
    ``conversation.item.truncate`` cuts the stored reply at what it really played."""
    monkeypatch.setitem(fake_openai.scripted, "tell me everything", LONG_REPLY)
    async with client_for(voice_server).beta.realtime.connect(model="web-bot") as connection:
        created = await connection.recv()
        conversation = created.session.model_extra["conversation"]  # type: ignore[union-attr]
        await connection.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "tell me everything [slow:0.1] [chunks:2]"}],
        })
        await connection.response.create()
        first = await events_until(connection, {"response.audio.delta"})
        item_id = first[-1].item_id
        await stream(connection, speech24k(SENTENCES[2]) + silence(1.2, RATE))
        events = await events_until(connection, {"response.done"})
        assert events[-1].response.status == "cancelled", [e.type for e in events]
        assert events[-1].response.status_details.reason == "turn_detected"
        await connection.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=300)
        truncated = await events_until(connection, {"conversation.item.truncated", "error"})
        assert truncated[-1].type == "conversation.item.truncated", truncated[-1]
        # The user's interruption is a turn of its own, answered.
        await events_until(connection, {"response.done"})
    rows = stored(voice_server, conversation)
    assert rows[1][0] == "assistant" and rows[1][2] == "interrupted"
    assert len(rows[1][1].split()) <= 3, rows[1]  # 0.3 s of speech is a word or two, not the sentences sent


@pytest.mark.slow
async def test_response_cancel_stops_a_reply(server: Served) -> None:
    async with client_for(server).beta.realtime.connect(model="web-bot") as connection:
        await connection.recv()
        await connection.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "count slowly [slow:0.3] [chunks:1]"}],
        })
        await connection.response.create()
        await events_until(connection, {"response.text.delta"})
        await connection.response.create()  # one at a time, as OpenAI's server has it
        refused = (await events_until(connection, {"error"}))[-1]
        assert refused.error.code == "conversation_already_has_active_response"
        await connection.response.cancel()
        done = (await events_until(connection, {"response.done"}))[-1]
        assert done.response.status == "cancelled" and done.response.status_details.reason == "client_cancelled"
        await connection.response.cancel()  # nothing left to cancel
        error = (await events_until(connection, {"error"}))[-1]
        assert error.error.code == "response_cancel_not_active"


@pytest.mark.slow
async def test_a_failing_model_fails_the_response_and_the_session_goes_on(server: Served) -> None:
    async with client_for(server).beta.realtime.connect(model="web-bot") as connection:
        await connection.recv()
        await connection.session.update(session={"modalities": ["text"]})
        rounds = []
        for text in ("break please [status:500]", "and now hello"):
            await connection.conversation.item.create(item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}],
            })
            await connection.response.create()
            rounds.append(await events_until(connection, {"response.done"}))
    failing, working = rounds
    assert failing[-1].response.status == "failed"
    code = failing[-1].response.status_details.error.code
    assert code.startswith("llm-") and code in [e.error.code for e in failing if e.type == "error"]
    assert working[-1].response.status == "completed" and not [e for e in working if e.type == "error"]


async def test_bad_events_are_errors_and_the_session_goes_on(server: Served) -> None:
    async with websockets.connect(f"{server.ws_url}/v1/realtime", additional_headers={
        "Authorization": "Bearer x", "OpenAI-Beta": "realtime=v1"}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        sent = [
            ("not json", "invalid_json"),
            (json.dumps([1]), "invalid_event"),
            (json.dumps({"type": "nope"}), "invalid_event"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}), "invalid_value"),
            (json.dumps({"type": "response.create"}), "conversation_empty"),
            (json.dumps({"type": "session.update", "session": {"voice": 7}}), "invalid_value"),
            (json.dumps({"type": "conversation.item.truncate", "item_id": "item_x", "audio_end_ms": 5}),
             "item_not_found"),
            ("[" * 100_000, "invalid_json"),
        ]
        for frame, code in sent:
            await ws.send(frame)
            event = json.loads(await ws.recv())
            assert event["type"] == "error" and event["error"]["code"] == code, (frame[:40], event)
        await ws.send(json.dumps({"type": "session.update", "event_id": "e1", "session": {"instructions": "Hi"}}))
        assert json.loads(await ws.recv())["type"] == "session.updated"


async def test_stt_off_refuses_audio_clearly(server: Served) -> None:
    async with websockets.connect(f"{server.ws_url}/v1/realtime") as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(960)).decode()}))
        event = json.loads(await ws.recv())
        assert event["error"]["code"] == "stt-unavailable"


async def test_accounts_need_a_valid_token(people) -> None:
    served, token = people.served, people.tokens["alice"]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{served.ws_url}/v1/realtime")
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "auth-required"
    with pytest.raises(websockets.InvalidStatus) as bad:
        await websockets.connect(f"{served.ws_url}/v1/realtime", additional_headers={"Authorization": "Bearer wbt_no"})
    assert bad.value.response.status_code == 401
    assert json.loads(bad.value.response.body)["error"]["code"] == "bad-credentials"
    # A signed-in browser's cookie is not enough: another site's page could otherwise use it.
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{served.ws_url}/v1/realtime", additional_headers=people.cookie("alice"))
    # A browser cannot set headers: the token goes in a subprotocol, as OpenAI's own server takes it.
    protocols = ["realtime", f"openai-insecure-api-key.{token}"]
    async with websockets.connect(f"{served.ws_url}/v1/realtime", subprotocols=protocols) as ws:  # type: ignore[arg-type]
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created" and ws.subprotocol == "realtime"
        conversation = created["session"]["conversation"]
    # The session is one of alice's conversations, and nobody else's.
    async with httpx.AsyncClient(base_url=served.url) as http:
        listed = await http.get("/api/conversations", headers={"Authorization": f"Bearer {token}"})
        assert conversation in [c["client_id"] for c in listed.json()["conversations"]]
        made = await http.post("/api/tokens", json={"name": "bob's"}, headers=people.cookie("bob"))
        bob = made.json()["token"]
    with pytest.raises(websockets.InvalidStatus) as other:
        await websockets.connect(f"{served.ws_url}/v1/realtime?conversation={conversation}",
                                 additional_headers={"Authorization": f"Bearer {bob}"})
    assert other.value.response.status_code == 404
    # alice goes on with it.
    async with websockets.connect(f"{served.ws_url}/v1/realtime?conversation={conversation}",
                                  additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert json.loads(await ws.recv())["session"]["conversation"] == conversation


async def test_another_sites_page_may_not_connect(server: Served) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{server.ws_url}/v1/realtime", origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    # A malformed conversation id is the caller's mistake: OpenAI's invalid_request_error naming it (was server_error).
    with pytest.raises(websockets.InvalidStatus) as bad:
        await websockets.connect(f"{server.ws_url}/v1/realtime?conversation=bad%20id")
    error = json.loads(bad.value.response.body)["error"]
    assert bad.value.response.status_code == 400
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "conversation", "bad-message")
    # Each refusal is logged once, with its cause; uvicorn's sansio protocol added an ERROR line to each.
    log = Path(server.settings.logging.file).read_text()
    assert "realtime handshake refused: 403 bad-origin" in log and "realtime handshake refused: 400" in log
    assert "without completing handshake" not in log
