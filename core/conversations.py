"""Conversations: a user's many chats — listed most recent first, titled, renamed, deleted with everything they hold,
exported (JSON, Markdown, text; all of them as a ZIP with the recordings) and imported back.

A conversation is a ``client_id`` with a row in ``conversations`` (``core.auth.schema``). Its title is made from its
first user message's words as soon as that message is stored, whatever becomes of the reply; then, when the model is
a remote (quick) one, by the model in a few words from the first exchange that got a whole reply. A title the user
gave (or one made earlier) is never replaced.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.auth.schema import conversations
from core.errors import AuthError, BotError, HistoryError, ProtocolError
from core.events import ConversationDeleted, ConversationTitled
from core.history.schema import messages
from core.history.search import SearchHit, search_messages
from core.history.writes import to_stored
from core.interfaces import LLMEngine
from core.models import ChatMessage, StoredMessage
from core.unicode import valid_text

logger = logging.getLogger(__name__)

TITLE_CHARS = 200
FIRST_WORDS = 8  # a title made from the first message takes at most this many of its words
FIRST_WORDS_CHARS = 60
LLM_TITLE_TIMEOUT_S = 5.0
LLM_TITLE_PROMPT = (
    "Write a title of at most six words for the conversation below, in the language it is in. "
    "Answer with the title alone: no quotes, no full stop."
)
EXPORT_FORMAT = "web-bot.conversation"
EXPORT_VERSION = 1
ExportFormat = Literal["json", "md", "txt"]


def new_client_id() -> str:
    """A fresh conversation id: 128 random bits, URL-safe (a valid ``client_id``)."""
    return secrets.token_urlsafe(16)


def plain_title(text: str) -> str | None:
    """A title as a user typed it, made safe to show: valid text on one line, no control or format characters (an
    escape sequence, a right-to-left override, a zero-width space), at most ``TITLE_CHARS``."""
    kept = "".join(ch for ch in valid_text(text) if not unicodedata.category(ch).startswith("C") or ch in "\t\n")
    return " ".join(kept.split())[:TITLE_CHARS] or None


def clean_title(text: str) -> str | None:
    """A title a model wrote: ``plain_title`` without the quotes, markup and full stop models wrap titles in."""
    line = plain_title(text) or ""
    line = line.strip(" \"'«»“”„`*#").rstrip(".。")
    return line or None


def first_words_title(text: str) -> str | None:
    """A title from the first words of a message: at most ``FIRST_WORDS`` words and ``FIRST_WORDS_CHARS``."""
    words = " ".join(valid_text(text).split()).split(" ")
    title = " ".join(words[:FIRST_WORDS])
    if len(title) > FIRST_WORDS_CHARS:
        title = title[:FIRST_WORDS_CHARS].rsplit(" ", 1)[0]
    if title != " ".join(words):
        title = title.rstrip(" ,;:-—.!?") + "…" if title.rstrip(" ,;:-—.!?") else ""
    return clean_title(title) if title else None


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """One conversation as lists show it."""

    client_id: str
    title: str | None
    created_at: datetime
    last_message_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "client_id": self.client_id,
            "title": self.title,
            "created_at": self.created_at.isoformat(),
            "last_message_at": self.last_message_at.isoformat() if self.last_message_at else None,
        }


class ImportedMessage(BaseModel):
    """One message of an imported JSON export (what ``export`` writes; unknown keys are ignored). Only the roles the
    server writes: an imported "system" message would reach the model as the operator's instructions."""

    model_config = ConfigDict(extra="ignore", strict=False)

    role: Literal["user", "assistant"]
    content: str = Field(max_length=100_000)
    source: Literal["text", "voice", "upload"] = "text"
    status: Literal["ok", "error", "interrupted"] = "ok"
    created_at: datetime
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")
    language_probability: float | None = Field(None, ge=0, le=1)
    client_msg_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class ImportedConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: Literal["web-bot.conversation"]
    version: int = Field(ge=1, le=EXPORT_VERSION, strict=True)
    title: str | None = Field(None, max_length=1000)
    created_at: datetime | None = None
    messages: list[ImportedMessage] = Field(max_length=100_000)


class Conversations:
    """The conversations of the history database ``engine``; ``clear`` empties one conversation in its lane (the
    pipeline's, so a reply being written is stored first) and returns what went; ``forget`` deletes recordings."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clear: Callable[[str], Any],
        interrupt: Callable[[str], object] = lambda client_id: None,
        forget: Callable[[list[str | None]], Any],
        publish: Callable[[str, dict[str, object]], Any],
        recordings_dir: Path,
        llm: LLMEngine | None = None,
        llm_titles: bool = False,
    ) -> None:
        self._engine = engine
        self._clear = clear
        self._interrupt = interrupt
        self._forget = forget
        self._publish = publish
        self._recordings_dir = recordings_dir
        self._llm = llm
        self._llm_titles = llm_titles
        self._tasks: set[asyncio.Task[None]] = set()
        # Conversations this instance titled from their first words, waiting for a whole reply to have the model title
        # them (with model titles only): client_id → the title made.
        self._first_words: dict[str, str] = {}

    # Listing and naming

    async def of_user(self, user_id: int | None, *, limit: int = 50, offset: int = 0) -> list[ConversationInfo]:
        """``user_id``'s conversations (None: every conversation, mode none), most recent activity first."""
        last = (
            select(messages.c.created_at)
            .where(messages.c.client_id == conversations.c.client_id)
            .order_by(messages.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = select(conversations.c.client_id, conversations.c.title, conversations.c.created_at, last.label("last"))
        if user_id is not None:
            query = query.where(conversations.c.user_id == user_id)
        query = query.order_by(func.coalesce(last, conversations.c.created_at).desc(), conversations.c.client_id)
        rows = await self._read(query.limit(limit).offset(offset))
        return [ConversationInfo(r.client_id, r.title, _utc(r.created_at), _utc_or_none(r.last)) for r in rows]

    async def get(self, client_id: str) -> ConversationInfo | None:
        last = select(func.max(messages.c.created_at)).where(messages.c.client_id == client_id).scalar_subquery()
        query = select(conversations.c.client_id, conversations.c.title, conversations.c.created_at, last.label("last"))
        rows = await self._read(query.where(conversations.c.client_id == client_id))
        if not rows:
            return None
        r = rows[0]
        return ConversationInfo(r.client_id, r.title, _utc(r.created_at), _utc_or_none(r.last))

    async def create(self, user_id: int | None, title: str | None = None) -> ConversationInfo:
        client_id = new_client_id()
        values = {"client_id": client_id, "user_id": user_id, "created_at": datetime.now(UTC),
                  "title": plain_title(title) if title else None}
        await self._write(insert(conversations).values(**values))
        info = await self.get(client_id)
        assert info is not None
        return info

    async def rename(self, client_id: str, title: str) -> ConversationInfo:
        cleaned = plain_title(title)
        if cleaned is None:
            raise ProtocolError("a title needs some text", code="bad-request")
        await self._write(update(conversations).where(conversations.c.client_id == client_id).values(title=cleaned))
        info = await self.get(client_id)
        if info is None:
            raise AuthError("no such conversation", code="not-found")
        await self._publish(client_id, ConversationTitled(client_id, cleaned).to_dict())
        return info

    async def after_user_message(self, client_id: str, text: str) -> None:
        """A user's message (``text``) was stored: an untitled conversation is titled at once from its first words.
        A failure is logged, never the turn's: a title is a nicety."""
        try:
            await self._title_from_first_words(client_id, text)
        except HistoryError as err:
            logger.warning("titling %s failed: %s", client_id, err.code)

    def after_reply(self, client_id: str, user_text: str, reply: str) -> None:
        """A reply was stored whole: an untitled conversation gets its title, then a quick model may write a better
        one (in the background)."""
        task = asyncio.create_task(self._title(client_id, user_text, reply), name=f"title-{client_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _title(self, client_id: str, user_text: str, reply: str) -> None:
        try:
            await self._title_from_first_words(client_id, user_text)  # done already, unless the message came otherwise
            title = self._first_words.pop(client_id, None)
            if title is None:
                return
            better = await self._llm_title(user_text, reply)
            if better and better != title and await self._replace_title(client_id, title, better):
                await self._publish(client_id, ConversationTitled(client_id, better).to_dict())
        except HistoryError as err:
            logger.warning("titling %s failed: %s", client_id, err.code)

    async def _title_from_first_words(self, client_id: str, text: str) -> None:
        """Title an untitled conversation from the words of its first user message (``text``, the message just
        stored, if those make no title)."""
        rows = await self._read(select(conversations.c.title).where(conversations.c.client_id == client_id))
        if not rows or rows[0][0] is not None:
            return
        first = await self._read(
            select(messages.c.content)
            .where(messages.c.client_id == client_id, messages.c.role == "user")
            .order_by(messages.c.id)
            .limit(1)
        )
        title = (first_words_title(first[0][0]) if first else None) or first_words_title(text)
        # No event for the first words: the page refreshes its list after a reply of an untitled conversation.
        if title is None or not await self._set_title_if_none(client_id, title):
            return
        if self._llm is not None and self._llm_titles:
            self._first_words[client_id] = title

    async def _llm_title(self, user_text: str, reply: str) -> str | None:
        assert self._llm is not None
        prompt = [
            ChatMessage("system", LLM_TITLE_PROMPT),
            ChatMessage("user", f"User: {user_text[:1000]}\nAssistant: {reply[:1000]}"),
        ]
        parts: list[str] = []

        async def collect() -> None:
            assert self._llm is not None
            async for piece in self._llm.stream_reply(prompt):
                parts.append(piece)
                if sum(map(len, parts)) > TITLE_CHARS:
                    break

        try:
            await asyncio.wait_for(collect(), LLM_TITLE_TIMEOUT_S)
        except (TimeoutError, BotError) as err:  # a title is a nicety: any failure keeps the first words
            logger.info("no model title (%s): the first words stay", type(err).__name__)
            return None
        text = "".join(parts).strip().splitlines()
        return clean_title(text[0]) if text else None

    async def _set_title_if_none(self, client_id: str, title: str) -> bool:
        statement = update(conversations).where(
            conversations.c.client_id == client_id, conversations.c.title.is_(None)
        ).values(title=title)
        return await self._write(statement) > 0

    async def _replace_title(self, client_id: str, old: str, new: str) -> bool:
        """Replace a made title unless the user renamed the conversation meanwhile."""
        statement = update(conversations).where(
            conversations.c.client_id == client_id, conversations.c.title == old
        ).values(title=new)
        return await self._write(statement) > 0

    async def search(
        self, user_id: int | None, query: str, *, limit: int = 20, before_id: int | None = None
    ) -> list[SearchHit]:
        """Full-text search over ``user_id``'s messages (everyone's: None), newest first (``core.history.search``)."""
        return await search_messages(self._engine, query=query, user_id=user_id, limit=limit, before_id=before_id)

    # Deleting

    async def delete(self, client_id: str) -> int:
        """Delete the conversation: its messages (and so their search entries), its recordings, its row; every tab
        of it, on every instance, is told. Returns how many messages went."""
        self._interrupt(client_id)  # a reply being written stops (and is stored cut) rather than be waited for
        self._first_words.pop(client_id, None)
        deletion = await self._clear(client_id)
        await self._forget(list(deletion.audio_paths))
        await self._write(delete(conversations).where(conversations.c.client_id == client_id))
        await self._publish(client_id, ConversationDeleted(client_id).to_dict())
        logger.info("deleted conversation %s: %d message(s)", client_id, deletion.messages)
        return int(deletion.messages)

    async def prune(self, keep_days: float) -> int:
        """Delete messages older than ``keep_days`` (and their recordings); returns how many."""
        if keep_days <= 0:
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=keep_days)
        old = messages.c.created_at < cutoff
        with_audio = select(messages.c.audio_path).where(old, messages.c.audio_path.is_not(None))
        paths: list[str | None] = [row[0] for row in await self._read(with_audio)]
        removed = await self._write(delete(messages).where(old))
        if paths:
            await self._forget(list(paths))
        if removed:
            logger.info("history.keep_days: deleted %d message(s) older than %s", removed, cutoff.date())
        return removed

    # Export and import

    async def messages_of(self, client_id: str) -> list[StoredMessage]:
        query = select(messages).where(messages.c.client_id == client_id).order_by(messages.c.id)
        return [to_stored(row) for row in await self._read(query)]

    async def export(self, client_id: str, fmt: ExportFormat) -> tuple[str, str]:
        """One conversation as (text, media type): ``json`` complete (ids, timestamps, sources, statuses),
        ``md`` and ``txt`` for reading."""
        info = await self.get(client_id)
        if info is None:
            raise AuthError("no such conversation", code="not-found")
        stored = await self.messages_of(client_id)
        if fmt == "json":
            return json.dumps(_as_json(info, stored), ensure_ascii=False, indent=2), "application/json"
        if fmt == "md":
            return _as_markdown(info, stored), "text/markdown; charset=utf-8"
        return _as_text(info, stored), "text/plain; charset=utf-8"

    async def export_all(self, user_id: int | None, *, recordings: bool) -> bytes:
        """Every conversation of ``user_id`` as a ZIP: ``<id>.json`` and ``<id>.md`` for each, and with
        ``recordings`` the audio files under ``recordings/``."""
        entries: list[tuple[str, bytes | Path]] = []
        offset = 0
        while batch := await self.of_user(user_id, limit=500, offset=offset):
            offset += len(batch)
            for info in batch:
                stored = await self.messages_of(info.client_id)
                document = _as_json(info, stored)
                text = json.dumps(document, ensure_ascii=False, indent=2)
                entries.append((f"{info.client_id}.json", text.encode()))
                entries.append((f"{info.client_id}.md", _as_markdown(info, stored).encode()))
                if recordings:
                    for message in stored:
                        path = self._recording(message.audio_path)
                        if path is not None:
                            entries.append((f"recordings/{path.name}", path))
        return await asyncio.to_thread(_zip, entries)

    async def import_json(self, user_id: int | None, data: object) -> ConversationInfo:
        """A JSON export as a new conversation of ``user_id``: new ids, the same contents, times and statuses."""
        try:
            document = ImportedConversation.model_validate(data)
        except ValidationError as err:
            problem = err.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            detail = f"not a web-bot conversation export: {where}: {problem['msg']}"
            raise ProtocolError(detail, code="bad-request") from err
        info = await self.create(user_id, document.title)
        now = datetime.now(UTC)
        rows = [
            {
                "client_id": info.client_id, "role": m.role, "content": valid_text(m.content), "source": m.source,
                # A time still to come would keep the conversation first in every list, and out of retention.
                "status": m.status, "created_at": min(_utc(m.created_at), now),
                "language": m.language, "language_probability": m.language_probability,
                "client_msg_id": m.client_msg_id, "audio_path": None,
            }
            for m in document.messages
        ]
        if rows:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(messages), rows)
            except SQLAlchemyError as err:
                raise HistoryError("the conversation could not be stored", code="history-failed") from err
        logger.info("imported %d message(s) into conversation %s", len(rows), info.client_id)
        fresh = await self.get(info.client_id)
        assert fresh is not None
        return fresh

    def recording_path(self, message: StoredMessage) -> Path | None:
        return self._recording(message.audio_path)

    async def message(self, message_id: int) -> StoredMessage | None:
        rows = await self._read(select(messages).where(messages.c.id == message_id))
        return to_stored(rows[0]) if rows else None

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _recording(self, audio_path: str | None) -> Path | None:
        """The file a message's ``audio_path`` names, only if it is inside the recordings folder and exists."""
        if not audio_path:
            return None
        base = self._recordings_dir.resolve()
        path = (base / audio_path).resolve()
        if base not in path.parents or not path.is_file():
            return None
        return path

    async def _read(self, query: Any) -> list[Any]:
        try:
            async with self._engine.connect() as conn:
                return list((await conn.execute(query)).all())
        except SQLAlchemyError as err:
            logger.error("conversation read failed: %s", type(err).__name__)
            raise HistoryError("the history database cannot be read", code="history-unavailable") from err

    async def _write(self, statement: Any) -> int:
        try:
            async with self._engine.begin() as conn:
                return int((await conn.execute(statement)).rowcount or 0)
        except SQLAlchemyError as err:
            logger.error("conversation write failed: %s", type(err).__name__)
            raise HistoryError("the history database cannot be written", code="history-failed") from err


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC: a naive one is UTC already (SQLite hands those back); an aware one is converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return _utc(moment) if moment is not None else None


def _as_json(info: ConversationInfo, stored: list[StoredMessage]) -> dict[str, object]:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "client_id": info.client_id,
        "title": info.title,
        "created_at": info.created_at.isoformat(),
        "messages": [
            {
                **m.to_dict(),
                "created_at": _utc(m.created_at).isoformat(),
                "language_probability": m.language_probability,
                "recording": Path(m.audio_path).name if m.audio_path else None,
            }
            for m in stored
        ],
    }


def _as_markdown(info: ConversationInfo, stored: list[StoredMessage]) -> str:
    lines = [f"# {_md(info.title or info.client_id)}", ""]
    for m in stored:
        when = _utc(m.created_at).strftime("%Y-%m-%d %H:%M UTC")
        note = "" if m.status == "ok" else f" ({m.status})"
        lines += [f"**{m.role}** · {when}{note}", "", _md(m.content), ""]
    return "\n".join(lines)


def _as_text(info: ConversationInfo, stored: list[StoredMessage]) -> str:
    lines = [info.title or info.client_id, ""]
    for m in stored:
        when = _utc(m.created_at).strftime("%Y-%m-%d %H:%M")
        lines.append(f"[{when}] {m.role}: {m.content}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """User text in Markdown, shown as typed: characters that would start markup are escaped."""
    out = []
    for ch in text:
        out.append("\\" + ch if ch in "\\`*_{}[]<>()#+-!|~" else ch)
    return "".join(out)


def _zip(entries: list[tuple[str, bytes | Path]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            if isinstance(content, Path):
                archive.write(content, name, compress_type=zipfile.ZIP_STORED)  # audio is compressed already
            else:
                archive.writestr(name, content)
    return buffer.getvalue()
