"""SQLite: message ids are never reused (AUTOINCREMENT), as on PostgreSQL.

Without it SQLite hands the highest id of a cleared conversation to the next message, so an id a page or a
pending update still holds could name someone else's message. The table is rebuilt with its rows and index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL's sequence never gives an id twice
    # The table as revision 0001 made it, given whole so the rebuild also works as an offline SQL script.
    old = sa.Table(
        "messages",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False, server_default="text"),
        sa.Column("status", sa.String(16), nullable=False, server_default="ok"),
        sa.Column("audio_path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_messages_client_id_id", "client_id", "id"),
        sqlite_autoincrement=not autoincrement,
    )
    with op.batch_alter_table(
        "messages", copy_from=old, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
