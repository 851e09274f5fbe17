"""AccountStore: users, API tokens and who owns each conversation, in the history database (SQLAlchemy Core).

Writes here are rare (a sign-up, a new token), so they go straight to the engine rather than through the history
store's group-commit queue. SQLAlchemy and driver errors become ``HistoryError("history-unavailable")``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.auth.models import ApiToken, Role, User
from core.auth.schema import api_tokens, conversations, users
from core.errors import AuthError, HistoryError
from core.history.schema import messages
from core.history.writes import aware

logger = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        role=row.role,
        disabled=bool(row.disabled),
        created_at=aware(row.created_at) or now(),
        last_seen_at=aware(row.last_seen_at),
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        created_at=aware(row.created_at) or now(),
        last_used_at=aware(row.last_used_at),
    )


class AccountStore:
    """Users, tokens and conversation owners on ``engine`` (the history database, migrated to 0005 or later)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # Users

    async def count_users(self) -> int:
        rows = await self._read(select(func.count()).select_from(users))
        return int(rows[0][0])

    async def count_admins(self) -> int:
        query = select(func.count()).select_from(users).where(users.c.role == "admin", users.c.disabled.is_(False))
        return int((await self._read(query))[0][0])

    async def create_user(self, username: str, password_hash: str | None, role: Role) -> User:
        """A new account; ``AuthError("username-taken")`` if the name is in use (whatever its case)."""
        if await self.user_by_name(username) is not None:
            raise AuthError(f"an account named {username!r} exists", code="username-taken")
        values = {"username": username, "password_hash": password_hash, "role": role, "disabled": False,
                  "created_at": now()}
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(insert(users).values(**values))
                user_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        except IntegrityError as err:
            raise AuthError(f"an account named {username!r} exists", code="username-taken") from err
        except SQLAlchemyError as err:
            raise _unavailable(err) from err
        user = await self.user_by_id(int(user_id)) if user_id is not None else None
        assert user is not None
        return user

    async def user_by_name(self, username: str) -> User | None:
        rows = await self._read(select(users).where(func.lower(users.c.username) == username.lower()))
        return _user(rows[0]) if rows else None

    async def password_hash(self, user_id: int) -> str | None:
        rows = await self._read(select(users.c.password_hash).where(users.c.id == user_id))
        return rows[0][0] if rows else None

    async def user_by_id(self, user_id: int) -> User | None:
        rows = await self._read(select(users).where(users.c.id == user_id))
        return _user(rows[0]) if rows else None

    async def list_users(self) -> list[User]:
        return [_user(row) for row in await self._read(select(users).order_by(users.c.id))]

    async def update_user(
        self,
        user_id: int,
        *,
        disabled: bool | None = None,
        role: Role | None = None,
        password_hash: str | None = None,
    ) -> User | None:
        values: dict[str, object] = {}
        if disabled is not None:
            values["disabled"] = disabled
        if role is not None:
            values["role"] = role
        if password_hash is not None:
            values["password_hash"] = password_hash
        if values:
            await self._write(update(users).where(users.c.id == user_id).values(**values))
        return await self.user_by_id(user_id)

    async def touch_user(self, user_id: int) -> None:
        await self._write(update(users).where(users.c.id == user_id).values(last_seen_at=now()))

    # API tokens

    async def add_token(self, user_id: int, name: str, prefix: str, token_hash: str) -> ApiToken:
        values = {"user_id": user_id, "name": name, "prefix": prefix, "token_hash": token_hash,
                  "created_at": now()}
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(api_tokens).values(**values))
                row = (await conn.execute(select(api_tokens).where(api_tokens.c.token_hash == token_hash))).one()
        except SQLAlchemyError as err:
            raise _unavailable(err) from err
        return _token(row)

    async def tokens(self, user_id: int) -> list[ApiToken]:
        query = select(api_tokens).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id)
        return [_token(row) for row in await self._read(query)]

    async def delete_token(self, user_id: int, token_id: int) -> bool:
        """Revoke one of ``user_id``'s tokens; False when they have no such token."""
        query = delete(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.user_id == user_id)
        return await self._write(query) > 0

    async def delete_tokens(self, user_id: int) -> int:
        return await self._write(delete(api_tokens).where(api_tokens.c.user_id == user_id))

    async def token_owner(self, token_hash: str) -> tuple[ApiToken, User] | None:
        rows = await self._read(select(api_tokens).where(api_tokens.c.token_hash == token_hash))
        if not rows:
            return None
        token = _token(rows[0])
        user = await self.user_by_id(token.user_id)
        return (token, user) if user is not None else None

    async def touch_token(self, token_id: int) -> None:
        await self._write(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now()))

    # Conversations

    async def owner_of(self, client_id: str) -> tuple[bool, int | None]:
        """Whether ``client_id`` has a row, and its owner (None: nobody's)."""
        rows = await self._read(select(conversations.c.user_id).where(conversations.c.client_id == client_id))
        if not rows:
            return False, None
        return True, (int(rows[0][0]) if rows[0][0] is not None else None)

    async def has_messages(self, client_id: str) -> bool:
        rows = await self._read(select(exists().where(messages.c.client_id == client_id)))
        return bool(rows[0][0])

    async def register(self, client_id: str) -> None:
        """Give ``client_id`` a row with no owner unless it has one (mode ``none``: every conversation is listed)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(conversations).values(client_id=client_id, user_id=None, created_at=now()))
        except IntegrityError:
            pass
        except SQLAlchemyError as err:
            raise _unavailable(err) from err

    async def claim(self, client_id: str, user_id: int) -> int | None:
        """Make ``user_id`` the owner of ``client_id`` if it is unused (no row, or a row with no owner and no
        messages); returns the owner after the attempt."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(conversations).values(client_id=client_id, user_id=user_id, created_at=now())
                )
        except IntegrityError:
            unused = ~exists().where(messages.c.client_id == client_id)
            await self._write(
                update(conversations)
                .where(conversations.c.client_id == client_id, conversations.c.user_id.is_(None), unused)
                .values(user_id=user_id)
            )
        except SQLAlchemyError as err:
            raise _unavailable(err) from err
        return (await self.owner_of(client_id))[1]

    async def adopt_unowned(self, user_id: int) -> int:
        """Give ``user_id`` every conversation that has messages and no owner (made before accounts, or in mode
        ``none``)."""
        has_messages = exists().where(messages.c.client_id == conversations.c.client_id)
        return await self._write(
            update(conversations).where(conversations.c.user_id.is_(None), has_messages).values(user_id=user_id)
        )

    async def _read(self, query: Any) -> Sequence[Any]:
        try:
            async with self._engine.connect() as conn:
                return (await conn.execute(query)).all()
        except SQLAlchemyError as err:
            raise _unavailable(err) from err

    async def _write(self, statement: Any) -> int:
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(statement)
        except SQLAlchemyError as err:
            raise _unavailable(err) from err
        return int(result.rowcount or 0)


def _unavailable(err: SQLAlchemyError) -> HistoryError:
    logger.warning("account store failed: %s", type(err).__name__)
    return HistoryError("the account database cannot be reached", code="history-unavailable")
