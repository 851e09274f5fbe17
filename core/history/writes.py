"""The writes a store's writer commits in batches, and how any SQLAlchemy connection applies them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import HistoryError
from core.history.schema import messages
from core.models import Deletion, NewMessage, StoredMessage


@dataclass(slots=True)
class Append:
    message: NewMessage
    created_at: datetime
    done: asyncio.Future[StoredMessage]

    def stored(self, ident: int) -> StoredMessage:
        m = self.message
        return StoredMessage(
            id=ident,
            client_id=m.client_id,
            role=m.role,
            content=m.content,
            source=m.source,
            status=m.status,
            created_at=self.created_at,
            audio_path=m.audio_path,
            language=m.language,
            language_probability=m.language_probability,
            client_msg_id=m.client_msg_id,
        )


@dataclass(slots=True)
class Clear:
    client_id: str
    done: asyncio.Future[Deletion]


@dataclass(slots=True)
class Update:
    message_id: int
    content: str
    status: str
    done: asyncio.Future[int]


Write = Append | Clear | Update


class Unreachable(Exception):
    """The database could not be reached, or the connection broke mid-write: the cause is ``__cause__``."""


def lost_connection(err: BaseException) -> bool:
    """Whether a failed statement or commit lost its connection (the server went down or restarted), rather than
    the database refusing the write: then a commit's outcome is unknown."""
    if isinstance(err, OSError):
        return True
    return isinstance(err, DBAPIError) and (err.connection_invalidated or isinstance(err, InterfaceError))


async def connect_asyncpg(*args: Any, **kwargs: Any) -> Any:
    """asyncpg's connect, with a refused, reset or timed-out connection (a server down or restarting) raised as
    asyncpg's own ConnectionFailureError: SQLAlchemy turns that into a DBAPIError like every other database failure,
    where asyncpg's OSError would reach its callers raw."""
    import asyncpg

    try:
        return await asyncpg.connect(*args, **kwargs)
    except OSError as err:
        raise asyncpg.exceptions.ConnectionFailureError(f"cannot connect to PostgreSQL: {err}") from err


def fail(batch: list[Write], message: str, code: str, cause: BaseException) -> None:
    """Settle every write of ``batch`` not yet settled with a HistoryError (``code``), caused by ``cause``."""
    for item in batch:
        if not item.done.done():
            failure = HistoryError(message, code=code)
            failure.__cause__ = cause
            item.done.set_exception(failure)


def runs(batch: list[Write]) -> list[list[Append] | Clear | Update]:
    """The batch in order, with consecutive appends grouped, so each group is one multi-row insert."""
    grouped: list[list[Append] | Clear | Update] = []
    for item in batch:
        if isinstance(item, Append):
            if grouped and isinstance(grouped[-1], list):
                grouped[-1].append(item)
            else:
                grouped.append([item])
        else:
            grouped.append(item)
    return grouped


async def apply(conn: AsyncConnection, batch: list[Write]) -> list[object]:
    """Run a batch on a SQLAlchemy connection, in order; the caller commits."""
    results: list[object] = []
    for run in runs(batch):
        if isinstance(run, list):
            results.extend(await _insert(conn, run))
        elif isinstance(run, Clear):
            deleted = await conn.execute(
                delete(messages).where(messages.c.client_id == run.client_id).returning(messages.c.audio_path)
            )
            results.append(deletion(row[0] for row in deleted.all()))
        else:
            changed = await conn.execute(
                update(messages).where(messages.c.id == run.message_id).values(content=run.content, status=run.status)
            )
            results.append(changed.rowcount)
    return results


async def _insert(conn: AsyncConnection, run: list[Append]) -> list[StoredMessage]:
    rows = [
        {
            "client_id": a.message.client_id,
            "role": a.message.role,
            "content": a.message.content,
            "source": a.message.source,
            "status": a.message.status,
            "audio_path": a.message.audio_path,
            "created_at": a.created_at,
            "language": a.message.language,
            "language_probability": a.message.language_probability,
            "client_msg_id": a.message.client_msg_id,
        }
        for a in run
    ]
    result = await conn.execute(insert(messages).returning(messages.c.id, sort_by_parameter_order=True), rows)
    return [a.stored(int(row[0])) for row, a in zip(result.all(), run, strict=True)]


def deletion(audio_paths: Iterable[str | None]) -> Deletion:
    """The Deletion of rows whose ``audio_path`` values these are (one per row)."""
    paths = list(audio_paths)
    return Deletion(len(paths), tuple(p for p in paths if p))


def aware(value: datetime | None) -> datetime | None:
    """A naive timestamp read back from a database that drops the zone is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def to_stored(row: Any) -> StoredMessage:
    created = aware(row.created_at)
    assert created is not None
    return StoredMessage(
        id=int(row.id),
        client_id=row.client_id,
        role=row.role,
        content=row.content,
        source=row.source,
        status=row.status,
        created_at=created,
        audio_path=row.audio_path,
        language=row.language,
        language_probability=row.language_probability,
        client_msg_id=row.client_msg_id,
    )
