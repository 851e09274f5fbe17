"""The account tables, in SQLAlchemy Core, on the history database's metadata (one schema, one migration chain)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, ForeignKey, Index, Integer, String, Table, false

from core.history.schema import metadata

ID = BigInteger().with_variant(Integer, "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    # argon2id, in the PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash); NULL for proxy users.
    Column("password_hash", String(255), nullable=True),
    Column("role", String(16), nullable=False, server_default="user"),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=True),
    sqlite_autoincrement=True,
)

# Signed-in browser sessions (when Redis does not keep them): the SHA-256 of the cookie's random token, never it.
sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_sessions_user_id", "user_id"),
)

# Personal API tokens: shown once, kept as the SHA-256 of the token; ``prefix`` is what lists show.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Index("ix_api_tokens_user_id", "user_id"),
    sqlite_autoincrement=True,
)

# Every conversation (client_id): who it belongs to (NULL: nobody — mode none, or made before accounts) and its title.
conversations = Table(
    "conversations",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("title", String(200), nullable=True),
    Index("ix_conversations_user_id", "user_id"),
)
