"""Schema migrations with Alembic, run on the store's own connection (SQLite and PostgreSQL alike).

The scripts live in ``core/history/migrations``; no ``alembic.ini`` is needed. A database made before
migrations existed (the ``messages`` table without ``alembic_version``) is adopted: stamped as revision 0001,
whose schema it already has, then upgraded. On PostgreSQL an advisory lock lets several instances start at
once: one migrates, the others wait and find nothing to do.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema the store created before migrations existed
# pg_advisory_xact_lock key: any constant shared by every instance ("webbot" in ASCII).
PG_LOCK_KEY = 0x776562626F74


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code; ``connection`` is the one the migrations run on."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the scripts define."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None when it has none)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_schema(connection: Connection) -> str | None:
    """Bring the database to the newest revision inside the caller's transaction; returns the revision."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if "messages" in tables and "alembic_version" not in tables:
        logger.info("adopting an existing history database as revision %s", BASELINE)
        command.stamp(config, BASELINE)
    before = current_revision(connection)
    command.upgrade(config, "head")
    after = current_revision(connection)
    if after != before:
        logger.info("history schema upgraded from %s to %s", before or "nothing", after)
    return after


async def migrate(url: str) -> str | None:
    """Upgrade the database at ``url`` (any SQLAlchemy async URL) to the newest revision."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(upgrade_schema)
    finally:
        await engine.dispose()


async def revision_of(url: str) -> str | None:
    """The revision the database at ``url`` is at."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(current_revision)
    finally:
        await engine.dispose()
