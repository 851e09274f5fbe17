"""The FastAPI app: ``create_app`` builds it; routes parse, call core, and send events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.websockets import WebSocketDisconnect

from core import __version__
from core.config import Settings, load_settings
from core.errors import BotError, CommandError, ProtocolError
from core.events import ErrorEvent, Welcome
from core.pipeline import TurnRequest
from core.services import build_bot
from web_bot.connections import WebSocketSink
from web_bot.deps import BotDep
from web_bot.logging_setup import configure_logging
from web_bot.protocol import PingIn, check_chat_text, parse_text_frame, valid_client_id

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
WELCOME_HISTORY = 50
STATUS_FOR_CODE = {
    "bad-client-id": 400,
    "history-unavailable": 503,
    "history-failed": 503,
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; engines are started in its lifespan, not here."""
    settings = settings or load_settings()
    configure_logging(settings.logging)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.bot = await build_bot(settings)
        logger.info("web-bot %s ready", __version__)
        try:
            yield
        finally:
            await app.state.bot.aclose()
            logger.info("web-bot stopped")

    app = FastAPI(title="web-bot", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(BotError)
    async def bot_error(request: Request, err: BotError) -> JSONResponse:
        return JSONResponse({"code": err.code, "detail": err.message}, status_code=STATUS_FOR_CODE.get(err.code, 400))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        return JSONResponse({"code": "bad-request", "detail": f"{where}: {problem['msg']}"}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "index.html", {"version": __version__})

    @app.get("/api/status")
    async def status(bot: BotDep) -> dict[str, Any]:
        return await bot.status()

    @app.get("/api/history/{client_id}")
    async def history(
        client_id: str,
        bot: BotDep,
        limit: int = Query(50, ge=1, le=500),
        before: int | None = Query(None, ge=1),
    ) -> dict[str, Any]:
        if not valid_client_id(client_id):
            raise BotError("client_id must be 1-64 characters of A-Z a-z 0-9 _ -", code="bad-client-id")
        messages = await bot.history.recent(client_id, limit, before=before)
        return {"client_id": client_id, "messages": [m.to_dict() for m in messages]}

    @app.websocket("/ws/{client_id}")
    async def chat_socket(websocket: WebSocket, client_id: str, bot: BotDep) -> None:
        await websocket.accept()
        if not valid_client_id(client_id):
            await websocket.close(code=1008, reason="client_id must be 1-64 characters of A-Z a-z 0-9 _ -")
            return
        sink = WebSocketSink(websocket, settings.server.send_timeout_s)
        tasks: set[asyncio.Task[None]] = set()
        try:
            recent = await bot.history.recent(client_id, WELCOME_HISTORY)
            await sink.send(Welcome(client_id, [m.to_dict() for m in recent]).to_dict())
            bot.hub.attach(client_id, sink)
            logger.info("connected %s (%d connection(s))", client_id, bot.hub.connection_count)
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                if frame.get("text") is not None:
                    await _on_text(bot, client_id, sink, frame["text"], tasks)
                else:
                    error = ProtocolError("audio frames are not accepted yet", code="bad-audio-frame")
                    await sink.send(ErrorEvent(error.code, error.message).to_dict())
        except (WebSocketDisconnect, BotError, TimeoutError, RuntimeError) as err:
            logger.info("connection of %s ended: %s", client_id, err or type(err).__name__)
        finally:
            bot.hub.detach(client_id, sink)
            logger.info("disconnected %s (%d connection(s))", client_id, bot.hub.connection_count)

    return app


async def _on_text(bot: Any, client_id: str, sink: WebSocketSink, frame: str, tasks: set[asyncio.Task[None]]) -> None:
    """Handle one text frame without waiting for the turn: the socket keeps receiving meanwhile."""
    max_chars = bot.settings.server.max_message_chars
    try:
        message = parse_text_frame(frame)
        if isinstance(message, PingIn):
            await sink.send({"type": "pong"})
            return
        text = check_chat_text(message.text, max_chars)
    except ProtocolError as err:
        logger.info("rejected a frame from %s: %s", client_id, err.code)
        await sink.send(ErrorEvent(err.code, err.message).to_dict())
        return
    if text.startswith("/"):
        task = asyncio.create_task(_run_command(bot, client_id, sink, text))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return
    bot.pipeline.submit(TurnRequest(client_id, text, "text"))


async def _run_command(bot: Any, client_id: str, sink: WebSocketSink, line: str) -> None:
    try:
        result = await bot.commands.run(client_id, line)
    except CommandError as err:
        await sink.send(ErrorEvent(err.code, err.message).to_dict())
        return
    except BotError as err:
        logger.warning("command %s from %s failed: %s", line.split()[0], client_id, err)
        await sink.send(ErrorEvent(err.code, err.message).to_dict())
        return
    await sink.send(result.to_dict())


def __getattr__(name: str) -> FastAPI:
    # `uvicorn web_bot.app:app` works, yet importing this module builds nothing.
    if name == "app":
        return create_app()
    raise AttributeError(name)
