"""``WS /v1/realtime``: OpenAI's Realtime API (speech to speech) — admit the caller, then pass frames to core.

The caller is admitted as for ``/v1``'s other routes: a personal API token in ``Authorization: Bearer``, or — a
browser cannot set headers on a WebSocket — in the subprotocol ``openai-insecure-api-key.<token>``, as OpenAI's own
server takes it; any token in ``auth.mode`` none. A page from another site may not connect (its ``Origin``).
Clients of the beta API (header ``OpenAI-Beta: realtime=v1``, or subprotocol ``openai-beta.realtime-v1``) get its
event names; others get the generally available API's. Each session is a conversation of its caller, new unless
``?conversation=<id>`` names one of theirs to go on with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from core.auth import Credentials
from core.errors import AuthError, BotError, RateLimited
from core.realtime import Dialect, RealtimeSession
from core.realtime.protocol import RealtimeError
from web_bot.connections import WebSocketSink
from web_bot.deps import BotDep, get_credentials
from web_bot.guard import SocketGuard
from web_bot.protocol import valid_client_id
from web_bot.security import same_origin
from web_bot.v1.deps import principal_with

logger = logging.getLogger(__name__)

router = APIRouter()

KEY_PROTOCOL = "openai-insecure-api-key."
BETA_PROTOCOL = "openai-beta.realtime-v1"
CLOSE_SIGN_IN = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429


def _offered(websocket: WebSocket) -> list[str]:
    header = websocket.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def _dialect(websocket: WebSocket, offered: list[str]) -> Dialect:
    beta = "realtime=v1" in websocket.headers.get("openai-beta", "").replace(" ", "") or BETA_PROTOCOL in offered
    return "beta" if beta else "ga"


def _refusal(status: int, code: str, message: str, param: str | None) -> JSONResponse:
    kind = "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


async def _refuse(websocket: WebSocket, status: int, code: str, message: str, param: str | None = None) -> None:
    """Refuse the handshake with an HTTP status and OpenAI's error body (a 403 where the server cannot)."""
    logger.info("realtime handshake refused: %d %s (%s)", status, code, message)
    try:
        await websocket.send_denial_response(_refusal(status, code, message, param))
    except RuntimeError:
        await websocket.close(code=1008, reason=message[:120])


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, bot: BotDep) -> None:
    settings = bot.settings
    auth = bot.auth
    assert auth is not None
    if websocket.headers.get("origin") and not same_origin(
        websocket.headers, settings.server.allowed_origins, websocket.url.scheme
    ):
        await _refuse(websocket, 403, "bad-origin", "a page from another site may not connect here")
        return
    offered = _offered(websocket)
    keyed = next((p[len(KEY_PROTOCOL):] for p in offered if p.startswith(KEY_PROTOCOL)), None)
    bearer = get_credentials(websocket).bearer_token or keyed or None
    wanted = websocket.query_params.get("conversation")
    client_id = wanted or f"realtime-{secrets.token_hex(8)}"
    try:
        if not valid_client_id(client_id):
            raise RealtimeError("conversation must be 1-64 characters of A-Z a-z 0-9 _ -", param="conversation")
        principal = await principal_with(websocket, bearer)
        await auth.open_conversation(principal, client_id, create=True)
        slot = await auth.take_socket(principal)
    except RateLimited as err:
        await _refuse(websocket, 429, err.code, err.message)
        return
    except AuthError as err:
        status = 404 if err.code == "not-found" else 403 if err.code in ("not-allowed", "account-disabled") else 401
        await _refuse(websocket, status, err.code, err.message)
        return
    except BotError as err:
        refused = isinstance(err, RealtimeError)
        await _refuse(websocket, 400 if refused else 503, err.code, err.message, getattr(err, "param", None))
        return
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    credentials = get_credentials(websocket)
    guard = SocketGuard(auth, principal, Credentials(credentials.address, None, bearer, None))
    sink = WebSocketSink(websocket, settings.server.send_timeout_s)
    model = websocket.query_params.get("model") or bot.llm.info().model
    session = RealtimeSession(bot, client_id, sink, guard, dialect=_dialect(websocket, offered), model=model[:128])

    async def signed_out() -> None:
        with contextlib.suppress(Exception):
            await websocket.close(code=CLOSE_SIGN_IN, reason="the API token is no longer valid")

    watcher = asyncio.create_task(guard.watch(signed_out), name=f"guard-{client_id}")
    logger.info("realtime session %s opened (%s)", client_id, session.dialect)
    try:
        await session.start()
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                break
            if not await guard.still_valid(text=frame.get("text") is not None):
                await websocket.close(code=CLOSE_SIGN_IN, reason="the API token is no longer valid")
                break
            text = frame.get("text")
            if text is None:
                await session.fail(RealtimeError("events are JSON text frames", wire_code="invalid_event"))
                continue
            try:
                event = json.loads(text)
            except (ValueError, RecursionError):
                await session.fail(RealtimeError("the frame is not valid JSON", wire_code="invalid_json"))
                continue
            if not isinstance(event, dict):
                await session.fail(RealtimeError("an event is a JSON object", wire_code="invalid_event"))
                continue
            await session.on_event(event)
    except (WebSocketDisconnect, BotError, TimeoutError, RuntimeError) as err:
        logger.info("realtime session %s ended: %s", client_id, err or type(err).__name__)
    finally:
        watcher.cancel()
        await session.aclose()
        await auth.give_back_socket(slot)
        logger.info("realtime session %s closed", client_id)
