"""Signed-in sessions: an opaque random token in the browser's cookie, kept server-side only as its SHA-256.

A session ends ``idle_s`` after it was last used or ``max_s`` after it began, whichever is first, or when it is
revoked (sign-out, a password change, the account disabled). Sessions live in the database (``SQLSessionStore``)
or, when ``redis.url`` is set, in Redis (``RedisSessionStore``), where expiry is Redis's own TTL. Either way every
request looks its session up, so a revocation holds at once on every instance.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.auth.schema import sessions
from core.errors import HistoryError

logger = logging.getLogger(__name__)

TOUCH_EVERY_S = 60.0  # a session's last use is written at most this often


def new_token(prefix: str = "") -> str:
    """256 random bits, URL-safe (RFC 4648 base64url), behind an optional visible prefix."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The SHA-256 of a token, in hex: what is stored. The tokens are random, so no slow hash is needed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    token_hash: str


class SessionStore(Protocol):
    """Where sessions are kept."""

    async def create(self, user_id: int) -> str:
        """A new session for ``user_id``; returns its token (the only time it exists in the clear)."""
        ...

    async def lookup(self, token: str) -> Session | None:
        """The live session ``token`` names, marking it used; None if unknown, expired or revoked."""
        ...

    async def revoke(self, hashed: str) -> None: ...

    async def revoke_user(self, user_id: int, *, keep: str | None = None) -> None:
        """End every session of ``user_id`` but the one whose hash is ``keep``."""
        ...

    async def aclose(self) -> None: ...


class SQLSessionStore:
    """Sessions in the ``sessions`` table of the history database."""

    def __init__(self, engine: AsyncEngine, *, idle_s: float, max_s: float) -> None:
        self._engine = engine
        self._idle = timedelta(seconds=idle_s)
        self._max = timedelta(seconds=max_s)

    async def create(self, user_id: int) -> str:
        token = new_token()
        moment = datetime.now(UTC)
        row = {"token_hash": token_hash(token), "user_id": user_id, "created_at": moment, "last_seen_at": moment,
               "expires_at": moment + self._max}
        await self._execute(insert(sessions).values(**row))
        return token

    async def lookup(self, token: str) -> Session | None:
        hashed = token_hash(token)
        try:
            async with self._engine.connect() as conn:
                row = (await conn.execute(select(sessions).where(sessions.c.token_hash == hashed))).first()
        except SQLAlchemyError as err:
            raise _unavailable(err) from err
        if row is None:
            return None
        moment = datetime.now(UTC)
        last_seen, expires = _utc(row.last_seen_at), _utc(row.expires_at)
        if moment >= expires or moment - last_seen >= self._idle:
            await self.revoke(hashed)
            return None
        if (moment - last_seen).total_seconds() >= TOUCH_EVERY_S:
            await self._execute(update(sessions).where(sessions.c.token_hash == hashed).values(last_seen_at=moment))
        return Session(int(row.user_id), hashed)

    async def revoke(self, hashed: str) -> None:
        await self._execute(delete(sessions).where(sessions.c.token_hash == hashed))

    async def revoke_user(self, user_id: int, *, keep: str | None = None) -> None:
        statement = delete(sessions).where(sessions.c.user_id == user_id)
        if keep is not None:
            statement = statement.where(sessions.c.token_hash != keep)
        await self._execute(statement)

    async def aclose(self) -> None:
        return None

    async def _execute(self, statement: object) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(statement)  # type: ignore[call-overload]
        except SQLAlchemyError as err:
            raise _unavailable(err) from err


class RedisSessionStore:
    """Sessions in Redis: ``<prefix>:session:<hash>`` = {user, ends} with the idle timeout as its TTL (never past
    ``ends``), and ``<prefix>:user-sessions:<user>``, the set of a user's session hashes, to revoke them all."""

    def __init__(self, url: str, *, prefix: str, idle_s: float, max_s: float, timeout_s: float = 1.0) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._prefix = prefix
        self._idle = idle_s
        self._max = max_s

    async def create(self, user_id: int) -> str:
        token = new_token()
        hashed = token_hash(token)
        ends = time.time() + self._max
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key(hashed), mapping={"user": user_id, "ends": f"{ends:.3f}"})
                pipe.expire(self._key(hashed), max(1, round(min(self._idle, self._max))))
                pipe.sadd(self._user_key(user_id), hashed)
                pipe.expire(self._user_key(user_id), max(1, round(self._max)))
                await pipe.execute()
        except RedisError as err:
            raise _unavailable(err) from err
        return token

    async def lookup(self, token: str) -> Session | None:
        hashed = token_hash(token)
        try:
            fields = await self._redis.hgetall(self._key(hashed))
            if not fields:
                return None
            left = float(fields[b"ends"]) - time.time()
            if left <= 0:
                await self.revoke(hashed)
                return None
            await self._redis.expire(self._key(hashed), max(1, round(min(self._idle, left))))
        except RedisError as err:
            raise _unavailable(err) from err
        return Session(int(fields[b"user"]), hashed)

    async def revoke(self, hashed: str) -> None:
        try:
            fields = await self._redis.hgetall(self._key(hashed))
            await self._redis.delete(self._key(hashed))
            if fields:
                await self._redis.srem(self._user_key(int(fields[b"user"])), hashed)
        except RedisError as err:
            raise _unavailable(err) from err

    async def revoke_user(self, user_id: int, *, keep: str | None = None) -> None:
        try:
            members = await self._redis.smembers(self._user_key(user_id))
            doomed = [_text(m) for m in members if _text(m) != keep]
            if doomed:
                await self._redis.delete(*(self._key(h) for h in doomed))
                await self._redis.srem(self._user_key(user_id), *doomed)
        except RedisError as err:
            raise _unavailable(err) from err

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _key(self, hashed: str) -> str:
        return f"{self._prefix}:session:{hashed}"

    def _user_key(self, user_id: int) -> str:
        return f"{self._prefix}:user-sessions:{user_id}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _unavailable(err: Exception) -> HistoryError:
    logger.warning("session store failed: %s", type(err).__name__)
    return HistoryError("the session store cannot be reached", code="history-unavailable")
