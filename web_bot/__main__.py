"""``python -m web_bot --host HOST --port PORT [--config FILE]`` serves; ``python -m web_bot users ...`` manages
accounts (``web_bot.users``)."""

from __future__ import annotations

import argparse
import contextlib
import math
import socket
import sys
import time

import uvicorn
from fastapi import FastAPI

from core.config import Settings, load_settings
from core.errors import ConfigError
from web_bot.app import check_exposure, create_app


class StoppingServer(uvicorn.Server):
    """uvicorn's server, noting on the app when a stop (SIGTERM, Ctrl-C) begins: the turns' budget,
    ``server.shutdown_timeout_s``, counts from the signal, not from the end of uvicorn's wait for requests."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._app.state.stop_began = time.monotonic()
        await super().shutdown(sockets)


def build_server(app: FastAPI, settings: Settings, port: int) -> StoppingServer:
    """The uvicorn server ``python -m web_bot`` runs ``app`` in, on ``settings.server.host`` and ``port``.

    A stop closes every socket at once (code 1012, service restart: the page reconnects), lets requests under way
    (uploads waiting for their reply) and the turns in the lanes run for ``server.shutdown_timeout_s`` seconds, then
    cuts them (``core.pipeline.ChatPipeline.aclose``).
    """
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=port,
        log_config=None,
        # The app applies X-Forwarded-For itself (web_bot.security), after noting the direct peer.
        proxy_headers=False,
        # Audio frames up to twice the limit get a clear `audio-too-large` error; larger ones close the socket.
        ws_max_size=max(16 * 1024 * 1024, int(2 * settings.audio.max_upload_mb * 1_000_000)),
        # Our frames are small JSON or already-compressed audio: deflate would cost CPU and ~64 KB per socket.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=math.ceil(settings.server.shutdown_timeout_s),  # uvicorn takes whole seconds
    )
    return StoppingServer(config, app)


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
    server = build_server(create_app(settings), settings, args.port or settings.server.port)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises the Ctrl-C it handled again once it has stopped
        server.run()
    if not server.started:
        return 3  # uvicorn's own exit status for a server that failed to start
    return 0


if __name__ == "__main__":
    sys.exit(main())
