"""The checks a history must pass after crashes (``bench.chaos``): every acknowledged message kept, word for word,
nothing stored twice, no torn row, and (SQLite) the file and its search index intact."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.chaos import FAKE_TRANSCRIPT, Ledger

Row = tuple[int, str, str, str, str, str, str | None]  # id, client_id, role, content, source, status, audio_path
_QUERY = "SELECT id, client_id, role, content, source, status, audio_path FROM messages ORDER BY id"
_REPLY = re.compile(r"\[reply:([^\]]*)\]")


@dataclass
class Verdict:
    """What the history held, and every way it failed the checks (none: it passed)."""

    rows: int = 0
    acked_checked: int = 0  # acknowledged user messages found intact
    replies_checked: int = 0  # acknowledged replies found intact
    statuses: Counter[str] = field(default_factory=Counter)  # assistant rows by status
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(problem)


def sqlite_rows(path: Path) -> list[Row]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [tuple(r) for r in db.execute(_QUERY)]


async def postgres_rows(url: str) -> list[Row]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        return [tuple(r) for r in await conn.fetch(_QUERY)]  # type: ignore[misc]
    finally:
        await conn.close()


def sqlite_integrity(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` and the full-text index's own check: the problems found (none: intact)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        problems = [r[0] for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "messages_fts" in tables:
            try:
                db.execute("INSERT INTO messages_fts(messages_fts) VALUES('integrity-check')")
            except sqlite3.DatabaseError as err:
                problems.append(f"messages_fts: {err}")
    return problems


def check_history(rows: list[Row], ledger: Ledger, audio_dir: Path | None = None) -> Verdict:
    verdict = Verdict(rows=len(rows))
    by_id = {row[0]: row for row in rows}
    for (client, ident), (text, source) in ledger.acked.items():
        row = by_id.get(ident)
        if row is None or row[1:5] != (client, "user", text, source):
            verdict.fail(f"acknowledged user message {ident} of {client} ({text!r}) is {row!r} after restart")
        else:
            verdict.acked_checked += 1
    for (client, ident), text in ledger.replies.items():
        row = by_id.get(ident)
        if row is None or row[1:4] != (client, "assistant", text) or row[5] != "ok":
            verdict.fail(f"acknowledged reply {ident} of {client} ({text!r}) is {row!r} after restart")
        else:
            verdict.replies_checked += 1
    last: dict[str, Row] = {}
    seen: Counter[tuple[str, str]] = Counter()
    uploads: Counter[str] = Counter()
    for row in rows:
        ident, client, role, content, source, status, _ = row
        before = last.get(client)
        last[client] = row
        if role == "user":
            _check_user(verdict, row, ledger, audio_dir)
            if source == "upload":
                uploads[client] += 1
            else:
                seen[(client, content)] += 1
            continue
        verdict.statuses[status] += 1
        if before is None or before[2] != "user":
            verdict.fail(f"reply {ident} of {client} follows no user message (stored twice?): {content!r}")
            continue
        wholes = _replies_to(before)
        if status == "ok" and content not in wholes:
            verdict.fail(f"reply {ident} of {client} is {content!r}, not the whole {wholes[0]!r}")
        elif status in ("interrupted", "error") and not any(whole.startswith(content) for whole in wholes):
            verdict.fail(f"cut reply {ident} of {client} is {content!r}, no prefix of {wholes[0]!r}")
        elif status not in ("ok", "interrupted", "error"):
            verdict.fail(f"reply {ident} of {client} has status {status!r}")
    for (client, content), count in seen.items():
        if count > 1:
            verdict.fail(f"{client}'s message {content!r} is stored {count} times")
    for client, count in uploads.items():
        if count > ledger.uploads[client]:
            verdict.fail(f"{client} posted {ledger.uploads[client]} recordings but {count} are stored")
    return verdict


def _check_user(verdict: Verdict, row: Row, ledger: Ledger, audio_dir: Path | None) -> None:
    ident, client, _, content, source, status, audio_path = row
    if status != "ok":
        verdict.fail(f"user message {ident} of {client} has status {status!r}")
    if source == "upload":
        if content != FAKE_TRANSCRIPT:
            verdict.fail(f"uploaded message {ident} of {client} reads {content!r}")
        if audio_dir is not None and (audio_path is None or not (audio_dir / audio_path).is_file()):
            verdict.fail(f"uploaded message {ident} of {client} refers to a missing recording {audio_path!r}")
    elif content not in ledger.sent.get(client, set()):
        verdict.fail(f"user message {ident} of {client} is {content!r}, which it never sent whole")


def _replies_to(user: Row) -> list[str]:
    """The whole replies the fake LLM may give to a stored user message (to an upload it counts its context)."""
    if user[4] == "upload":
        return [f"You said: {FAKE_TRANSCRIPT}. (context {n} messages)" for n in range(1, 200)]
    match = _REPLY.search(user[3])
    return [match.group(1) if match else "(no reply expected)"]
