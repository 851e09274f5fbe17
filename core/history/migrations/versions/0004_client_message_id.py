"""A user's message keeps the id its client sent it with, so a page that reconnects knows which of its messages
arrived (by id, never by text: two identical "yes" are two messages)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("client_msg_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("client_msg_id")
