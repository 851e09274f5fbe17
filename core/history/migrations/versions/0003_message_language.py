"""Messages carry their language: the one speech-to-text detected (or a client fixed), and how sure it was."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("language", sa.String(16), nullable=True))
    op.add_column("messages", sa.Column("language_probability", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("language_probability")
        batch.drop_column("language")
