"""Search (issue 14): a full-text index over ``messages.content``, filled from the rows already stored.

SQLite: an FTS5 table with external content (``messages`` itself, by ``id``), so the text is not stored twice;
triggers keep it in step with every insert, delete and change of ``content``. Words are split by the unicode61
tokenizer, lower-cased, and Latin letters lose their diacritics. PostgreSQL: a GIN index on
``to_tsvector('simple', content)`` (words lower-cased, never stemmed). Stemming happens on the query side
(core/history/search.py), as prefixes, so one index serves English and Russian alike.

The search objects are plain SQL, outside ``core.history.schema``: ``core.history.search.SEARCH_OBJECTS`` names
them. A later migration that rebuilds ``messages`` on SQLite (batch mode copies the table) drops its triggers and
must create them again.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SQLITE_UPGRADE = (
    # Positions are kept (detail=full, the default): a query word that unicode61 splits in two becomes a phrase,
    # which needs them. columnsize=0: no per-row sizes, which only ranking (bm25) would read.
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2', columnsize=0)",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
    "INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content); END",
    "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER messages_fts_update",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_insert",
    "DROP TABLE messages_fts",
)
# The expression core/history/search.py queries with, word for word, or the planner cannot use the index.
POSTGRESQL_UPGRADE = (
    "CREATE INDEX ix_messages_content_search ON messages USING gin (to_tsvector('simple'::regconfig, content))",
)
POSTGRESQL_DOWNGRADE = ("DROP INDEX ix_messages_content_search",)


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
