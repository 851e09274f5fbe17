"""The values accounts deal in: users, who is asking (a principal), API tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Role = Literal["admin", "user"]
ROLES: tuple[Role, ...] = ("admin", "user")
Via = Literal["anonymous", "session", "token", "proxy"]

# Letters, digits and _ . - @ (an e-mail address works as a username), 1-64 of them.
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True, slots=True)
class User:
    """An account; a proxy user has no password hash."""

    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    last_seen_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, object]:
        """What the user themself and the page see."""
        return {"id": self.id, "username": self.username, "role": self.role}

    def to_dict(self) -> dict[str, object]:
        """What an admin's users panel sees (never a hash)."""
        return {
            **self.public(),
            "disabled": self.disabled,
            "created_at": iso(self.created_at),
            "last_seen_at": iso(self.last_seen_at),
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user (by session cookie, API token or proxy header), or nobody in mode ``none``.

    ``address`` is the client's IP address (after trusted proxies); ``session_hash`` the SHA-256 of the session
    token a cookie carried, so signing out revokes exactly that session.
    """

    user: User | None
    via: Via
    address: str = ""
    session_hash: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.user is not None and self.user.is_admin

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user is not None else None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A personal API token as lists show it: never the token, only its first characters."""

    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
        }
