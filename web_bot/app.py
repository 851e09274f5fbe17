"""The FastAPI app: ``create_app`` builds it; routes parse, call core, and send events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import time
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
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from core import __version__
from core.auth import is_loopback
from core.config import Settings, load_settings
from core.errors import AuthError, BotError, ConfigError, RateLimited
from core.events import Welcome
from core.services import WELCOME_HISTORY, Bot, build_bot
from web_bot.accounts import router as accounts_router
from web_bot.admin import admin_router
from web_bot.connections import WebSocketSink
from web_bot.conversations import router as conversations_router
from web_bot.deps import ROW_ID_MAX, AuthDep, BotDep, PrincipalDep, get_credentials
from web_bot.guard import SocketGuard, error_event
from web_bot.logging_setup import configure_logging
from web_bot.protocol import valid_client_id
from web_bot.security import (
    LOOPBACK_HOSTS,
    GuardHosts,
    RecordPeer,
    SecurityHeaders,
    content_security_policy,
    host_name,
    in_networks,
    same_origin,
)
from web_bot.session import SocketSession
from web_bot.uploads import read_upload
from web_bot.v1.errors import under_v1, v1_error, v1_http_error, v1_invalid
from web_bot.v1.realtime import router as realtime_router
from web_bot.v1.rest import router as v1_router

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
    "context-too-long": 400,
    "history-unavailable": 503,
    "history-failed": 503,
    "internal-error": 500,
    "auth-required": 401,
    "bad-credentials": 401,
    "account-disabled": 403,
    "not-allowed": 403,
    "bad-origin": 403,
    "setup-closed": 403,
    "not-found": 404,
    "username-taken": 409,
    "last-admin": 409,
    "weak-password": 422,
    "bad-username": 422,
    "rate-limited": 429,
}
# WebSocket close codes (4000-4999 are the application's): the page acts on each differently.
CLOSE_SIGN_IN = 4401  # no user (password or proxy mode), or the session ended
CLOSE_BAD_ORIGIN = 4403  # the handshake came from another site's page
CLOSE_NOT_FOUND = 4404  # another user's conversation (or one made before accounts that nobody adopted)
CLOSE_TOO_MANY = 4429  # too many open sockets for this user or address


def import_map(static: Path, version: str) -> str:
    """The page's import map: every module's URL to the same URL with the version, so one release's modules are
    cached together. It is the page's only inline script; the Content-Security-Policy allows it by its hash."""
    urls = {f"/static/{path.name}": f"/static/{path.name}?v={version}" for path in sorted(static.glob("*.js"))}
    return json.dumps({"imports": urls}, separators=(",", ":"))


def local_only(settings: Settings) -> bool:
    """Mode none without ``auth.allow_anonymous``: only this machine's clients are answered, however it listens."""
    return settings.auth.mode == "none" and not settings.auth.allow_anonymous


def served_hosts(settings: Settings) -> frozenset[str] | None:
    """The ``Host`` names answered: ``server.allowed_hosts`` and loopback's when set; loopback's alone for a
    local-only server (so a rebound DNS name cannot reach it); None (any) otherwise."""
    configured = frozenset(host_name(h) for h in settings.server.allowed_hosts)
    if configured:
        return configured | LOOPBACK_HOSTS
    return LOOPBACK_HOSTS if local_only(settings) else None


def check_exposure(settings: Settings, host: str) -> None:
    """``auth.mode`` none serves anyone who can connect: refuse to listen beyond loopback unless told to."""
    if settings.auth.mode != "none" or settings.auth.allow_anonymous:
        return
    if host == "localhost" or is_loopback(host):
        return
    raise ConfigError(
        f"auth.mode is none (no accounts) but the server would listen on {host}: set auth.mode to password or proxy, "
        "or auth.allow_anonymous to true to let anyone who can reach it in"
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; engines are started in its lifespan, not here."""
    settings = settings or load_settings()
    check_exposure(settings, settings.server.host)
    configure_logging(settings.logging)
    page_imports = import_map(HERE / "static", __version__)
    csp = content_security_policy([base64.b64encode(hashlib.sha256(page_imports.encode()).digest()).decode()])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.bot = await build_bot(settings)
        logger.info("web-bot %s ready", __version__)
        try:
            yield
        finally:
            # Turns get server.shutdown_timeout_s from the stop signal (`python -m web_bot` notes when it came), then
            # are cut and stored as interrupted (ChatPipeline.aclose).
            began = getattr(app.state, "stop_began", None)
            spent = time.monotonic() - began if began is not None else 0.0
            await app.state.bot.aclose(max(0.0, settings.server.shutdown_timeout_s - spent))
            logger.info("web-bot stopped")

    app = FastAPI(title="web-bot", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    # Added last runs first: security headers on every answer; the peer recorded, then X-Forwarded-For from a
    # trusted proxy applied; then the host and (mode none) loopback checks.
    app.add_middleware(GuardHosts, hosts=served_hosts(settings), loopback_only=local_only(settings))
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.server.forwarded_allow_ips)
    app.add_middleware(RecordPeer)
    app.add_middleware(SecurityHeaders, csp=csp)
    app.include_router(accounts_router)
    app.include_router(conversations_router)
    app.include_router(v1_router)
    app.include_router(realtime_router)
    app.include_router(admin_router(page_imports))
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(BotError)
    async def bot_error(request: Request, err: BotError) -> JSONResponse:
        request.app.state.bot.metrics.error(err.code)
        logger.info("%s %s: %s (%s)", request.method, request.url.path, err.code, err.__cause__ or err.message)
        # After a body that was too large, closing the connection is what makes the server stop reading it.
        headers = {"connection": "close"} if err.code == "audio-too-large" else {}
        body: dict[str, object] = {"code": err.code, "detail": err.message}
        status = STATUS_FOR_CODE.get(err.code, 400)
        if isinstance(err, RateLimited):
            headers["retry-after"] = str(math.ceil(err.retry_after_s))
            body["retry_after_ms"] = err.retry_after_ms
        if status == 401:
            headers["www-authenticate"] = 'Bearer realm="web-bot"'
        if under_v1(request.url.path):
            return v1_error(err, status, headers)
        return JSONResponse(body, status_code=status, headers=headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 401: "auth-required", 403: "not-allowed"}.get(err.status_code, "bad-request")
        if under_v1(request.url.path):
            return v1_http_error(err, code)
        return JSONResponse({"code": code, "detail": str(err.detail)}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        if under_v1(request.url.path):
            return v1_invalid(request, err)
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        return JSONResponse({"code": "bad-request", "detail": f"{where}: {problem['msg']}"}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(
            request, "index.html", {"version": __version__, "import_map": page_imports}
        )

    @app.get("/api/status")
    async def status(bot: BotDep, auth: AuthDep, principal: PrincipalDep) -> dict[str, Any]:
        """Health for anyone (status, version, access mode); engines, counts and instances for admins."""
        full = await bot.status()
        if auth.sees_everything(principal):
            return full
        return {"status": full["status"], "version": full["version"], "auth": full["auth"]}

    @app.get("/api/history/{client_id}")
    async def history(
        client_id: str,
        bot: BotDep,
        auth: AuthDep,
        principal: PrincipalDep,
        limit: int = Query(50, ge=1, le=500),
        before: int | None = Query(None, ge=1, le=ROW_ID_MAX),
    ) -> dict[str, Any]:
        if not valid_client_id(client_id):
            raise BotError("client_id must be 1-64 characters of A-Z a-z 0-9 _ -", code="bad-client-id")
        await auth.open_conversation(principal, client_id, create=False)
        messages = await bot.history.recent(client_id, limit, before=before)
        return {"client_id": client_id, "messages": [m.to_dict() for m in messages]}

    @app.post("/upload_audio")
    async def upload_audio(request: Request, bot: BotDep, auth: AuthDep, principal: PrincipalDep) -> dict[str, Any]:
        if not auth.may_use(principal):
            auth.require_user(principal)
        await auth.check_audio(principal)
        limit = int(settings.audio.max_upload_mb * 1_000_000)
        upload = await read_upload(request, limit)
        await auth.open_conversation(principal, upload.client_id, create=True)
        logger.info("upload from %s: %d bytes", upload.client_id, len(upload.data))
        result = await bot.pipeline.submit_audio(upload.client_id, upload.data, "upload")
        await auth.spend_audio(principal, result.timings.get("audio_s", 0.0))
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
    async def metrics(bot: BotDep, auth: AuthDep, principal: PrincipalDep) -> Response:
        """Prometheus metrics, for ``metrics.allow_ips`` (after trusted proxies) or an admin's API token."""
        if not (in_networks(principal.address, settings.metrics.allow_ips) or principal.is_admin):
            auth.require_admin(principal)
        return Response(bot.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws/{client_id}")
    async def chat_socket(websocket: WebSocket, client_id: str, bot: BotDep) -> None:
        await websocket.accept()
        if not valid_client_id(client_id):
            await websocket.close(code=1008, reason="client_id must be 1-64 characters of A-Z a-z 0-9 _ -")
            return
        access = await _admit(websocket, client_id, bot)
        if access is None:
            return
        slot, guard = access
        sink = WebSocketSink(websocket, settings.server.send_timeout_s)
        session = SocketSession(bot, client_id, sink, guard)

        async def signed_out() -> None:
            with contextlib.suppress(Exception):
                await websocket.close(code=CLOSE_SIGN_IN, reason="sign in again")

        watcher = asyncio.create_task(guard.watch(signed_out), name=f"guard-{client_id}")
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
                if not await guard.still_valid(text=frame.get("text") is not None):
                    await websocket.close(code=CLOSE_SIGN_IN, reason="sign in again")
                    break
                if frame.get("text") is not None:
                    await session.on_text(frame["text"])
                elif frame.get("bytes") is not None:
                    await session.on_binary(frame["bytes"])
        except (WebSocketDisconnect, BotError, TimeoutError, RuntimeError) as err:
            logger.info("connection of %s ended: %s", client_id, err or type(err).__name__)
        finally:
            watcher.cancel()
            bot.hub.detach(client_id, sink)
            await session.close()
            await guard.auth.give_back_socket(slot)
            logger.info("disconnected %s (%d connection(s))", client_id, bot.hub.connection_count)

    async def _admit(websocket: WebSocket, client_id: str, bot: Bot) -> tuple[str, SocketGuard] | None:
        """Check a new socket: its page's origin, who opens it, whether the conversation is theirs, and the cap on
        open sockets; on a refusal, close it with the code the page acts on and return None."""
        auth = bot.auth
        assert auth is not None
        if not same_origin(websocket.headers, settings.server.allowed_origins, websocket.url.scheme):
            logger.info("socket for %s refused: Origin %s", client_id, websocket.headers.get("origin"))
            await websocket.close(code=CLOSE_BAD_ORIGIN, reason="this page may not connect here")
            return None
        credentials = get_credentials(websocket)
        try:
            principal = await auth.authenticate(credentials)
            if not auth.may_use(principal):
                await websocket.close(code=CLOSE_SIGN_IN, reason="sign in first")
                return None
            await auth.open_conversation(principal, client_id, create=True)
            slot = await auth.take_socket(principal)
        except RateLimited as err:
            with contextlib.suppress(Exception):
                await websocket.send_json(error_event(err))
                await websocket.close(code=CLOSE_TOO_MANY, reason="too many open connections")
            return None
        except AuthError as err:
            code = CLOSE_NOT_FOUND if err.code == "not-found" else CLOSE_SIGN_IN
            logger.info("socket for %s refused: %s", client_id, err.code)
            await websocket.close(code=code, reason=err.message)
            return None
        except BotError as err:
            logger.warning("socket for %s refused: %s", client_id, err.code)
            await websocket.close(code=1011, reason=err.message)
            return None
        return slot, SocketGuard(auth, principal, credentials)

    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn web_bot.app:app` works, yet importing this module builds nothing.
    if name == "app":
        return create_app()
    raise AttributeError(name)
