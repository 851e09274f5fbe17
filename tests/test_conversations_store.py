"""Conversations on SQLite and PostgreSQL alike, through the real migrations: owners, listing order, titles,
deletion, export → import round trip, retention."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from core.auth.accounts import AccountStore
from core.conversations import Conversations
from core.history import SQLHistoryStore
from core.history.schema import messages
from core.models import Deletion, NewMessage
from tests import test_history

# A new SQLite file, or the session's PostgreSQL database without tables: test_history's fixture.
history_url = test_history.history_url


class Published(list[tuple[str, dict[str, object]]]):
    async def __call__(self, client_id: str, event: dict[str, object]) -> None:
        self.append((client_id, event))


@pytest.fixture
async def parts(
    history_url: str, tmp_path: Path
) -> AsyncIterator[tuple[SQLHistoryStore, Conversations, AccountStore, Published]]:
    store = SQLHistoryStore(history_url)
    await store.start()
    published = Published()
    forgotten: list[str | None] = []

    async def forget(paths: list[str | None]) -> int:
        forgotten.extend(paths)
        return len(paths)

    conversations = Conversations(
        store.engine, clear=store.clear, forget=forget, publish=published, recordings_dir=tmp_path
    )
    yield store, conversations, AccountStore(store.engine), published
    await conversations.aclose()
    await store.aclose()


async def test_owners_order_titles_and_deletion(
    parts: tuple[SQLHistoryStore, Conversations, AccountStore, Published],
) -> None:
    store, conversations, accounts, published = parts
    ann = await accounts.create_user("ann", None, "user")
    ben = await accounts.create_user("ben", None, "user")
    first = await conversations.create(ann.id)
    second = await conversations.create(ann.id, "  Named\nat birth ")
    await conversations.create(ben.id)
    await store.append(NewMessage(first.client_id, "user", "Hello there, how are you doing today my friend?"))
    listed = await conversations.of_user(ann.id)
    assert [c.client_id for c in listed] == [first.client_id, second.client_id]  # activity first, then the newest
    assert listed[1].title == "Named at birth" and listed[0].last_message_at is not None
    assert len(await conversations.of_user(None)) == 3
    conversations.after_reply(first.client_id, "Hello there, how are you doing today my friend?", "Fine")
    await next(iter(conversations._tasks))
    assert (await conversations.get(first.client_id)).title == "Hello there, how are you doing today my…"  # type: ignore[union-attr]
    renamed = await conversations.rename(first.client_id, "Greetings")
    assert renamed.title == "Greetings" and published[-1][1] == {
        "type": "conversation",
        "client_id": first.client_id,
        "title": "Greetings",
    }
    assert await conversations.delete(first.client_id) == 1
    assert await conversations.get(first.client_id) is None
    assert await store.recent(first.client_id, 10) == []
    assert published[-1][1] == {"type": "conversation_deleted", "client_id": first.client_id}


async def test_export_then_import_is_the_same_conversation(
    parts: tuple[SQLHistoryStore, Conversations, AccountStore, Published],
) -> None:
    store, conversations, accounts, _ = parts
    ann = await accounts.create_user("ann", None, "user")
    original = await conversations.create(ann.id, "Trip")
    await store.append(
        NewMessage(
            original.client_id,
            "user",
            "Где купить билеты?",
            "voice",
            language="ru",
            language_probability=0.93,
            client_msg_id="m-1",
        )
    )
    await store.append(NewMessage(original.client_id, "assistant", "На вокзале.", status="interrupted"))
    text, _ = await conversations.export(original.client_id, "json")
    document = json.loads(text)
    copy = await conversations.import_json(ann.id, document)
    again = json.loads((await conversations.export(copy.client_id, "json"))[0])
    fields = ("role", "content", "source", "status", "created_at", "language", "language_probability", "client_msg_id")
    assert [[m[k] for k in fields] for m in again["messages"]] == [[m[k] for k in fields] for m in document["messages"]]
    assert again["title"] == "Trip" and copy.client_id != original.client_id
    assert [c.client_id for c in await conversations.of_user(ann.id)][0] in (copy.client_id, original.client_id)


async def test_retention_deletes_only_old_messages(
    parts: tuple[SQLHistoryStore, Conversations, AccountStore, Published],
) -> None:
    store, conversations, _, _ = parts
    await store.append(NewMessage("keep", "user", "new"))
    old = await store.append(NewMessage("drop", "user", "old", audio_path="/nowhere/a.wav"))
    async with store.engine.begin() as conn:
        await conn.execute(
            update(messages).where(messages.c.id == old.id).values(created_at=datetime.now(UTC) - timedelta(days=9))
        )
    assert await conversations.prune(0) == 0
    assert await conversations.prune(8) == 1
    assert [m.content for m in await store.recent("keep", 5)] == ["new"] and await store.recent("drop", 5) == []
    assert isinstance(await store.clear("drop"), Deletion)
