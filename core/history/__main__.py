"""``python -m core.history upgrade|current|sql [--config FILE]``: the history database's schema migrations."""

from __future__ import annotations

import argparse
import asyncio
import sys

from alembic import command
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from core.config import load_settings
from core.errors import ConfigError
from core.history.migrate import alembic_config, head_revision, migrate, revision_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.history", description="Migrate the history database.")
    parser.add_argument(
        "action",
        choices=("upgrade", "current", "sql"),
        help="upgrade: to the newest revision; current: print the revision; sql: print the SQL, apply nothing",
    )
    parser.add_argument("--config", help="configuration file (default: $WEB_BOT_CONFIG or data/config.json)")
    args = parser.parse_args(argv)
    try:
        url = load_settings(args.config).database_url
    except ConfigError as err:
        print(f"core.history: {err}", file=sys.stderr)
        return 2
    try:
        if args.action == "sql":
            config = alembic_config()
            config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolates %
            command.upgrade(config, "head", sql=True)
            return 0
        revision = asyncio.run(migrate(url) if args.action == "upgrade" else revision_of(url))
    except (SQLAlchemyError, OSError, CommandError) as err:
        print(f"core.history: {err}", file=sys.stderr)
        return 1
    print(f"{revision or 'empty'} (newest: {head_revision()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
