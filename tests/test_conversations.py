"""Many conversations per user (issue 14), through a real server: create, list, title, rename, delete (messages,
recordings, tabs on every instance told), export and import, recordings with range requests, retention."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import create_async_engine

from core.config import Settings
from core.conversations import Conversations, first_words_title
from core.recordings import Recordings
from tests.accounts import People
from tests.conftest import Client, Served
from tests.fakes.openai_server import FakeOpenAI
from tests.speech import speak, wav


def stt_settings(fake: FakeOpenAI) -> dict[str, Any]:
    return {"stt": {"engine": "openai", "base_url": f"{fake.url}/v1", "api_key": "test"}}  # type: ignore[attr-defined]


async def chat(
    served: Served, client_id: str, text: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    async with websockets.connect(f"{served.ws_url}/ws/{client_id}", additional_headers=headers or {}) as ws:
        client = Client(ws)
        assert (await client.recv())["type"] == "welcome"
        return await client.chat(text)


def test_a_title_is_the_first_words() -> None:
    assert first_words_title("What is the weather like in Paris today, and tomorrow too?") == (
        "What is the weather like in Paris today…"
    )
    assert first_words_title("  Привет!  ") == "Привет!"
    assert first_words_title("a" * 300) == "a" * 60 + "…"
    assert first_words_title("   ") is None


async def test_conversations_are_listed_newest_first_titled_and_renamed(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = (await http.post("/api/conversations", json={})).json()
        assert made["title"] is None and len(made["client_id"]) >= 16
        await chat(server, made["client_id"], "Tell me about the Moon landing")
        await chat(server, "second-chat", "Recipes with apples please")
        listed = (await http.get("/api/conversations")).json()["conversations"]
        assert [c["client_id"] for c in listed][:2] == ["second-chat", made["client_id"]]
        for _ in range(100):  # titles are made just after the reply is stored
            titles = {
                c["client_id"]: c["title"] for c in (await http.get("/api/conversations")).json()["conversations"]
            }
            if titles["second-chat"] and titles[made["client_id"]]:
                break
            await asyncio.sleep(0.05)
        assert titles[made["client_id"]] == "Tell me about the Moon landing"
        assert titles["second-chat"] == "Recipes with apples please"
        renamed = await http.patch(f"/api/conversations/{made['client_id']}", json={"title": "  Apollo\n11 "})
        assert renamed.status_code == 200 and renamed.json()["title"] == "Apollo 11"
        assert (await http.patch("/api/conversations/nope", json={"title": "x"})).status_code == 404
        assert (await http.patch(f"/api/conversations/{made['client_id']}", json={"title": "  "})).status_code == 400
        paged = (await http.get("/api/conversations", params={"limit": 1, "offset": 1})).json()
        assert [c["client_id"] for c in paged["conversations"]] == [made["client_id"]] and paged["next_offset"] == 2


async def test_the_model_titles_a_conversation_when_it_is_quick(
    serve: Callable[[Settings], Served],
    make_settings: Callable[..., Settings],
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(fake_openai.by_system, "Write a title", '"Moon landing facts."')
    served = serve(make_settings({"history": {"titles": "model"}}))
    async with websockets.connect(f"{served.ws_url}/ws/moon") as ws:
        client = Client(ws)
        await client.recv()
        await client.chat("Tell me about the Moon landing in 1969 please")
        titled = await client.until("conversation")  # the first words are stored at once, without an event
        assert titled[-1] == {"type": "conversation", "client_id": "moon", "title": "Moon landing facts"}


async def title_of(served: Served, client_id: str) -> str | None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        listed = (await http.get("/api/conversations", params={"limit": 500})).json()["conversations"]
    return next(c["title"] for c in listed if c["client_id"] == client_id)


async def test_the_title_is_there_as_soon_as_the_first_message_is_shown(server: Served, connect: Any) -> None:
    client = await connect(server, "at-once")
    await client.send({"type": "text", "text": "Tell me about volcanoes [slow:0.5]"})
    await client.until("user_message")
    assert await title_of(server, "at-once") == "Tell me about volcanoes [slow:0.5]"  # read once, no waiting
    rest = await client.until("reply")  # the reply took seconds more
    assert rest[0]["type"] == "reply_delta" and rest[-1]["text"].startswith("You said: Tell me about volcanoes")


async def test_a_first_reply_cut_by_a_second_message_leaves_the_first_words_as_title(
    server: Served, connect: Any
) -> None:
    client = await connect(server, "cut-first")
    await client.send({"type": "text", "text": "Tell me about volcanoes [slow:0.5]"})
    await client.until("reply_delta")  # the first reply is being written
    events = await client.chat("Recipes with apples please")
    assert "interrupted" in [e["type"] for e in events] and events[-1]["type"] == "reply"
    assert [row[2] for row in server.stored("cut-first")] == ["ok", "interrupted", "ok", "ok"]
    await asyncio.sleep(0.2)  # a title made after the second reply (in the background) would be there by now
    assert await title_of(server, "cut-first") == "Tell me about volcanoes [slow:0.5]"


async def test_a_first_reply_that_fails_leaves_the_first_words_as_title(server: Served, connect: Any) -> None:
    client = await connect(server, "failed-first")
    events = await client.chat("Why is the sky blue [status:500]")
    assert events[-1]["type"] == "error"
    assert await title_of(server, "failed-first") == "Why is the sky blue [status:500]"


async def test_an_upload_whose_reply_fails_is_titled_from_its_words(
    serve: Callable[[Settings], Served],
    make_settings: Callable[..., Settings],
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = serve(make_settings(stt_settings(fake_openai)))
    monkeypatch.setitem(fake_openai.fault, "chat", "[status:500]")
    pcm, rate = speak("Hello there")
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        sent = await http.post(
            "/upload_audio", files={"file": ("hi.wav", wav(pcm, rate), "audio/wav")}, data={"client_id": "spoken"}
        )
    assert sent.status_code != 200
    assert [row[0] for row in served.stored("spoken")] == ["user"]
    assert await title_of(served, "spoken") == "hello from the fake transcriber"


async def test_a_title_the_user_gave_is_never_replaced(
    serve: Callable[[Settings], Served],
    make_settings: Callable[..., Settings],
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    connect: Any,
) -> None:
    monkeypatch.setitem(fake_openai.by_system, "Write a title", "A model title")

    def titles_asked() -> int:
        return sum("Write a title" in r["messages"][0]["content"] for r in fake_openai.requests)

    served = serve(make_settings({"history": {"titles": "model"}}))
    async with httpx.AsyncClient(base_url=served.url) as http:
        named = (await http.post("/api/conversations", json={"title": "Plans"})).json()["client_id"]
        client = await connect(served, named)
        assert (await client.chat("Tell me about volcanoes"))[-1]["type"] == "reply"
        # Renamed while its first reply is written: the model's title, asked after it, must not replace the name.
        asked = titles_asked()
        renamed = await connect(served, "renamed")
        await renamed.send({"type": "text", "text": "Recipes with apples please [slow:0.3]"})
        await renamed.until("user_message")
        assert await title_of(served, "renamed") == "Recipes with apples please [slow:0.3]"
        assert (await http.patch("/api/conversations/renamed", json={"title": "Cooking"})).status_code == 200
        assert (await renamed.until("reply"))[-1]["type"] == "reply"
    for _ in range(100):  # the model is asked for the renamed one's title, then its answer is dropped
        if titles_asked() > asked:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert await title_of(served, named) == "Plans"
    assert await title_of(served, "renamed") == "Cooking"


async def test_deleting_a_conversation_leaves_nothing_and_tells_every_tab(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    served = serve(make_settings(stt_settings(fake_openai)))
    pcm, rate = speak("Hello there")
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        sent = await http.post(
            "/upload_audio", files={"file": ("hi.wav", wav(pcm, rate), "audio/wav")}, data={"client_id": "doomed"}
        )
        assert sent.status_code == 200, sent.text
        recordings = [p for p in (tmp_path / "audio").rglob("*") if p.is_file()]
        assert len(recordings) == 1
        async with websockets.connect(f"{served.ws_url}/ws/doomed") as ws:
            tab = Client(ws)
            welcome = await tab.recv()
            assert [m["has_recording"] for m in welcome["history"]] == [True, False]
            assert (await http.delete("/api/conversations/doomed")).status_code == 204
            assert (await tab.until("conversation_deleted"))[-1]["client_id"] == "doomed"
    assert not [p for p in (tmp_path / "audio").rglob("*") if p.is_file()]
    assert served.stored("doomed") == []
    with sqlite3.connect(served.settings.database.db_path) as db:
        assert db.execute("SELECT count(*) FROM conversations WHERE client_id='doomed'").fetchone() == (0,)


async def test_export_and_import_round_trip(server: Served) -> None:
    await chat(server, "source", "First question *with* <markup>")
    await chat(server, "source", "Второй вопрос")
    async with httpx.AsyncClient(base_url=server.url) as http:
        exported = await http.get("/api/conversations/source/export", params={"format": "json"})
        assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
        document = exported.json()
        assert document["format"] == "web-bot.conversation" and len(document["messages"]) == 4
        markdown = (await http.get("/api/conversations/source/export", params={"format": "md"})).text
        assert "\\*with\\* \\<markup\\>" in markdown and "Второй вопрос" in markdown
        text = (await http.get("/api/conversations/source/export", params={"format": "txt"})).text
        assert "user: First question *with* <markup>" in text
        imported = await http.post("/api/conversations/import", json=document)
        assert imported.status_code == 201, imported.text
        copy_id = imported.json()["client_id"]
        assert copy_id != "source"
        again = (await http.get(f"/api/conversations/{copy_id}/export")).json()
        keys = ("role", "content", "source", "status", "created_at", "language", "client_msg_id")
        assert [[m[k] for k in keys] for m in again["messages"]] == [[m[k] for k in keys] for m in document["messages"]]
        assert [m["id"] for m in again["messages"]] != [m["id"] for m in document["messages"]]
        bad = await http.post("/api/conversations/import", json={"format": "something else", "messages": []})
        assert bad.status_code == 400 and bad.json()["code"] == "bad-request"
        assert (await http.post("/api/conversations/import", content=b"{not json")).status_code == 400


async def test_export_everything_as_a_zip_with_the_recordings(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings], fake_openai: FakeOpenAI
) -> None:
    served = serve(make_settings(stt_settings(fake_openai)))
    pcm, rate = speak("Hello there")
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        await http.post(
            "/upload_audio", files={"file": ("hi.wav", wav(pcm, rate), "audio/wav")}, data={"client_id": "a1"}
        )
        await chat(served, "b2", "typed")
        archive = zipfile.ZipFile(io.BytesIO((await http.get("/api/export", params={"recordings": True})).content))
        names = archive.namelist()
        assert {"a1.json", "a1.md", "b2.json", "b2.md"} <= set(names)
        audio = [n for n in names if n.startswith("recordings/")]
        assert len(audio) == 1 and archive.read(audio[0])[:4] == b"RIFF"
        document = json.loads(archive.read("a1.json"))
        assert document["messages"][0]["recording"] == audio[0].removeprefix("recordings/")
        bare = zipfile.ZipFile(io.BytesIO((await http.get("/api/export")).content))
        assert not [n for n in bare.namelist() if n.startswith("recordings/")]


async def test_recordings_play_back_with_ranges_for_their_owner_only(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings], fake_openai: FakeOpenAI
) -> None:
    served = serve(make_settings({"auth": {"mode": "password"}, **stt_settings(fake_openai)}))
    people = await People(served).start()
    pcm, rate = speak("Hello there")
    audio = wav(pcm, rate)
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        sent = await http.post(
            "/upload_audio",
            files={"file": ("hi.wav", audio, "audio/wav")},
            data={"client_id": "alice-voice"},
            headers=people.cookie("alice"),
        )
        assert sent.status_code == 200, sent.text
        message_id = sent.json()["message_id"] - 1  # the user's message comes just before the reply
        whole = await http.get(f"/api/recordings/{message_id}", headers=people.cookie("alice"))
        assert whole.status_code == 200 and whole.content == audio and whole.headers["accept-ranges"] == "bytes"
        part = await http.get(
            f"/api/recordings/{message_id}", headers={**people.cookie("alice"), "Range": "bytes=4-11"}
        )
        assert part.status_code == 206 and part.content == audio[4:12]
        for who in ("bob", "root"):
            assert (await http.get(f"/api/recordings/{message_id}", headers=people.cookie(who))).status_code == 404
        assert (await http.get(f"/api/recordings/{message_id}")).status_code == 401
        assert (await http.get("/api/recordings/999999", headers=people.cookie("alice"))).status_code == 404


async def test_each_user_sees_only_their_conversations(people: People) -> None:
    served = people.served
    await chat(served, "bobs-own", "hello", people.cookie("bob"))
    async with httpx.AsyncClient(base_url=served.url) as http:
        made = await http.post("/api/conversations", json={"title": "Plans"}, headers=people.cookie("alice"))
        alice_id = made.json()["client_id"]
        alice = [
            c["client_id"]
            for c in (await http.get("/api/conversations", headers=people.cookie("alice"))).json()["conversations"]
        ]
        bob = [
            c["client_id"]
            for c in (await http.get("/api/conversations", headers=people.cookie("bob"))).json()["conversations"]
        ]
        assert alice_id in alice and "alice-chat" in alice and "bobs-own" not in alice
        assert bob == ["bobs-own"]
        assert (await http.get("/api/conversations")).status_code == 401
        for method, path in (
            ("PATCH", f"/api/conversations/{alice_id}"),
            ("DELETE", f"/api/conversations/{alice_id}"),
            ("GET", f"/api/conversations/{alice_id}/export"),
        ):
            body = {"title": "mine now"} if method == "PATCH" else None
            answer = await http.request(method, path, json=body, headers=people.cookie("bob"))
            assert answer.status_code == 404, (method, path, answer.text)
        # a conversation made on the list is the user's before anything is said in it
        async with websockets.connect(f"{served.ws_url}/ws/{alice_id}", additional_headers=people.cookie("bob")) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4404


async def test_messages_past_keep_days_are_deleted_with_their_recordings(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    served = serve(make_settings({**stt_settings(fake_openai), "history": {"keep_days": 7}}))
    pcm, rate = speak("Hello there")
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        await http.post(
            "/upload_audio", files={"file": ("hi.wav", wav(pcm, rate), "audio/wav")}, data={"client_id": "old"}
        )
    await chat(served, "new", "recent words")
    old = (datetime.now(UTC) - timedelta(days=8)).strftime("%Y-%m-%d %H:%M:%S.000000")
    with sqlite3.connect(served.settings.database.db_path) as db:
        db.execute("UPDATE messages SET created_at=? WHERE client_id='old'", (old,))
    recordings = Recordings(served.settings.audio.dir, keep_days=30)

    async def forget(paths: list[str | None]) -> int:
        return recordings.delete(paths)

    engine = create_async_engine(served.settings.database_url)
    try:
        conversations = Conversations(
            engine,
            clear=None,
            forget=forget,
            publish=None,  # type: ignore[arg-type]
            recordings_dir=recordings.dir,
        )
        assert await conversations.prune(7) == 2
    finally:
        await engine.dispose()
    assert served.stored("old") == [] and len(served.stored("new")) == 2
    assert not [p for p in (tmp_path / "audio").rglob("*") if p.is_file()]


async def test_search_finds_ones_own_words_in_any_form(people: People) -> None:
    served = people.served
    await chat(served, "alice-chat", "Какая погода будет завтра в Москве?", people.cookie("alice"))
    await chat(served, "bob-notes", "Running shoes for the marathon", people.cookie("bob"))
    async with httpx.AsyncClient(base_url=served.url) as http:
        found = (await http.get("/api/search", params={"q": "погоду"}, headers=people.cookie("alice"))).json()
        assert {r["client_id"] for r in found["results"]} == {"alice-chat"}  # her words, and the echo of them
        asked = next(r for r in found["results"] if r["role"] == "user")
        assert [part["text"] for part in asked["snippet"] if part["matched"]] == ["погода"]
        assert (await http.get("/api/search", params={"q": "погода"}, headers=people.cookie("bob"))).json()[
            "results"
        ] == []
        runs = (await http.get("/api/search", params={"q": "run"}, headers=people.cookie("bob"))).json()["results"]
        assert {r["client_id"] for r in runs} == {"bob-notes"}
        assert (await http.get("/api/search", params={"q": "run"})).status_code == 401
        assert (
            await http.get("/api/search", params={"q": '" AND ( *'}, headers=people.cookie("bob"))
        ).status_code == 200


async def test_deleting_stops_the_reply_being_written_and_a_tab_left_open_starts_afresh(server: Served) -> None:
    async with websockets.connect(f"{server.ws_url}/ws/busy") as ws:
        tab = Client(ws)
        await tab.recv()
        await tab.send({"type": "text", "text": "[slow:1] [chunks:1] one two three four five six seven eight nine"})
        await tab.until("reply_delta")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            began = asyncio.get_running_loop().time()
            assert (await http.delete("/api/conversations/busy")).status_code == 204
            assert asyncio.get_running_loop().time() - began < 5  # not the ~9 s the reply would have taken
            assert (await tab.until("conversation_deleted"))[-1]["client_id"] == "busy"
            assert server.stored("busy") == []
            # the tab stayed open and goes on: what it says next is in a conversation that exists again
            await tab.chat("after the delete")
            listed = [c["client_id"] for c in (await http.get("/api/conversations")).json()["conversations"]]
            assert "busy" in listed and [r[1] for r in server.stored("busy")][:1] == ["after the delete"]


async def test_an_import_cannot_carry_system_messages_or_odd_fields(server: Served) -> None:
    base = {"format": "web-bot.conversation", "version": 1}
    message = {"role": "user", "content": "hi", "created_at": "2024-01-01T00:00:00+14:00"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        for bad in (
            {**base, "messages": [{**message, "role": "system"}]},
            {**base, "messages": [{**message, "client_msg_id": "<script>"}]},
            {**base, "messages": [{**message, "language": "xx\u0000"}]},
            {**base, "version": True, "messages": [message]},
        ):
            answer = await http.post("/api/conversations/import", json=bad)
            assert answer.status_code == 400 and answer.json()["code"] == "bad-request", bad
        deep = b"[" * 100_000 + b"]" * 100_000
        assert (await http.post("/api/conversations/import", content=deep)).status_code == 400
        future = {**message, "created_at": "9999-01-01T00:00:00Z"}
        made = await http.post("/api/conversations/import", json={**base, "messages": [message, future]})
        exported = (await http.get(f"/api/conversations/{made.json()['client_id']}/export")).json()
        first, second = (m["created_at"] for m in exported["messages"])
        assert first == "2023-12-31T10:00:00+00:00"  # converted to UTC, not relabelled
        assert second < "9999"  # a time still to come is now


async def test_a_typed_title_is_kept_as_typed_but_without_control_characters(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = (await http.post("/api/conversations", json={"title": '"C#" and *nix'})).json()
        assert made["title"] == '"C#" and *nix'
        renamed = await http.patch(
            f"/api/conversations/{made['client_id']}", json={"title": "a\x1b[31mred\u202e\u200b"}
        )
        assert renamed.json()["title"] == "a[31mred"
