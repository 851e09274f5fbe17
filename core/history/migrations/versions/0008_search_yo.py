"""Search: ё is indexed as е (and Ё as Е), so "желтый" finds "Жёлтый дом" and "жёлтый" finds "желтый дом".

Russian writers use е for ё freely; the query is folded the same way (core/history/search.py). Only the index is
folded: ``messages.content`` keeps the text as written. The index of revision 0007 is rebuilt with the folded text,
so the messages already stored are found too.

SQLite: unicode61 folds diacritics of Latin letters only. The FTS5 table's external content becomes the view
``messages_fts_source`` (``messages`` with ``content`` folded), so ``rebuild`` and ``integrity-check`` read what the
triggers index. A later migration that rebuilds ``messages`` on SQLite (batch mode copies the table and renames the
copy) must drop this view first, or the rename fails ("error in view messages_fts_source"), and create it and the
triggers again after. PostgreSQL: the GIN index is on ``to_tsvector('simple', translate(content, 'ёЁ', 'еЕ'))``.
"""

from __future__ import annotations

from collections.abc import Callable

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def folded(value: str) -> str:
    """SQLite: ``value`` with ё as е and Ё as Е."""
    return f"replace(replace({value}, 'ё', 'е'), 'Ё', 'Е')"


def fts5_objects(content: str, indexed: Callable[[str], str]) -> tuple[str, ...]:
    """The FTS5 table over ``content``, filled, and the triggers that index ``indexed`` of a row's content."""
    new, old = indexed("new.content"), indexed("old.content")
    return (
        # As revision 0007 made it, but for its content table.
        f"CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='{content}', content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 2', columnsize=0)",
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        f"INSERT INTO messages_fts (rowid, content) VALUES (new.id, {new}); END",
        # A delete must give the values that were indexed, or the index is corrupted: the folded ones.
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        f"INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, {old}); END",
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
        f"INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO messages_fts (rowid, content) VALUES (new.id, {new}); END",
        "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
    )


SQLITE_DROP = (
    "DROP TRIGGER messages_fts_update",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_insert",
    "DROP TABLE messages_fts",
)
SQLITE_UPGRADE = (
    *SQLITE_DROP,
    f"CREATE VIEW messages_fts_source AS SELECT id, {folded('content')} AS content FROM messages",
    *fts5_objects("messages_fts_source", folded),
)
SQLITE_DOWNGRADE = (
    *SQLITE_DROP,
    "DROP VIEW messages_fts_source",
    *fts5_objects("messages", str),
)
# The expression core/history/search.py queries with, word for word, or the planner cannot use the index.
POSTGRESQL_UPGRADE = (
    "DROP INDEX ix_messages_content_search",
    "CREATE INDEX ix_messages_content_search ON messages "
    "USING gin (to_tsvector('simple'::regconfig, translate(content, 'ёЁ', 'еЕ')))",
)
POSTGRESQL_DOWNGRADE = (
    "DROP INDEX ix_messages_content_search",
    "CREATE INDEX ix_messages_content_search ON messages USING gin (to_tsvector('simple'::regconfig, content))",
)


def upgrade() -> None:
    for statement in _statements(SQLITE_UPGRADE, POSTGRESQL_UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(SQLITE_DOWNGRADE, POSTGRESQL_DOWNGRADE):
        op.execute(statement)


def _statements(sqlite: tuple[str, ...], postgresql: tuple[str, ...]) -> tuple[str, ...]:
    # The context's dialect, not the bind's: offline (``python -m core.history sql``) there is no connection.
    name = op.get_context().dialect.name
    if name == "sqlite":
        return sqlite
    if name == "postgresql":
        return postgresql
    return ()  # no other database is supported; search says so when asked
