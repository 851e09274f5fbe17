"""SQLHistoryStore: history in any SQLAlchemy async database, with concurrent writes group-committed.

Every write goes through one queue and one writer task, which commits everything waiting in a single
transaction. Under many clients that turns hundreds of commits into one, so the store is not the limit; with
one client a write costs one commit, as before. The queue also keeps a client's writes in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from alembic.util import CommandError as MigrationError
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from core.errors import HistoryError
from core.history.migrate import upgrade_schema
from core.history.schema import messages
from core.history.sqlite_driver import SQLiteDriver
from core.history.writes import (
    Append,
    Clear,
    Unreachable,
    Update,
    Write,
    apply,
    aware,
    connect_asyncpg,
    fail,
    lost_connection,
    to_stored,
)
from core.models import ClientSummary, Deletion, NewMessage, StoredMessage

logger = logging.getLogger(__name__)


class SQLHistoryStore:
    """History in SQLite (aiosqlite: WAL, busy timeout, foreign keys) or any SQLAlchemy async URL."""

    def __init__(self, url: str, *, batch_max: int = 500) -> None:
        self._url = make_url(url)
        self._batch_max = batch_max
        self._engine: AsyncEngine | None = None
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        # SQLite only: the hot statements on the driver, and the connection reads use (kept for the store's life).
        self._sqlite: SQLiteDriver | None = None
        self._reader: AsyncConnection | None = None

    @property
    def dialect(self) -> str:
        return self._url.get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise HistoryError("history store is not started", code="history-unavailable")
        return self._engine

    async def start(self) -> None:
        """Connect, bring the schema to the newest migration, and start the writer."""
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = self._url.database
            if database and database != ":memory:":
                try:
                    # aiosqlite leaves a stray thread behind when its connect fails, so fail here first.
                    await asyncio.to_thread(_open_sqlite, database)
                except (sqlite3.Error, OSError) as err:
                    raise HistoryError(
                        f"cannot open the history database {database}: {err}", code="history-unavailable"
                    ) from err
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
            if self._url.get_driver_name() == "asyncpg":
                kwargs["connect_args"] = {"async_creator_fn": connect_asyncpg}
        if self.dialect == "sqlite":
            # Reads never open a transaction on SQLite, so a pooled connection needs no rollback on return;
            # skipping it saves a thread round trip per read.
            kwargs["pool_reset_on_return"] = None
        engine = create_async_engine(self._url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as conn:
                revision = await conn.run_sync(upgrade_schema)
        except (SQLAlchemyError, OSError, MigrationError) as err:
            await engine.dispose()
            raise HistoryError(f"cannot open the history database: {err}", code="history-unavailable") from err
        self._engine = engine
        if self.dialect == "sqlite":
            self._sqlite = SQLiteDriver(engine.dialect)
        self._writer = asyncio.create_task(self._write_loop(), name="history-writer")
        logger.info("history store ready (%s, schema %s)", self.dialect, revision)

    async def aclose(self) -> None:
        """Finish every accepted write, then close the connections."""
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None
        await self._drop_reader()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def append(self, message: NewMessage) -> StoredMessage:
        done: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        self._enqueue(Append(message, datetime.now(UTC), done))
        return await asyncio.shield(done)

    async def clear(self, client_id: str) -> Deletion:
        """Delete the client's messages; the recordings they referred to are the caller's to delete."""
        done: asyncio.Future[Deletion] = asyncio.get_running_loop().create_future()
        self._enqueue(Clear(client_id, done))
        return await asyncio.shield(done)

    async def audio_paths(self) -> set[str]:
        """Every recording a stored message refers to (read at start-up, to sweep the ones nothing refers to)."""
        rows = await self._read(select(messages.c.audio_path).where(messages.c.audio_path.is_not(None)).distinct())
        return {row[0] for row in rows}

    async def update(self, message_id: int, content: str, status: str) -> int:
        """Rewrite a stored message (an interrupted reply keeps only what was heard); returns rows changed."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._enqueue(Update(message_id, content, status, done))
        return await asyncio.shield(done)

    async def recent(
        self,
        client_id: str,
        limit: int,
        *,
        before: int | None = None,
        statuses: Iterable[str] | None = None,
    ) -> list[StoredMessage]:
        """The client's last ``limit`` messages (before message ``before``), oldest first."""
        if limit <= 0:
            return []
        if self._sqlite is not None:
            return await self._recent_sqlite(self._sqlite, client_id, limit, before, statuses)
        query = select(messages).where(messages.c.client_id == client_id)
        if before is not None:
            query = query.where(messages.c.id < before)
        if statuses is not None:
            query = query.where(messages.c.status.in_(list(statuses)))
        query = query.order_by(messages.c.id.desc()).limit(limit)
        rows = await self._read(query)
        return [to_stored(row) for row in reversed(rows)]

    async def count(self, client_id: str) -> int:
        rows = await self._read(select(func.count()).select_from(messages).where(messages.c.client_id == client_id))
        return int(rows[0][0])

    async def summary(self, client_id: str) -> ClientSummary:
        query = select(func.count(), func.min(messages.c.created_at), func.max(messages.c.created_at)).where(
            messages.c.client_id == client_id
        )
        count, first, last = (await self._read(query))[0]
        return ClientSummary(int(count), aware(first), aware(last))

    async def ping(self) -> bool:
        try:
            await self._read(select(text("1")))
        except HistoryError:
            return False
        return True

    def _enqueue(self, item: Write) -> None:
        if self._writer is None or self._writer.done():
            raise HistoryError("history store is not running", code="history-unavailable")
        self._queue.put_nowait(item)

    async def _read(self, query: Any) -> Sequence[Any]:
        try:
            async with self.engine.connect() as conn:
                return (await conn.execute(query)).all()
        except (SQLAlchemyError, OSError) as err:
            logger.error("history read failed: %s", err)
            raise HistoryError("the history database cannot be read", code="history-unavailable") from err

    async def _recent_sqlite(
        self, sqlite: SQLiteDriver, client_id: str, limit: int, before: int | None, statuses: Iterable[str] | None
    ) -> list[StoredMessage]:
        try:
            if self._reader is None:
                self._reader = await self.engine.connect()
            driver: aiosqlite.Connection = (await self._reader.get_raw_connection()).driver_connection  # type: ignore[assignment]
            return await sqlite.recent(driver, client_id, limit, before, statuses)
        except (SQLAlchemyError, sqlite3.Error, ValueError) as err:
            # ValueError: aiosqlite's connection is gone. The next read opens a new one.
            logger.error("history read failed: %s", err)
            await self._drop_reader()
            raise HistoryError("the history database cannot be read", code="history-unavailable") from err

    async def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(SQLAlchemyError, sqlite3.Error, ValueError):
                await reader.close()

    async def _write_loop(self) -> None:
        """Commit whatever is waiting in one transaction, on one connection held for the store's life."""
        conn: AsyncConnection | None = None
        stopping = False
        try:
            while not stopping:
                item = await self._queue.get()
                if item is None:
                    break
                batch = [item]
                while len(batch) < self._batch_max and not self._queue.empty():
                    nxt = self._queue.get_nowait()
                    if nxt is None:
                        stopping = True
                        break
                    batch.append(nxt)
                conn = await self._commit(conn, batch)
        finally:
            if conn is not None:
                await conn.close()

    async def _commit(self, conn: AsyncConnection | None, batch: list[Write]) -> AsyncConnection | None:
        """Commit a batch; returns the connection to use next (None after a failure, to reconnect).

        One bad write (a value the database refuses) must not fail the other clients' writes that share its
        transaction: when a batch fails, its writes are retried one by one, and only those that fail alone fail.
        """
        try:
            if conn is None:
                try:
                    conn = await self.engine.connect()
                except _WRITE_ERRORS as err:
                    raise Unreachable(err) from err
            await self._apply(conn, batch)
        except Unreachable as err:
            # The database is down or the link broke while committing (the batch may be stored or not): retrying
            # could store a write twice, so each fails, and its turn says so; nothing was acknowledged.
            await _discard(conn)
            logger.error("history unavailable, %d write(s) failed: %s", len(batch), err.__cause__)
            fail(batch, "the history database cannot be reached", "history-unavailable", err)
            return None
        except _WRITE_ERRORS as err:
            await _discard(conn)
            conn = None
            if len(batch) == 1:
                logger.error("history write failed: %s", err)
                fail(batch, "the message could not be stored", "history-failed", err)
                return None
            logger.warning("history batch of %d writes failed (%s); retrying them one by one", len(batch), err)
            for item in batch:
                conn = await self._commit(conn, [item])
        return conn

    async def _apply(self, conn: AsyncConnection, batch: list[Write]) -> None:
        """Apply and commit ``batch`` in one transaction (rolled back if any write fails), then settle it."""
        if self._sqlite is not None:
            driver: aiosqlite.Connection = (await conn.get_raw_connection()).driver_connection  # type: ignore[assignment]
            try:
                results = await self._sqlite.apply(driver, batch)
                await driver.commit()
            except (sqlite3.Error, ValueError):
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await driver.rollback()
                raise
        else:
            try:
                results = await apply(conn, batch)
                await conn.commit()
            except (SQLAlchemyError, ValueError, OSError) as err:
                if lost_connection(err):
                    raise Unreachable(err) from err
                with contextlib.suppress(SQLAlchemyError):
                    await conn.rollback()
                raise
        for item, result in zip(batch, results, strict=True):
            if not item.done.done():
                item.done.set_result(result)  # type: ignore[arg-type]


# ValueError covers text the driver cannot encode, and aiosqlite's "no active connection".
_WRITE_ERRORS = (SQLAlchemyError, sqlite3.Error, ValueError, OSError)


async def _discard(conn: AsyncConnection | None) -> None:
    """Close a connection after a failed write; the next write opens a fresh one."""
    if conn is not None:
        with contextlib.suppress(SQLAlchemyError, sqlite3.Error, ValueError, OSError):
            await conn.close()


def _open_sqlite(database: str) -> None:
    """Create the SQLite file (and its folder) if needed, proving it can be opened."""
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(database).close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
