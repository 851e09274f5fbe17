"""Conversations (issue 14): every conversation gets a row, with a title; a conversation of mode ``none`` (or one
made before accounts) has no owner, so ``user_id`` may be NULL. Conversations that have messages and no row yet get
one, without an owner (``auth.legacy_owner`` adopts them)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def conversations_0005() -> sa.Table:
    """The table as revision 0005 made it: SQLite's batch mode copies from it, so ``--sql`` needs no database."""
    return sa.Table(
        "conversations",
        sa.MetaData(),
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_conversations_user_id", "user_id"),
    )


def upgrade() -> None:
    with op.batch_alter_table("conversations", copy_from=conversations_0005()) as batch:
        batch.alter_column("user_id", existing_type=ID, nullable=True)
        batch.add_column(sa.Column("title", sa.String(200), nullable=True))
    op.execute(
        "INSERT INTO conversations (client_id, user_id, created_at, title) "
        "SELECT client_id, NULL, MIN(created_at), NULL FROM messages "
        "WHERE client_id NOT IN (SELECT client_id FROM conversations) GROUP BY client_id"
    )


def downgrade() -> None:
    op.execute("DELETE FROM conversations WHERE user_id IS NULL")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("title")
        batch.alter_column("user_id", existing_type=ID, nullable=False)
