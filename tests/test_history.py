"""The history store on a real SQLite file: order, paging, clearing, batching, durability."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from core.errors import HistoryError
from core.history import SQLHistoryStore
from core.models import NewMessage


@pytest.fixture
async def store(tmp_path: Path):
    store = SQLHistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    await store.start()
    yield store
    await store.aclose()


async def test_append_and_recent_oldest_first(store: SQLHistoryStore) -> None:
    a = await store.append(NewMessage("c1", "user", "hello"))
    b = await store.append(NewMessage("c1", "assistant", "hi", "text", "ok"))
    await store.append(NewMessage("c2", "user", "other client"))
    recent = await store.recent("c1", 10)
    assert [m.id for m in recent] == [a.id, b.id]
    assert recent[0].created_at.tzinfo is not None
    assert recent[0].to_dict()["created_at"] == a.created_at.isoformat()
    assert await store.count("c1") == 2


async def test_paging_and_status_filter(store: SQLHistoryStore) -> None:
    ids = [
        (await store.append(NewMessage("p", "user", f"m{i}", status="interrupted" if i == 2 else "ok"))).id
        for i in range(5)
    ]
    assert [m.id for m in await store.recent("p", 2)] == ids[3:]
    assert [m.id for m in await store.recent("p", 2, before=ids[3])] == ids[1:3]
    assert [m.content for m in await store.recent("p", 10, statuses=("interrupted",))] == ["m2"]
    assert await store.recent("p", 0) == []


async def test_clear_deletes_only_that_client(store: SQLHistoryStore) -> None:
    for i in range(3):
        await store.append(NewMessage("gone", "user", str(i)))
    await store.append(NewMessage("kept", "user", "stay"))
    assert await store.clear("gone") == 3
    assert await store.recent("gone", 10) == []
    assert await store.count("kept") == 1
    summary = await store.summary("gone")
    assert summary.message_count == 0 and summary.first_activity is None


async def test_concurrent_writes_are_group_committed_in_order(store: SQLHistoryStore) -> None:
    messages = [NewMessage(f"c{i % 10}", "user", f"text {i}") for i in range(1000)]
    stored = await asyncio.gather(*(store.append(m) for m in messages))
    assert [s.content for s in stored] == [m.content for m in messages]
    assert len({s.id for s in stored}) == 1000
    assert [s.id for s in stored] == sorted(s.id for s in stored), "ids follow the order writes were accepted"
    for s in stored[:50]:
        assert (await store.recent(s.client_id, 1, before=s.id + 1))[0].content == s.content


async def test_summary_and_ping(store: SQLHistoryStore) -> None:
    first = await store.append(NewMessage("s", "user", "a"))
    last = await store.append(NewMessage("s", "assistant", "b"))
    summary = await store.summary("s")
    assert summary.message_count == 2
    assert summary.first_activity == first.created_at and summary.last_activity == last.created_at
    assert await store.ping() is True


async def test_durable_across_reopen_and_sqlite_is_tuned(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    store = SQLHistoryStore(f"sqlite+aiosqlite:///{path}")
    await store.start()
    pending = [asyncio.ensure_future(store.append(NewMessage("d", "user", str(i)))) for i in range(20)]
    await asyncio.sleep(0)  # every append is now accepted (queued), none yet committed
    await store.aclose()  # accepted writes finish before the store closes
    assert all(p.done() for p in pending)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM messages WHERE client_id='d'").fetchone()[0] == 20
    again = SQLHistoryStore(f"sqlite+aiosqlite:///{path}")
    await again.start()
    assert [m.content for m in await again.recent("d", 3)] == ["17", "18", "19"]
    await again.aclose()


async def test_unopenable_database_is_a_history_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    store = SQLHistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}")
    with pytest.raises(HistoryError) as err:
        await store.start()
    assert err.value.code == "history-unavailable"


async def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    store = SQLHistoryStore(f"sqlite+aiosqlite:///{tmp_path / 'closed.db'}")
    await store.start()
    await store.aclose()
    with pytest.raises(HistoryError):
        await store.append(NewMessage("x", "user", "late"))
