"""Full-text search over stored messages (issue 14): a user's words in, their newest matching messages out.

The index (migrations 0007, 0008) holds every word of every message lower-cased, ё as е, and never stemmed: FTS5
on SQLite, a GIN index on ``to_tsvector('simple', translate(content, 'ёЁ', 'еЕ'))`` on PostgreSQL. A query is
folded the same way (Russian writers type е for ё freely: "желтый" finds "Жёлтый" and the other way round) and
stemmed here instead, each word by its script (Cyrillic: Russian, Latin: English, Snowball), and matched as a
prefix: "running" becomes ``run*``, which finds "run", "runs" and "running"; "погода" becomes ``погод*``, which
finds "погоды" and "погоду", and so does the typed prefix "погод". The stored text keeps its ё: only the index and
the query are folded, and a snippet shows the text as written. The query's words must all match (AND). Only
letters and digits of the user's text reach the database, each quoted, so nothing a user types is read as query
syntax.

Newest first, and never a read of every match of a frequent word (bench/bench_search.py measures it): SQLite
walks FTS5's matches from the newest id down, testing each against the user's message ids (gathered once from
``ix_messages_client_id_id``), and stops at ``limit``. PostgreSQL intersects the GIN index with the user's
conversations in the index (a BitmapAnd) before reading any row; for every conversation (mode ``none``) it searches
the newest ``WINDOW`` ids first.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import snowballstemmer
from sqlalchemy import Integer, String, Text, column, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.errors import HistoryError
from core.history.schema import messages
from core.history.writes import aware

logger = logging.getLogger(__name__)

# What migrations 0007 and 0008 make, outside core.history.schema: a schema comparison skips them (include_name).
SEARCH_OBJECTS = frozenset(
    {
        "messages_fts",
        "messages_fts_data",
        "messages_fts_idx",
        "messages_fts_config",
        "messages_fts_source",
        "ix_messages_content_search",
    }
)

MAX_TERMS = 8  # words of a query past these are ignored
MAX_TERM_CHARS = 64
MAX_LIMIT = 100
MIN_PREFIX = 3  # a stem shorter than this matches whole words only ("он" must not find "онлайн")
SNIPPET_CHARS = 160
SNIPPET_LEAD = 50  # characters of context kept before the first matched word

# Letters and digits (Unicode categories L* and N*): what FTS5's unicode61 and PostgreSQL's parser call words.
WORD = re.compile(r"[^\W_]+")
CYRILLIC = re.compile(r"[\u0400-\u04ff]")
YO = str.maketrans("ёЁ", "еЕ")  # what migration 0008 folds in the index
LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")
# Words too common to narrow a search: dropped when the query has others, else matched whole.
STOPWORDS = frozenset(
    str.split(
        """a an and are as at be but by for from had has have he her his i if in is it its me my no not of on or our
    she so than that the their them then there these they this to us was we were what when which who will with
    you your и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне было
    вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него до вас нибудь опять
    уж вам ведь там потом себя ничего ей может они тут где есть надо ней для мы тебя их чем была сам чтоб без
    будто чего раз тоже себе под будет ж тогда кто этот того потому этого какой совсем ним здесь этом один почти
    мой тем чтобы нее сейчас были куда зачем всех никогда можно при наконец два об другой хоть после над больше
    тот через эти нас про всего них какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть
    том нельзя такой им более всегда конечно всю между это"""
    )
)


@dataclass(frozen=True, slots=True)
class Term:
    """One word of a query: any of ``prefixes`` starting a word, or any of ``words`` being one, matches it."""

    prefixes: tuple[str, ...] = ()
    words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One matching message, with the part of it that matched: ``snippet`` is (text, matched) pairs, no markup."""

    message_id: int
    client_id: str
    role: str
    created_at: datetime
    title: str | None
    snippet: tuple[tuple[str, bool], ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "client_id": self.client_id,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "title": self.title,
            "snippet": [{"text": part, "matched": matched} for part, matched in self.snippet],
        }


async def search_messages(
    engine: AsyncEngine, *, query: str, user_id: int | None, limit: int = 20, before_id: int | None = None
) -> list[SearchHit]:
    """The newest messages (older than ``before_id``) that contain every word of ``query``, in the conversations
    of ``user_id`` (None: every conversation, as in mode ``none``); at most ``limit`` (capped at 100)."""
    terms = parse_query(query)
    limit = max(0, min(limit, MAX_LIMIT))
    if not terms or limit == 0:
        return []
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise HistoryError(f"search needs SQLite or PostgreSQL, not {dialect}", code="history-unavailable")
    try:
        async with engine.connect() as conn:
            if dialect == "sqlite":
                rows = await _rows(conn, "sqlite", fts5_query(terms), user_id, limit, before_id)
            elif user_id is not None:
                rows = await _rows(conn, "postgresql", tsquery(terms), user_id, limit, before_id)
            else:
                rows = await _newest_first(conn, tsquery(terms), limit, before_id)
    except (SQLAlchemyError, sqlite3.Error, OSError) as err:
        logger.error("search failed: %s", err)
        raise HistoryError("the history database cannot be searched", code="history-unavailable") from err
    return [
        SearchHit(
            message_id=int(row.id),
            client_id=row.client_id,
            role=row.role,
            created_at=aware(row.created_at) or row.created_at,
            title=row.title,
            snippet=snippet(row.content, terms),
        )
        for row in rows
    ]


def parse_query(query: str) -> tuple[Term, ...]:
    """The query's words as terms; none when it has no letters or digits."""
    words: list[str] = []
    for found in WORD.findall(unicodedata.normalize("NFC", query).lower().translate(YO)):
        word = found[:MAX_TERM_CHARS]
        if word not in words:
            words.append(word)
    if any(w not in STOPWORDS and len(w) >= MIN_PREFIX for w in words):
        words = [w for w in words if w not in STOPWORDS and len(w) >= MIN_PREFIX]
    return tuple(_term(word) for word in words[:MAX_TERMS])


def _term(word: str) -> Term:
    if word in STOPWORDS or len(word) < MIN_PREFIX:
        return Term(words=(word,))
    stem = _stem(word)
    prefixes = [word]
    if len(stem) >= MIN_PREFIX:
        prefixes.insert(0, stem)
    # "happy" stems to "happi", which does not start "happy": both. "running" to "run", which covers "running".
    kept = [p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes)]
    # English stems turn a final y into i ("cities", "city" → "citi"): the y word itself, whole.
    words = (stem[:-1] + "y",) if stem.endswith("i") and LATIN.search(stem) and len(stem) > MIN_PREFIX else ()
    return Term(prefixes=tuple(dict.fromkeys(kept)), words=tuple(w for w in words if w not in kept))


def _stem(word: str) -> str:
    if CYRILLIC.search(word):
        return str(_stemmer("russian").stemWord(word))  # Snowball writes ё as е, as the index does
    if LATIN.search(word):
        return str(_stemmer("english").stemWord(word))
    return word


@functools.cache
def _stemmer(language: str) -> Any:
    return snowballstemmer.stemmer(language)


def fts5_query(terms: Sequence[Term]) -> str:
    """An FTS5 MATCH expression: every term, each alternative a quoted string (a prefix with ``*``)."""

    def quoted(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    groups = []
    for term in terms:
        alternatives = [quoted(p) + "*" for p in term.prefixes] + [quoted(w) for w in term.words]
        groups.append("(" + " OR ".join(alternatives) + ")")
    return " AND ".join(groups)


def tsquery(terms: Sequence[Term]) -> str:
    """A ``to_tsquery('simple', …)`` expression: every term, each alternative quoted (a prefix with ``:*``)."""

    def quoted(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

    groups = []
    for term in terms:
        alternatives = [quoted(p) + ":*" for p in term.prefixes] + [quoted(w) for w in term.words]
        groups.append("(" + " | ".join(alternatives) + ")")
    return " & ".join(groups)


def snippet(content: str, terms: Sequence[Term]) -> tuple[tuple[str, bool], ...]:
    """About ``SNIPPET_CHARS`` of ``content`` from just before its first matched word, the matched words marked."""
    prefixes = tuple(_fold(p) for term in terms for p in term.prefixes)
    words = frozenset(_fold(w) for term in terms for w in term.words)
    spans = [
        (m.start(), m.end(), _fold(m.group()).startswith(prefixes) or _fold(m.group()) in words)
        for m in WORD.finditer(content)
    ]
    first = next((start for start, _, matched in spans if matched), 0)
    begin = max(0, first - SNIPPET_LEAD)
    if begin > 0:  # start at a word, never inside one
        begin = min(next((start for start, stop, _ in spans if stop > begin), first), first)
    end = min(len(content), begin + SNIPPET_CHARS)
    inside = [span for span in spans if span[0] >= begin and span[0] < end]
    if inside and inside[-1][1] > end:  # end after a word, never inside one (unless it is the only one)
        end = inside[-1][1] if len(inside) == 1 else inside[-2][1]
    parts: list[tuple[str, bool]] = []
    at = begin
    for start, stop, matched in inside:
        if not matched or stop > end:
            continue
        parts.append((content[at:start], False))
        parts.append((content[start:stop], True))
        at = stop
    parts.append((content[at:end], False))
    if begin > 0:
        parts.insert(0, ("…", False))
    if end < len(content):
        parts.append(("…", False))
    return _tidy(parts)


def _tidy(parts: list[tuple[str, bool]]) -> tuple[tuple[str, bool], ...]:
    """Whitespace runs as one space, no empty or split plain parts, none at the edges."""
    tidy: list[tuple[str, bool]] = []
    for part, matched in parts:
        part = re.sub(r"\s+", " ", part)
        if not part:
            continue
        if tidy and not matched and not tidy[-1][1]:
            tidy[-1] = (tidy[-1][0] + part, False)
        else:
            tidy.append((part, matched))
    if tidy and not tidy[0][1]:
        tidy[0] = (tidy[0][0].lstrip(), False)
    if tidy and not tidy[-1][1]:
        tidy[-1] = (tidy[-1][0].rstrip(), False)
    return tuple((part, matched) for part, matched in tidy if part)


def _fold(word: str) -> str:
    """A word as the index compares it: lower-case, ё as е, Latin letters without diacritics (unicode61
    remove_diacritics)."""
    return "".join(_fold_char(c) for c in word.lower().translate(YO))


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    if not LATIN.match(char):
        return char
    return "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """For Alembic's ``include_name``: everything but the search objects, which the declared schema leaves out."""
    return name not in SEARCH_OBJECTS


_COLUMNS = (
    column("id", Integer),
    column("client_id", String),
    column("role", String),
    column("created_at", messages.c.created_at.type),
    column("content", Text),
    column("title", String),
)
_SELECT = "SELECT m.id, m.client_id, m.role, m.created_at, m.content, c.title"
# PostgreSQL: the expression of migration 0008's index, word for word, or the planner cannot use it.
_TSVECTOR = "to_tsvector('simple'::regconfig, translate(m.content, 'ёЁ', 'еЕ'))"
WINDOW = 20_000  # PostgreSQL, every conversation: the newest this many ids are searched first


async def _newest_first(conn: AsyncConnection, match: str, limit: int, before: int | None) -> list[Any]:
    """PostgreSQL, every conversation: the newest ``WINDOW`` ids first, then the rest only if that was not enough.

    The GIN index yields every match at once, unordered; a frequent word in a million messages is tens of
    thousands of rows to read and sort. Bounded to a window (a BitmapAnd with the primary key's range) it is a few
    hundred, and a word too rare to fill the page from the window has few matches in all.
    """
    if before is None:
        before = int(await conn.scalar(text("SELECT coalesce(max(id), 0) + 1 FROM messages")) or 1)
    floor = before - WINDOW
    rows = await _rows(conn, "postgresql", match, None, limit, before, floor=floor)
    if len(rows) < limit and floor > 0:
        rows += await _rows(conn, "postgresql", match, None, limit - len(rows), floor + 1)
    return rows


async def _rows(
    conn: AsyncConnection,
    dialect: str,
    match: str,
    user_id: int | None,
    limit: int,
    before: int | None,
    *,
    floor: int | None = None,
) -> list[Any]:
    params = {"match": match, "user_id": user_id, "limit": limit, "before": before, "floor": floor}
    statement = _statement(dialect, user_id is not None, before is not None, floor is not None)
    result = await conn.execute(statement, {k: v for k, v in params.items() if v is not None})
    return list(result.all())


@functools.cache
def _statement(dialect: str, owned: bool, before: bool, window: bool) -> Any:
    """The search query: only the user's conversations (``owned``) or all, below ``:before`` and above ``:floor``
    (``window``) or not."""
    if dialect == "sqlite":
        # CROSS JOIN keeps FTS5 the outer loop, walking its matches newest first (ORDER BY rowid DESC is the
        # index's own order), so the LIMIT stops the walk. The user's message ids are gathered once (an index-only
        # read) and each match is tested against them; "+" keeps SQLite from handing them to FTS5 one by one.
        where = ["f.messages_fts MATCH :match"]
        if before:
            where.append("f.rowid < :before")
        if owned:
            where.append(
                "+f.rowid IN (SELECT o.id FROM conversations AS oc JOIN messages AS o ON o.client_id = oc.client_id "
                "WHERE oc.user_id = :user_id)"
            )
        sql = (
            f"{_SELECT} FROM messages_fts AS f CROSS JOIN messages AS m ON m.id = f.rowid "
            f"LEFT JOIN conversations AS c ON c.client_id = m.client_id "
            f"WHERE {' AND '.join(where)} ORDER BY f.rowid DESC LIMIT :limit"
        )
    else:
        # Every match's id first (MATERIALIZED: never a walk down the primary key testing each row, which the
        # planner picks when it expects many matches and which reads the whole table when they are few or old).
        # A user's conversations are a list the index scans, so the GIN index and ix_messages_client_id_id meet
        # in a BitmapAnd and only the user's matches are read.
        where = [f"{_TSVECTOR} @@ to_tsquery('simple'::regconfig, :match)"]
        if owned:
            where.append("m.client_id = ANY(ARRAY(SELECT client_id FROM conversations WHERE user_id = :user_id))")
        if before:
            where.append("m.id < :before")
        if window:
            where.append("m.id > :floor")
        sql = (
            f"WITH hits AS MATERIALIZED (SELECT m.id FROM messages AS m WHERE {' AND '.join(where)}), "
            "newest AS (SELECT id FROM hits ORDER BY id DESC LIMIT :limit) "
            f"{_SELECT} FROM newest JOIN messages AS m ON m.id = newest.id "
            "LEFT JOIN conversations AS c ON c.client_id = m.client_id ORDER BY m.id DESC"
        )
    return text(sql).columns(*_COLUMNS)
