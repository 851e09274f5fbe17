"""``python -m web_bot --host HOST --port PORT [--config FILE]`` serves; ``python -m web_bot users ...`` manages
accounts (``web_bot.users``)."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from core.config import load_settings
from core.errors import ConfigError
from web_bot.app import check_exposure, create_app


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "users" in argv[:3]:  # `users ...`, or `--config F users ...`
        from web_bot.users import main as users_main

        at = argv.index("users")
        return users_main(argv[:at] + argv[at + 1 :])
    parser = argparse.ArgumentParser(prog="python -m web_bot", description="Run the web-bot server.")
    parser.add_argument("--host", help="address to listen on (default: server.host from the config)")
    parser.add_argument("--port", type=int, help="port to listen on (default: server.port from the config)")
    parser.add_argument("--config", help="configuration file (default: $WEB_BOT_CONFIG or data/config.json)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.host:
            settings = settings.model_copy(update={"server": settings.server.model_copy(update={"host": args.host})})
        check_exposure(settings, settings.server.host)
    except ConfigError as err:
        print(f"web-bot: {err}", file=sys.stderr)
        return 2
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=args.port or settings.server.port,
        log_config=None,
        # The app applies X-Forwarded-For itself (web_bot.security), after noting the direct peer.
        proxy_headers=False,
        # Audio frames up to twice the limit get a clear `audio-too-large` error; larger ones close the socket.
        ws_max_size=max(16 * 1024 * 1024, int(2 * settings.audio.max_upload_mb * 1_000_000)),
        # Our frames are small JSON or already-compressed audio: deflate would cost CPU and ~64 KB per socket.
        ws_per_message_deflate=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
