"""The history store on a real SQLite file and a real PostgreSQL database: order, paging, clearing, batching,
durability, and the schema's migrations."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Index, MetaData, Table, insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from core.errors import HistoryError
from core.history import SQLHistoryStore
from core.history.__main__ import main as migrate_cli
from core.history.migrate import current_revision, head_revision
from core.history.schema import messages, metadata
from core.history.search import include_name
from core.models import NewMessage


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or the session's PostgreSQL database without tables."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(history_url: str):
    store = SQLHistoryStore(history_url)
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
    assert (await store.clear("gone")).messages == 3
    assert await store.recent("gone", 10) == []
    assert await store.count("kept") == 1
    summary = await store.summary("gone")
    assert summary.message_count == 0 and summary.first_activity is None


async def test_clear_returns_the_recordings_of_the_deleted_messages(store: SQLHistoryStore) -> None:
    await store.append(NewMessage("rec", "user", "spoken", "voice", audio_path="/audio/a.wav"))
    await store.append(NewMessage("rec", "assistant", "reply"))
    await store.append(NewMessage("rec", "user", "uploaded", "upload", audio_path="/audio/b.mp3"))
    await store.append(NewMessage("other", "user", "theirs", "voice", audio_path="/audio/c.wav"))
    assert await store.audio_paths() == {"/audio/a.wav", "/audio/b.mp3", "/audio/c.wav"}
    deletion = await store.clear("rec")
    assert deletion.messages == 3 and sorted(deletion.audio_paths) == ["/audio/a.wav", "/audio/b.mp3"]
    assert await store.audio_paths() == {"/audio/c.wav"}


POISON = "refused by the database"


async def refuse_poison(store: SQLHistoryStore) -> None:
    """Make the database itself refuse one value, as a CHECK constraint would (SQLite cannot add one to an
    existing table, so a trigger raises the same constraint error there)."""
    async with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            await conn.execute(text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages WHEN NEW.content = :poison "
                "BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: poison'); END".replace(":poison", f"'{POISON}'")
            ))
        else:
            await conn.execute(text(
                f"ALTER TABLE messages ADD CONSTRAINT refuse_poison CHECK (content <> '{POISON}') NOT VALID"
            ))


async def drop_poison_rule(store: SQLHistoryStore) -> None:
    async with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            await conn.execute(text("DROP TRIGGER refuse_poison"))
        else:
            await conn.execute(text("ALTER TABLE messages DROP CONSTRAINT refuse_poison"))


@pytest.mark.parametrize("value", [POISON, "lone half \ud83d", "nul \x00"], ids=["check", "surrogate", "nul"])
async def test_one_refused_write_fails_alone_in_a_batch_of_fifty(store: SQLHistoryStore, value: str) -> None:
    """A value the database refuses (a CHECK constraint, text the driver cannot encode, NUL for PostgreSQL)
    fails only its own write; the 50 other clients' writes committed in the same batch are all stored."""
    if value == POISON:
        await refuse_poison(store)
    try:
        writes = [store.append(NewMessage(f"client-{i}", "user", f"message {i}")) for i in range(25)]
        writes.append(store.append(NewMessage("poisoned", "assistant", value)))
        writes += [store.append(NewMessage(f"client-{i}", "assistant", f"reply {i}")) for i in range(25, 50)]
        results = await asyncio.gather(*writes, return_exceptions=True)
    finally:
        if value == POISON:
            await drop_poison_rule(store)
    failures = [r for r in results if isinstance(r, BaseException)]
    if value.startswith("nul") and store.dialect == "sqlite":
        assert failures == []  # SQLite keeps NUL; the engines and clients never send it (core.unicode)
        return
    assert len(failures) == 1 and isinstance(results[25], HistoryError) and results[25].code == "history-failed"
    for i in [*range(25), *range(26, 51)]:
        n = i if i < 25 else i - 1
        assert (await store.recent(f"client-{n}", 5))[-1].content == results[i].content  # type: ignore[union-attr]
    assert await store.recent("poisoned", 5) == []
    # The writer carries on: the next batch is stored as usual.
    assert (await store.append(NewMessage("after", "user", "still working"))).id > 0


async def test_concurrent_writes_are_group_committed_in_order(store: SQLHistoryStore) -> None:
    messages = [NewMessage(f"c{i % 10}", "user", f"text {i}") for i in range(1000)]
    stored = await asyncio.gather(*(store.append(m) for m in messages))
    assert [s.content for s in stored] == [m.content for m in messages]
    assert len({s.id for s in stored}) == 1000
    assert [s.id for s in stored] == sorted(s.id for s in stored), "ids follow the order writes were accepted"
    for s in stored[:50]:
        assert (await store.recent(s.client_id, 1, before=s.id + 1))[0].content == s.content


async def test_a_mixed_batch_commits_in_order(history_url: str) -> None:
    """Appends, an update and a clear queued together land in one batch, applied in the order accepted; more
    appends than one SQLite statement takes are split and keep their order."""
    store = SQLHistoryStore(history_url, batch_max=2000)
    await store.start()
    try:
        first = await store.append(NewMessage("mix", "assistant", "long reply"))
        writes = [
            store.update(first.id, "long", "interrupted"),
            store.append(NewMessage("mix", "user", "before clear")),
            store.clear("mix"),
            *(store.append(NewMessage(f"many{i % 3}", "user", f"n{i}")) for i in range(1200)),
            store.update(first.id, "gone already", "ok"),
            store.append(NewMessage("mix", "user", "after clear")),
        ]
        results = await asyncio.gather(*writes)
        assert results[0] == 1 and results[2].messages == 2 and results[-2] == 0
        many = results[3:-2]
        assert [m.content for m in many] == [f"n{i}" for i in range(1200)]
        assert [m.id for m in many] == sorted(m.id for m in many) and len({m.id for m in many}) == 1200
        assert [m.content for m in await store.recent("mix", 10)] == ["after clear"]
        assert [m.id for m in await store.recent("many1", 400)] == [m.id for m in many if m.client_id == "many1"]
        assert await store.recent("mix", 10, statuses=()) == []
    finally:
        await store.aclose()


async def test_stored_rows_read_the_same_through_sqlalchemy(history_url: str) -> None:
    """The store's own statements and plain SQLAlchemy agree on every column, timestamps included."""
    store = SQLHistoryStore(history_url)
    await store.start()
    try:
        written = await store.append(NewMessage("same", "user", "héllo ✓", "upload", "ok", "audio/x.wav"))
        async with store.engine.connect() as conn:
            row = (await conn.execute(messages.select().where(messages.c.id == written.id))).one()
            await conn.execute(
                insert(messages).values(
                    client_id="same", role="assistant", content="by sqlalchemy", created_at=datetime.now(UTC)
                )
            )
            await conn.commit()
        stamp = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        assert (row.client_id, row.role, row.content, row.source, row.status, row.audio_path, stamp) == (
            "same", "user", "héllo ✓", "upload", "ok", "audio/x.wav", written.created_at
        )
        read = await store.recent("same", 5)
        assert read[0] == written
        assert read[1].content == "by sqlalchemy" and read[1].source == "text" and read[1].created_at.tzinfo
    finally:
        await store.aclose()


async def test_a_failed_write_is_reported_and_the_store_recovers(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    store = SQLHistoryStore(f"sqlite+aiosqlite:///{path}")
    await store.start()
    try:
        await store.append(NewMessage("r", "user", "before"))
        with sqlite3.connect(path) as db:
            db.execute("ALTER TABLE messages RENAME TO hidden")
        with pytest.raises(HistoryError) as err:
            await store.append(NewMessage("r", "user", "lost"))
        assert err.value.code == "history-failed"
        with pytest.raises(HistoryError) as err:
            await store.recent("r", 5)
        assert err.value.code == "history-unavailable"
        with sqlite3.connect(path) as db:
            db.execute("ALTER TABLE hidden RENAME TO messages")
        await store.append(NewMessage("r", "user", "after"))
        assert [m.content for m in await store.recent("r", 5)] == ["before", "after"]
    finally:
        await store.aclose()


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


def _schema_differences(conn: Connection) -> list[object]:
    opts = {"compare_type": True, "compare_server_default": True, "include_name": include_name}
    context = MigrationContext.configure(conn, opts=opts)
    return list(compare_metadata(context, metadata))


async def test_migrations_build_exactly_the_declared_schema(store: SQLHistoryStore) -> None:
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_schema_differences) == []
        assert await conn.run_sync(current_revision) == head_revision()
        if store.dialect == "sqlite":
            made = await conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'messages'"))
            assert "AUTOINCREMENT" in made
            index = text("SELECT count(*) FROM sqlite_master WHERE name = 'ix_messages_client_id_id'")
            assert await conn.scalar(index) == 1
        if store.dialect == "postgresql":
            query = "SELECT data_type FROM information_schema.columns WHERE table_name = :t AND column_name = :c"
            kind = await conn.scalar(text(query), {"t": "messages", "c": "id"})
            assert kind == "bigint"


LATER_COLUMNS = ("language", "language_probability", "client_msg_id")  # added by revisions 0003 and 0004


def baseline_metadata() -> MetaData:
    """The messages table as the store created it before migrations existed (revision 0001)."""
    baseline = MetaData()
    Table(
        "messages",
        baseline,
        *(column._copy() for column in messages.columns if column.name not in LATER_COLUMNS),
        Index("ix_messages_client_id_id", "client_id", "id"),
    )
    return baseline


async def test_a_database_made_before_migrations_is_adopted(history_url: str) -> None:
    engine = create_async_engine(history_url)
    async with engine.begin() as conn:  # what the store did before migrations: create_all of revision 0001's table
        await conn.run_sync(baseline_metadata().create_all)
        await conn.execute(text(
            "INSERT INTO messages (client_id, role, content, source, status, created_at) "
            "VALUES ('old', 'user', 'kept', 'text', 'ok', CURRENT_TIMESTAMP)"
        ))
    await engine.dispose()
    store = SQLHistoryStore(history_url)
    await store.start()
    try:
        assert [m.content for m in await store.recent("old", 5)] == ["kept"]
        await store.append(NewMessage("old", "assistant", "still here"))
        assert await store.count("old") == 2
        async with store.engine.connect() as conn:
            assert await conn.run_sync(current_revision) == head_revision()
    finally:
        await store.aclose()


@pytest.mark.postgres
async def test_instances_starting_together_migrate_once(postgres_url: str) -> None:
    stores = [SQLHistoryStore(postgres_url) for _ in range(3)]
    await asyncio.gather(*(s.start() for s in stores))  # an advisory lock serialises the migrations
    try:
        await stores[0].append(NewMessage("together", "user", "one"))
        assert await stores[2].count("together") == 1
    finally:
        await asyncio.gather(*(s.aclose() for s in stores))


def test_migrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"database": {"db_path": str(tmp_path / "cli.db")}}))
    assert migrate_cli(["current", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("empty")
    assert migrate_cli(["upgrade", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"{head_revision()} ")
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head_revision()
    assert migrate_cli(["sql", "--config", str(config)]) == 0
    assert "CREATE TABLE messages" in capsys.readouterr().out
