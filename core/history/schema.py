"""The history tables, in SQLAlchemy Core."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("source", String(16), nullable=False, server_default="text"),
    Column("status", String(16), nullable=False, server_default="ok"),
    Column("audio_path", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The language speech-to-text detected (or the client fixed), ISO 639-1, and its probability (0-1).
    Column("language", String(16), nullable=True),
    Column("language_probability", Float, nullable=True),
    # The id the client sent a user's message with (the page's, to match its messages after a reconnect).
    Column("client_msg_id", String(64), nullable=True),
    Index("ix_messages_client_id_id", "client_id", "id"),
    # SQLite would otherwise reuse the ids of a cleared conversation's last messages.
    sqlite_autoincrement=True,
)
