"""The FastAPI app: ``create_app`` builds it; routes parse, call core, and send events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.websockets import WebSocketDisconnect

from core import __version__
from core.config import Settings, load_settings
from core.errors import BotError
from core.events import Welcome
from core.services import WELCOME_HISTORY, build_bot
from web_bot.connections import WebSocketSink
from web_bot.deps import BotDep
from web_bot.logging_setup import configure_logging
from web_bot.protocol import valid_client_id
from web_bot.session import SocketSession
from web_bot.uploads import read_upload

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATUS_FOR_CODE = {
    "bad-request": 400,
    "bad-client-id": 400,
    "audio-too-large": 413,
    "audio-too-long": 413,
    "unsupported-audio": 415,
    "corrupt-audio": 422,
    "empty-audio": 422,
    "no-speech": 422,
    "stt-unavailable": 503,
    "stt-failed": 502,
    "stt-auth": 502,
    "stt-rate-limited": 429,
    "llm-rate-limited": 429,
    "llm-timeout": 504,
    "llm-unavailable": 503,
    "llm-auth": 502,
    "llm-failed": 502,
    "history-unavailable": 503,
    "history-failed": 503,
    "internal-error": 500,
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
        request.app.state.bot.metrics.error(err.code)
        logger.info("%s %s: %s (%s)", request.method, request.url.path, err.code, err.__cause__ or err.message)
        # After a body that was too large, closing the connection is what makes the server stop reading it.
        headers = {"connection": "close"} if err.code == "audio-too-large" else None
        return JSONResponse(
            {"code": err.code, "detail": err.message}, status_code=STATUS_FOR_CODE.get(err.code, 400), headers=headers
        )

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

    @app.post("/upload_audio")
    async def upload_audio(request: Request, bot: BotDep) -> dict[str, Any]:
        limit = int(settings.audio.max_upload_mb * 1_000_000)
        upload = await read_upload(request, limit)
        logger.info("upload from %s: %d bytes", upload.client_id, len(upload.data))
        result = await bot.pipeline.submit_audio(upload.client_id, upload.data, "upload")
        if result.error is not None:
            raise result.error
        return {
            "status": "success",
            "client_id": upload.client_id,
            "transcription": result.user_text,
            "response": result.reply,
            "message_id": result.message_id,
            "timings": result.timings,
        }

    @app.get("/metrics")
    async def metrics(bot: BotDep) -> Response:
        return Response(bot.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws/{client_id}")
    async def chat_socket(websocket: WebSocket, client_id: str, bot: BotDep) -> None:
        await websocket.accept()
        if not valid_client_id(client_id):
            await websocket.close(code=1008, reason="client_id must be 1-64 characters of A-Z a-z 0-9 _ -")
            return
        sink = WebSocketSink(websocket, settings.server.send_timeout_s)
        session = SocketSession(bot, client_id, sink)
        try:
            recent = await bot.history.recent(client_id, WELCOME_HISTORY)
            welcome = Welcome(client_id, [m.to_dict() for m in recent], bot.client_settings(client_id))
            await sink.send(welcome.to_dict())
            bot.hub.attach(client_id, sink)
            logger.info("connected %s (%d connection(s))", client_id, bot.hub.connection_count)
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                if frame.get("text") is not None:
                    await session.on_text(frame["text"])
                elif frame.get("bytes") is not None:
                    await session.on_binary(frame["bytes"])
        except (WebSocketDisconnect, BotError, TimeoutError, RuntimeError) as err:
            logger.info("connection of %s ended: %s", client_id, err or type(err).__name__)
        finally:
            bot.hub.detach(client_id, sink)
            await session.close()
            logger.info("disconnected %s (%d connection(s))", client_id, bot.hub.connection_count)

    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn web_bot.app:app` works, yet importing this module builds nothing.
    if name == "app":
        return create_app()
    raise AttributeError(name)
