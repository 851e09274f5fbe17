"""Errors under ``/v1`` in OpenAI's shape (``core.openai_api.errors``): the app's handlers call these for a path
under ``/v1``, and ``V1Route`` turns an unexpected exception into OpenAI's 500 after logging it once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from core.errors import BotError
from core.openai_api.errors import STATUS_FOR_CODE, bot_error_body, error_body

logger = logging.getLogger(__name__)

PREFIX = "/v1"
CLIENT_CLOSED = 499  # nginx's status for a request its client abandoned; nobody receives it, the access log shows it


def under_v1(path: str) -> bool:
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def v1_error(err: BotError, status: int, headers: dict[str, str] | None) -> JSONResponse:
    """A BotError as OpenAI answers one; ``status`` is the app's for the code, unless the API has its own."""
    status = STATUS_FOR_CODE.get(err.code, status)
    return JSONResponse(bot_error_body(err, status), status_code=status, headers=headers or None)


def v1_http_error(err: StarletteHTTPException, code: str) -> JSONResponse:
    """A routing error (no such route, a method the route does not take) in OpenAI's shape."""
    body = error_body(code, str(err.detail), err.status_code)
    return JSONResponse(body, status_code=err.status_code, headers=getattr(err, "headers", None))


def v1_invalid(request: Request, err: RequestValidationError) -> JSONResponse:
    """A body or parameter that fails validation: OpenAI's 400, naming the parameter (``messages[0].content``)."""
    problem = err.errors()[0]
    if problem.get("type") == "json_invalid":  # its place is a character offset, no parameter
        where = []
    else:
        where = [str(part) for part in problem["loc"] if part not in ("body", "query", "path")]
    param = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in where).lstrip(".") or None
    param = param.replace("[][", "[") if param else None  # timestamp_granularities[][0] is timestamp_granularities[0]
    message = f"{param}: {problem['msg']}" if param else f"the body: {problem['msg']}"
    logger.info("%s %s: bad-request (%s)", request.method, request.url.path, message)
    return JSONResponse(error_body("bad-request", message, 400, param), status_code=400)


class V1Route(APIRoute):
    """A ``/v1`` route: an exception that is not one of ours is logged with its traceback, once, and answered as
    OpenAI's 500 (the app's error handlers answer ours)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (BotError, StarletteHTTPException, RequestValidationError):
                raise
            except ClientDisconnect:
                logger.info("%s %s: the client went before the answer began", request.method, request.url.path)
                return Response(status_code=CLIENT_CLOSED)
            except Exception:
                logger.exception("%s %s failed", request.method, request.url.path)
                request.app.state.bot.metrics.error("internal-error")
                body = error_body("internal-error", "the server failed to handle this request", 500)
                return JSONResponse(body, status_code=500)

        return guarded
