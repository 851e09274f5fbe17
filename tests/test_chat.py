"""The WebSocket chat contract, against real uvicorn, a real SQLite file and the loopback OpenAI fake."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from urllib.parse import quote

import httpx
import pytest
import websockets

from tests.conftest import Served
from tests.fakes.openai_server import FakeOpenAI


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def stored(served: Served, client_id: str) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(served.settings.database.db_path) as db:
        return db.execute(
            "SELECT role, content, source, status FROM messages WHERE client_id = ? ORDER BY id", (client_id,)
        ).fetchall()


async def test_welcome_then_streamed_reply_that_is_stored(server: Served, connect) -> None:
    client = await connect(server, "alice")
    assert client.welcome["type"] == "welcome" and client.welcome["client_id"] == "alice"
    assert client.welcome["history"] == [] and client.welcome["settings"]["voice_replies"] is False  # no TTS engine
    events = await client.chat("hello there")
    kinds = types(events)
    assert kinds[0] == "user_message" and kinds[-1] == "reply"
    assert kinds.count("reply_delta") >= 2, "the fake streams several chunks; each must arrive as a delta"
    deltas = "".join(e["text"] for e in events if e["type"] == "reply_delta")
    reply = events[-1]
    assert reply["text"] == deltas.strip() == "You said: hello there. (context 2 messages)"
    assert isinstance(reply["message_id"], int)
    assert {"llm_first_token_ms", "llm_total_ms", "total_ms"} <= reply["timings"].keys()
    assert events[0]["text"] == "hello there" and events[0]["source"] == "text"
    assert stored(server, "alice") == [
        ("user", "hello there", "text", "ok"),
        ("assistant", "You said: hello there. (context 2 messages)", "text", "ok"),
    ]


async def test_plain_text_frame_is_a_message(server: Served, connect) -> None:
    client = await connect(server, "plain")
    await client.send("just words")
    events = await client.until("reply")
    assert events[-1]["text"].startswith("You said: just words.")


async def test_multi_turn_memory_sends_earlier_turns(server: Served, connect, fake_openai: FakeOpenAI) -> None:
    client = await connect(server, "memory")
    await client.chat("my name is Ada")
    await client.chat("what is my name?")
    sent = fake_openai.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "my name is Ada"
    assert sent[2]["content"].startswith("You said: my name is Ada")
    assert sent[3]["content"] == "what is my name?"


async def test_history_window_is_limited(serve, make_settings, connect, fake_openai: FakeOpenAI) -> None:
    served = serve(make_settings({"llm": {"history_messages": 2}}))
    client = await connect(served, "window")
    for i in range(3):
        await client.chat(f"turn {i}")
    sent = fake_openai.requests[-1]["messages"]
    assert [m["content"][:13] for m in sent[1:]] == ["turn 1", "You said: tur", "turn 2"]


async def test_two_clients_are_isolated(server: Served, connect, fake_openai: FakeOpenAI) -> None:
    alice = await connect(server, "iso-alice")
    bob = await connect(server, "iso-bob")
    await alice.chat("the password is swordfish")
    events = await bob.chat("what is the password?")
    assert all("swordfish" not in json.dumps(m) for m in fake_openai.requests[-1]["messages"])
    assert "swordfish" not in json.dumps(events)
    with pytest.raises(asyncio.TimeoutError):
        await alice.recv(timeout=0.3)  # alice saw nothing of bob's turn
    bob2 = await connect(server, "iso-bob")
    assert all("swordfish" not in m["content"] for m in bob2.welcome["history"])


async def test_history_survives_restart(serve, make_settings, connect) -> None:
    settings = make_settings()
    first = serve(settings)
    client = await connect(first, "durable")
    await client.chat("remember this")
    await client.close()
    first.stop()
    second = serve(settings)
    again = await connect(second, "durable")
    history = again.welcome["history"]
    assert [(m["role"], m["content"][:13]) for m in history] == [
        ("user", "remember this"),
        ("assistant", "You said: rem"),
    ]
    async with httpx.AsyncClient(base_url=second.url) as http:
        body = (await http.get("/api/history/durable")).json()
    assert body["client_id"] == "durable"
    assert [m["id"] for m in body["messages"]] == [m["id"] for m in history]
    fields = {"id", "role", "content", "source", "status", "created_at", "language", "client_msg_id", "has_recording"}
    assert set(body["messages"][0]) == fields


async def test_history_api_pages_with_limit_and_before(server: Served, connect) -> None:
    client = await connect(server, "pages")
    for i in range(3):
        await client.chat(f"message {i}")
    async with httpx.AsyncClient(base_url=server.url) as http:
        everything = (await http.get("/api/history/pages")).json()["messages"]
        assert len(everything) == 6
        last_two = (await http.get("/api/history/pages", params={"limit": 2})).json()["messages"]
        assert last_two == everything[-2:]
        earlier = (await http.get("/api/history/pages", params={"limit": 2, "before": last_two[0]["id"]})).json()
        assert earlier["messages"] == everything[-4:-2]
        bad = await http.get("/api/history/bad id!")
        assert bad.status_code == 400 and bad.json()["code"] == "bad-client-id"
        assert (await http.get("/api/history/pages", params={"limit": 0})).status_code == 422


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad-json"),
        (json.dumps({"type": "dance"}), "unknown-type"),
        (json.dumps({"type": "text"}), "bad-message"),
        (json.dumps({"type": "text", "text": "   "}), "empty-message"),
        ("x" * 4001, "message-too-long"),
        (json.dumps({"type": "text", "text": 5}), "bad-message"),
        (json.dumps({"type": "text", "text": "hi", "client_msg_id": "<b>x</b>"}), "bad-message"),
        (json.dumps({"type": "text", "text": "hi", "client_msg_id": "x" * 65}), "bad-message"),
        (json.dumps({"text": "no type"}), "unknown-type"),
        (b"\x00\x01binary", "stt-unavailable"),  # speech-to-text is off in these servers
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(server: Served, connect, frame, code) -> None:
    client = await connect(server, "malformed")
    await client.send(frame)
    event = await client.recv()
    assert event["type"] == "error" and event["code"] == code and event["message"]
    events = await client.chat("still there?")
    assert events[-1]["type"] == "reply"
    assert stored(server, "malformed") == [
        ("user", "still there?", "text", "ok"),
        ("assistant", "You said: still there?. (context 2 messages)", "text", "ok"),
    ]


@pytest.mark.parametrize("client_id", ["", "has space", "x" * 65, "semi;colon", "ünï"])
async def test_invalid_client_id_is_closed_with_1008(server: Served, client_id: str) -> None:
    url = f"{server.ws_url}/ws/{quote(client_id)}"
    try:
        async with websockets.connect(url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 1008
    except websockets.InvalidStatus as err:  # the empty id matches no route at all
        assert not client_id and err.response.status_code in (403, 404)


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("[status:500]", "llm-unavailable"),
        ("[status:429]", "llm-rate-limited"),
        ("[status:401]", "llm-auth"),
        ("[status:400]", "llm-failed"),
        ("[hang]", "llm-timeout"),
    ],
)
async def test_llm_failure_is_an_error_event_and_stores_no_reply(
    serve, make_settings, connect, directive: str, code: str
) -> None:
    served = serve(make_settings({"llm": {"timeout_s": 1}}))
    client = await connect(served, "failing")
    events = await client.chat(f"break {directive}")
    assert types(events) == ["user_message", "error"]
    assert events[-1]["code"] == code
    assert stored(served, "failing") == [("user", f"break {directive}", "text", "ok")]
    events = await client.chat("and now?")
    assert events[-1]["type"] == "reply"


async def test_llm_unreachable_is_unavailable(serve, make_settings, connect) -> None:
    served = serve(make_settings({"llm": {"base_url": "http://127.0.0.1:9/v1"}}))
    client = await connect(served, "nobody-home")
    events = await client.chat("hello?")
    assert events[-1] == {
        "type": "error", "code": "llm-unavailable", "message": events[-1]["message"], "turn_id": events[0]["turn_id"]
    }
    async with httpx.AsyncClient(base_url=served.url) as http:
        status = (await http.get("/api/status")).json()
    assert status["llm_available"] is False and status["status"] == "degraded"


async def test_retries_rate_limits_with_backoff(serve, make_settings, connect, fake_openai: FakeOpenAI) -> None:
    served = serve(make_settings({"llm": {"max_retries": 2}}))
    client = await connect(served, "retry")
    before = len(fake_openai.requests)
    events = await client.chat("[status:429]", timeout=30)
    assert events[-1]["code"] == "llm-rate-limited"
    assert len(fake_openai.requests) - before == 3


async def test_two_tabs_of_one_client_stay_in_sync(server: Served, connect) -> None:
    tab1 = await connect(server, "tabs")
    tab2 = await connect(server, "tabs")
    events1 = await tab1.chat("from tab one")
    events2 = await tab2.until("reply")
    assert types(events1) == types(events2)
    assert events2[0] == events1[0] and events2[0]["type"] == "user_message"
    await tab1.close()
    events = await tab2.chat("tab two carries on")
    assert events[-1]["type"] == "reply"
    tab3 = await connect(server, "tabs")
    assert len(tab3.welcome["history"]) == 4


async def test_a_slow_reply_does_not_delay_another_client(server: Served, connect) -> None:
    slow = await connect(server, "slowpoke")
    fast = await connect(server, "speedy")
    await slow.send({"type": "text", "text": "take your time [slow:0.4]"})
    await slow.until("reply_delta")  # the slow reply is under way
    start = asyncio.get_running_loop().time()
    events = await fast.chat("quick one")
    fast_done = asyncio.get_running_loop().time() - start
    assert events[-1]["type"] == "reply"
    rest = await slow.until("reply")
    slow_done = asyncio.get_running_loop().time() - start
    assert fast_done < slow_done, "the fast client's reply must not wait for the slow one"
    assert rest[-1]["text"].startswith("You said: take your time")


async def test_turns_of_one_client_run_in_order(server: Served, connect) -> None:
    client = await connect(server, "ordered")
    await client.send({"type": "text", "text": "first [slow:0.1]"})
    await client.send({"type": "text", "text": "second"})
    first = await client.until("reply")
    second = await client.until("reply")
    assert first[-1]["text"].startswith("You said: first")
    assert second[-1]["text"].startswith("You said: second")
    assert [row[1][:16] for row in stored(server, "ordered")] == [
        "first [slow:0.1]",
        "You said: first ",
        "second",
        "You said: second",
    ]


async def test_ping_pong(server: Served, connect) -> None:
    client = await connect(server, "pinger")
    await client.send({"type": "ping"})
    assert await client.recv() == {"type": "pong"}


async def test_every_event_of_a_turn_carries_its_id_and_the_client_s_message_id(server: Served, connect) -> None:
    """Two identical messages are two turns: each user_message echoes the id it was sent with, every event of a
    turn carries that turn's id, and the history keeps the client's ids (a page matches by id, never by text)."""
    client = await connect(server, "twice")
    await client.send({"type": "text", "text": "yes", "client_msg_id": "m-1"})
    first = await client.until("reply")
    await client.send({"type": "text", "text": "yes", "client_msg_id": "m-2"})
    second = await client.until("reply")
    for events, msg_id in ((first, "m-1"), (second, "m-2")):
        assert events[0]["type"] == "user_message" and events[0]["client_msg_id"] == msg_id
        assert len({e["turn_id"] for e in events}) == 1 and len(events[0]["turn_id"]) == 12
    assert first[0]["turn_id"] != second[0]["turn_id"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        history = (await http.get("/api/history/twice")).json()["messages"]
    assert [(m["role"], m["client_msg_id"]) for m in history] == [
        ("user", "m-1"), ("assistant", None), ("user", "m-2"), ("assistant", None)
    ]
    await client.send("no id")  # a plain text frame has none
    assert (await client.until("reply"))[0]["client_msg_id"] is None
