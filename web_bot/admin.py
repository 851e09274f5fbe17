"""The operator's view: ``GET /admin`` (the page of plots) and ``GET /api/admin/metrics`` (what they draw)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from core import __version__
from core.errors import BotError
from web_bot.deps import AuthDep, BotDep, PrincipalDep

HERE = Path(__file__).resolve().parent
WINDOW = re.compile(r"([0-9]{1,7})([smh]?)")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}


def window_seconds(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``24h`` → seconds; anything else is a ``bad-request``."""
    match = WINDOW.fullmatch(text.strip())
    if match is None:
        raise BotError("window: a number of seconds, or of minutes or hours (15m, 24h)", code="bad-request")
    return int(match[1]) * UNIT_S[match[2]]


def admin_router(import_map: str) -> APIRouter:
    """The routes, serving the page with the app's ``import_map`` (the inline script its CSP allows by hash)."""
    router = APIRouter()
    templates = Jinja2Templates(directory=HERE / "templates")

    @router.get("/admin", response_class=HTMLResponse)
    async def admin_page(request: Request) -> HTMLResponse:
        """The page itself holds no data: anyone gets it; it asks for the metrics, and says who may see them."""
        return templates.TemplateResponse(request, "admin.html", {"version": __version__, "import_map": import_map})

    @router.get("/api/admin/metrics")
    async def metrics_history(
        bot: BotDep, auth: AuthDep, principal: PrincipalDep, window: str = Query("1h", max_length=16)
    ) -> dict[str, Any]:
        """The last ``window`` of this instance's metrics history (``MetricsHistory.render`` gives the shape):
        for admins, and in mode ``none`` the local user; anonymous 401 ``auth-required``, a user 403
        ``not-allowed``; a window shorter than one sample: 400 ``bad-request``; one longer than
        ``metrics.history_keep_h`` is all that is kept."""
        if not auth.sees_everything(principal):
            auth.require_admin(principal)
        history = bot.metrics_history
        if history is None:
            raise BotError("the metrics history is not running", code="internal-error")
        seconds = window_seconds(window)
        if seconds < history.interval_s:
            shortest = f"window: at least {history.interval_s:g} s (metrics.history_interval_s)"
            raise BotError(shortest, code="bad-request")
        # Asking for more than is kept (24 h on a server that keeps 1 h) shows all there is, as a chart would.
        return await history.view(min(seconds, history.keep_s))

    return router
