"""``python -m web_bot users add|list|disable|enable|passwd|role``: manage accounts from the server's shell.

Passwords come from a prompt (twice), or one line of standard input with ``--password-stdin``; never from an
argument, which other users of the machine could read in the process list and which shells keep in history.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime

from core.auth import Auth, build_auth
from core.auth.models import ROLES, Principal, User
from core.config import Settings, load_settings
from core.errors import BotError, ConfigError
from core.history import SQLHistoryStore

# The shell's own principal: whoever can run this on the server is its operator.
OPERATOR = Principal(
    User(id=0, username="(shell)", role="admin", disabled=False, created_at=datetime.now(UTC)),
    "anonymous",
)


def parser() -> argparse.ArgumentParser:
    # --config is accepted before the action or after it (`users --config F list`, `users list --config F`).
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default=argparse.SUPPRESS,
                        help="configuration file (default: $WEB_BOT_CONFIG or data/config.json)")
    top = argparse.ArgumentParser(prog="python -m web_bot users", description="Manage web-bot accounts.",
                                  parents=[config])
    actions = top.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create an account (the first one should be --admin)", parents=[config])
    add.add_argument("username")
    add.add_argument("--admin", action="store_true", help="an admin manages accounts")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    actions.add_parser("list", help="list the accounts", parents=[config])
    for name, text in (("disable", "disable an account and end its sessions"), ("enable", "enable an account")):
        actions.add_parser(name, help=text, parents=[config]).add_argument("username")
    passwd = actions.add_parser("passwd", help="set an account's password and end its sessions", parents=[config])
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    role = actions.add_parser("role", help="make an account an admin or a user", parents=[config])
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    return top


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise BotError("no password on standard input", code="bad-request")
        return line.rstrip("\r\n")
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Again: ")
    except (EOFError, KeyboardInterrupt) as err:
        raise BotError("no password was typed", code="bad-request") from err
    if again != first:
        raise BotError("the two passwords differ", code="bad-request")
    return first


async def run(args: argparse.Namespace, settings: Settings) -> str:
    store = SQLHistoryStore(settings.database_url)
    await store.start()
    try:
        auth = await build_auth(settings, store.engine)
        try:
            return await act(auth, args)
        finally:
            await auth.aclose()
    finally:
        await store.aclose()


async def act(auth: Auth, args: argparse.Namespace) -> str:
    if args.action == "list":
        rows = [f"{u.id:>4}  {u.username:<24} {u.role:<6} {'disabled' if u.disabled else 'active':<8} "
                f"last seen {u.last_seen_at.isoformat(timespec='seconds') if u.last_seen_at else 'never'}"
                for u in await auth.accounts.list_users()]
        return "\n".join(rows) or "no accounts yet: python -m web_bot users add NAME --admin"
    if args.action == "add":
        password = read_password(args.password_stdin)
        user = await auth.add_user(args.username, password, "admin" if args.admin else "user")
        return f"created {user.role} {user.username}"
    found = await auth.accounts.user_by_name(args.username)
    if found is None:
        raise BotError(f"no account named {args.username!r}", code="not-found")
    user = found
    if args.action in ("disable", "enable"):
        await auth.update_user(OPERATOR, user.id, disabled=args.action == "disable")
        return f"{args.action}d {user.username}"
    if args.action == "passwd":
        await auth.update_user(OPERATOR, user.id, password=read_password(args.password_stdin))
        return f"set the password of {user.username}; their sessions ended"
    await auth.update_user(OPERATOR, user.id, role=args.role)
    return f"{user.username} is now {'an admin' if args.role == 'admin' else 'a user'}"


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as err:
        print(f"web-bot users: {err}", file=sys.stderr)
        return 2
    try:
        print(asyncio.run(run(args, settings)))
    except BotError as err:
        print(f"web-bot users: {err.message} ({err.code})", file=sys.stderr)
        return 1
    return 0
