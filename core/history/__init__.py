"""Conversation history: one SQLAlchemy-backed store for SQLite and PostgreSQL alike."""

from __future__ import annotations

from core.history.store import SQLHistoryStore

__all__ = ["SQLHistoryStore"]
