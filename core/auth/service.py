"""Auth: who is asking, what they may open, and how fast they may go — every rule of ``auth.mode`` in one place.

The adapter hands over ``Credentials`` (what the request carried) and gets a ``Principal``; routes then ask
``require_user``/``require_admin``, ``open_conversation`` and the limit checks. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.auth.accounts import AccountStore
from core.auth.limits import RateLimits, SocketSlots
from core.auth.models import ROLES, USERNAME, ApiToken, Principal, Role, User
from core.auth.passwords import Passwords
from core.auth.sessions import SessionStore, new_token, token_hash
from core.config import Settings
from core.errors import AuthError

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "wbt_"  # personal API tokens start with it, so a leaked one is recognisable (and greppable)
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this keeps one request from costing much more than another
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one request carried: its client's address (after trusted proxies), the session cookie, a bearer token,
    and the user a trusted proxy named (the adapter leaves it None unless the request came from such a proxy)."""

    address: str
    session_token: str | None = None
    bearer_token: str | None = None
    proxy_user: str | None = None


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class Auth:
    """Accounts, sessions, tokens, ownership and limits, as ``auth.mode`` and ``limits`` say."""

    def __init__(
        self,
        settings: Settings,
        accounts: AccountStore,
        sessions: SessionStore,
        passwords: Passwords,
        limits: RateLimits,
        slots: SocketSlots,
    ) -> None:
        self._settings = settings.auth
        self._limits_settings = settings.limits
        self.accounts = accounts
        self.sessions = sessions
        self.passwords = passwords
        self.limits = limits
        self.slots = slots
        self._touched: dict[str, float] = {}
        self._setting_up = asyncio.Lock()

    @property
    def mode(self) -> str:
        return self._settings.mode

    @property
    def open(self) -> bool:
        """Mode ``none``: no accounts; whoever knows a conversation's id may use it."""
        return self._settings.mode == "none"

    async def start(self) -> None:
        """Adopt pre-account conversations for ``auth.legacy_owner``; start the socket leases."""
        self.slots.start()
        owner = self._settings.legacy_owner
        if owner and not self.open:
            user = await self.accounts.user_by_name(owner)
            if user is None:
                logger.warning("auth.legacy_owner %r is not an account: older conversations stay closed", owner)
            else:
                adopted = await self.accounts.adopt_unowned(user.id)
                if adopted:
                    logger.info("gave %d conversation(s) made before accounts to %s", adopted, user.username)

    async def aclose(self) -> None:
        await self.slots.aclose()
        await self.limits.aclose()
        await self.sessions.aclose()

    # Who is asking

    async def authenticate(self, credentials: Credentials) -> Principal:
        """The principal ``credentials`` prove; anonymous when they prove nothing (``require_user`` refuses that
        outside mode ``none``). A bearer token that is wrong is an error, not anonymity."""
        address = credentials.address
        if credentials.bearer_token is not None:
            found = await self.accounts.token_owner(token_hash(credentials.bearer_token))
            if found is None or found[1].disabled:
                raise AuthError(
                    "the API token is not valid (revoked, or its account is disabled)", code="bad-credentials"
                )
            token, user = found
            await self._touch(f"token:{token.id}", lambda: self.accounts.touch_token(token.id))
            await self._touch_user(user)
            return Principal(user, "token", address)
        if self._settings.mode == "password" and credentials.session_token:
            session = await self.sessions.lookup(credentials.session_token)
            if session is not None:
                signed_in = await self.accounts.user_by_id(session.user_id)
                if signed_in is not None and not signed_in.disabled:
                    await self._touch_user(signed_in)
                    return Principal(signed_in, "session", address, session.token_hash)
        if self._settings.mode == "proxy" and credentials.proxy_user:
            named = await self._proxy_user(credentials.proxy_user)
            if named is not None:
                return Principal(named, "proxy", address)
        return Principal(None, "anonymous", address)

    def require_user(self, principal: Principal) -> User:
        if principal.user is None:
            raise AuthError("sign in first", code="auth-required")
        return principal.user

    def require_admin(self, principal: Principal) -> User:
        user = self.require_user(principal)
        if not user.is_admin:
            raise AuthError("only an admin may do that", code="not-allowed")
        return user

    def may_use(self, principal: Principal) -> bool:
        """Whether ``principal`` may chat at all: anyone in mode ``none``, a user otherwise."""
        return self.open or principal.user is not None

    def sees_everything(self, principal: Principal) -> bool:
        """Engine details, counts and instances in ``/api/status``: admins, and in mode ``none`` the local user
        (on loopback; an anonymous server open to a network shows them to nobody)."""
        return principal.is_admin or (self.open and is_loopback(principal.address))

    # Signing in and out

    async def setup_needed(self, address: str) -> bool:
        """Whether the one-time first-admin form is open to ``address``: mode password, no account, loopback."""
        return self._settings.mode == "password" and is_loopback(address) and await self.accounts.count_users() == 0

    async def set_up(self, username: str, password: str, address: str) -> tuple[User, str]:
        """Create the first admin and sign them in; ``setup-closed`` once any account exists or off loopback."""
        async with self._setting_up:  # two forms sent at once make one admin, not two
            if not await self.setup_needed(address):
                raise AuthError(
                    "the first account exists (or this is not the server's own machine)", code="setup-closed"
                )
            user = await self.add_user(username, password, "admin")
        logger.info("first admin %s created from the setup form", user.username)
        return user, await self.sessions.create(user.id)

    async def sign_in(self, username: str, password: str, address: str) -> tuple[User, str]:
        """Check a password and open a session; returns the user and the session token.

        Failed attempts count per address and per username: past ``limits.sign_in_slow_after`` each answer waits
        longer, past ``limits.sign_in`` they are refused (``RateLimited``) before the password is even checked.
        """
        if self._settings.mode != "password":
            how = "through its proxy" if self._settings.mode == "proxy" else "not at all (it has no accounts)"
            raise AuthError(f"this server signs users in {how}, not with passwords", code="not-allowed")
        name_key, address_key = f"name:{username.lower()[:64]}", f"addr:{address}"
        # Every attempt is counted before its password is checked (atomically, in memory or Redis), so parallel
        # guesses cannot all slip in under the limit; a success clears its name's count.
        await self.limits.hit("sign_in_per_address", address_key)
        await self.limits.hit("sign_in", name_key)
        delay = await self.limits.sign_in_delay(name_key)
        if delay:
            await asyncio.sleep(delay)
        user = await self.accounts.user_by_name(username) if USERNAME.match(username) else None
        hashed = await self.accounts.password_hash(user.id) if user is not None else None
        long = len(password) > MAX_PASSWORD_CHARS  # no stored password is this long: checked for the time only
        if not await self.passwords.verify(hashed, password[:MAX_PASSWORD_CHARS]) or long:
            logger.info("failed sign-in for %r from %s", username[:64], address)
            raise AuthError("wrong username or password", code="bad-credentials")
        assert user is not None and hashed is not None
        if user.disabled:
            raise AuthError("this account is disabled; ask an admin", code="account-disabled")
        await self.limits.forget("sign_in", name_key)
        if self.passwords.needs_rehash(hashed):
            await self.accounts.update_user(user.id, password_hash=await self.passwords.hash(password))
        await self.accounts.touch_user(user.id)
        logger.info("%s signed in from %s", user.username, address)
        return user, await self.sessions.create(user.id)

    async def sign_out(self, principal: Principal) -> None:
        if principal.session_hash is not None:
            await self.sessions.revoke(principal.session_hash)
            logger.info("%s signed out", principal.user.username if principal.user else "?")

    async def change_password(self, principal: Principal, current: str, new: str) -> str | None:
        """Change one's own password; every session ends, and one signed in by a session gets a new one (its
        token is returned; None for an API token's request)."""
        user = self.require_user(principal)
        if principal.via != "session":
            raise AuthError("a password is changed from a signed-in page, not with a token or a proxy's user",
                            code="not-allowed")
        # The current password is a guess like any sign-in's: a stolen cookie must not make it a free oracle.
        name_key = f"name:{user.username.lower()}"
        await self.limits.hit("sign_in", name_key)
        hashed = await self.accounts.password_hash(user.id)
        if len(current) > MAX_PASSWORD_CHARS or not await self.passwords.verify(hashed, current):
            raise AuthError("the current password is wrong", code="bad-credentials")
        await self.limits.forget("sign_in", name_key)
        self._check_password(new)
        await self.accounts.update_user(user.id, password_hash=await self.passwords.hash(new))
        await self.sessions.revoke_user(user.id)
        logger.info("%s changed their password; their sessions were ended", user.username)
        return await self.sessions.create(user.id) if principal.via == "session" else None

    # API tokens

    async def create_token(self, principal: Principal, name: str) -> tuple[ApiToken, str]:
        user = self.require_user(principal)
        if principal.via == "token":
            raise AuthError("a token cannot make tokens: make them from a signed-in page", code="not-allowed")
        name = _clean_name(name)
        token = new_token(TOKEN_PREFIX)
        info = await self.accounts.add_token(user.id, name, token[: len(TOKEN_PREFIX) + 4], token_hash(token))
        logger.info("%s created API token %d", user.username, info.id)
        return info, token

    async def tokens(self, principal: Principal) -> list[ApiToken]:
        return await self.accounts.tokens(self.require_user(principal).id)

    async def revoke_token(self, principal: Principal, token_id: int) -> None:
        user = self.require_user(principal)
        if not await self.accounts.delete_token(user.id, token_id):
            raise AuthError("no such token", code="not-found")
        logger.info("%s revoked API token %d", user.username, token_id)

    # Accounts (admins)

    async def add_user(self, username: str, password: str | None, role: Role) -> User:
        """A new account (the CLI, the setup form and admins use this); ``password`` None: a proxy user."""
        if not USERNAME.match(username):
            raise AuthError("a username is 1-64 letters, digits and _ . - @", code="bad-username")
        if role not in ROLES:
            raise AuthError(f"a role is one of {', '.join(ROLES)}", code="bad-request")
        hashed = None
        if password is not None:
            self._check_password(password)
            hashed = await self.passwords.hash(password)
        return await self.accounts.create_user(username, hashed, role)

    async def users(self, principal: Principal) -> list[User]:
        self.require_admin(principal)
        return await self.accounts.list_users()

    async def admin_add_user(self, principal: Principal, username: str, password: str, role: Role) -> User:
        admin = self.require_admin(principal)
        user = await self.add_user(username, password, role)
        logger.info("%s added %s account %s", admin.username, role, user.username)
        return user

    async def update_user(
        self,
        principal: Principal,
        user_id: int,
        *,
        disabled: bool | None = None,
        role: Role | None = None,
        password: str | None = None,
    ) -> User:
        """An admin disables or enables an account, changes its role or resets its password. Disabling and a
        reset end the account's sessions; the last enabled admin can be neither disabled nor demoted."""
        admin = self.require_admin(principal)
        target = await self.accounts.user_by_id(user_id)
        if target is None:
            raise AuthError("no such account", code="not-found")
        if role is not None and role not in ROLES:
            raise AuthError(f"a role is one of {', '.join(ROLES)}", code="bad-request")
        losing_admin = target.is_admin and not target.disabled and (disabled or (role is not None and role != "admin"))
        if losing_admin and await self.accounts.count_admins() <= 1:
            raise AuthError("this is the last admin: make another admin first", code="last-admin")
        hashed = None
        if password is not None:
            self._check_password(password)
            hashed = await self.passwords.hash(password)
        updated = await self.accounts.update_user(user_id, disabled=disabled, role=role, password_hash=hashed)
        assert updated is not None
        if disabled or password is not None:
            # A reset or a disabled account ends everything that signed in as it: sessions and API tokens.
            await self.sessions.revoke_user(user_id)
            await self.accounts.delete_tokens(user_id)
        logger.info(
            "%s updated account %s:%s%s%s", admin.username, updated.username,
            f" disabled={disabled}" if disabled is not None else "", f" role={role}" if role else "",
            " password reset" if password is not None else "",
        )
        return updated

    # Conversations

    async def open_conversation(self, principal: Principal, client_id: str, *, create: bool) -> None:
        """Allow ``principal`` into ``client_id`` or raise: ``auth-required`` without a user (outside mode none),
        ``not-found`` for a conversation someone else owns, or one made before accounts that nobody adopted.
        ``create``: an unused id becomes the principal's (a socket, an upload); a read leaves it unowned."""
        if self.open:
            if create:
                await self.accounts.register(client_id)
            return
        user = self.require_user(principal)
        _, owner = await self.accounts.owner_of(client_id)
        if owner is None and not await self.accounts.has_messages(client_id):
            if not create:
                return  # nothing there yet: an empty conversation, which stays nobody's until used
            owner = await self.accounts.claim(client_id, user.id)
        if owner != user.id:
            raise AuthError("no such conversation", code="not-found")

    async def own_conversation(self, principal: Principal, client_id: str) -> None:
        """Raise unless ``client_id`` exists and is ``principal``'s (in mode none: unless it exists):
        ``auth-required`` without a user, else ``not-found``."""
        if not self.open:
            self.require_user(principal)
        known, owner = await self.accounts.owner_of(client_id)
        if not known or (not self.open and owner != principal.user_id):
            raise AuthError("no such conversation", code="not-found")

    def owner_key(self, principal: Principal) -> int | None:
        """Whose conversations ``principal`` lists: their own; in mode none everybody's (None)."""
        if self.open:
            return None
        return self.require_user(principal).id

    # Limits

    def _keys(self, principal: Principal) -> tuple[str, str]:
        who = f"user:{principal.user.id}" if principal.user is not None else f"addr:{principal.address}"
        return who, f"addr:{principal.address}"

    async def count_message(self, principal: Principal) -> None:
        """One chat message (or command) from ``principal``, or ``RateLimited``."""
        who, where = self._keys(principal)
        await self.limits.check("messages_per_address", where)
        await self.limits.hit("messages", who)
        await self.limits.hit("messages_per_address", where)

    async def check_audio(self, principal: Principal) -> None:
        """Refuse more speech once ``principal`` has used their ``limits.audio_seconds``."""
        await self.limits.check("audio_seconds", self._keys(principal)[0])

    async def spend_audio(self, principal: Principal, seconds: float) -> None:
        await self.limits.spend("audio_seconds", self._keys(principal)[0], max(1, round(seconds)))

    async def take_socket(self, principal: Principal) -> str:
        """A slot for one more open socket, or ``RateLimited``; give it back with ``give_back_socket``."""
        who, where = self._keys(principal)
        caps = [(where, self._limits_settings.sockets_per_address)]
        if principal.user is not None:
            caps.insert(0, (who, self._limits_settings.sockets_per_user))
        return await self.slots.take(caps)

    async def give_back_socket(self, slot: str) -> None:
        await self.slots.give_back(slot)

    def describe(self) -> dict[str, object]:
        """What ``/api/status`` tells anyone about access (the warning when a network may use the server
        anonymously)."""
        anonymous_network = self.open and self._settings.allow_anonymous
        return {
            "mode": self._settings.mode,
            "warning": "anyone who can reach this server can use it, and list, read, export and delete every "
            "conversation"
            if anonymous_network
            else None,
        }

    # Helpers

    def _check_password(self, password: str) -> None:
        least = self._settings.min_password_chars
        if len(password) < least:
            raise AuthError(f"a password needs at least {least} characters", code="weak-password")
        if len(password) > MAX_PASSWORD_CHARS:
            raise AuthError(f"a password has at most {MAX_PASSWORD_CHARS} characters", code="weak-password")

    async def _proxy_user(self, name: str) -> User | None:
        if not USERNAME.match(name):
            logger.warning("the proxy named a user %r that is not a valid username", name[:80])
            return None
        user = await self.accounts.user_by_name(name)
        if user is None:
            try:
                user = await self.accounts.create_user(name, None, "user")
                logger.info("proxy user %s seen for the first time: account created", name)
            except AuthError:  # another request created it at the same moment
                user = await self.accounts.user_by_name(name)
        if user is None or user.disabled:
            return None
        await self._touch_user(user)
        return user

    async def _touch_user(self, user: User) -> None:
        await self._touch(f"user:{user.id}", lambda: self.accounts.touch_user(user.id))

    async def _touch(self, key: str, write: Callable[[], Awaitable[None]]) -> None:
        moment = time.monotonic()
        if moment - self._touched.get(key, -TOUCH_EVERY_S) >= TOUCH_EVERY_S:
            self._touched[key] = moment
            await write()


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > 64 or any(unicodedata.category(ch).startswith("C") for ch in name):
        raise AuthError("a token's name is 1-64 printable characters", code="bad-request")
    return name
