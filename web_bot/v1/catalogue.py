"""The model catalogue of a running server (``core.openai_api.models``), and ``GET /v1/models``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends

from core.openai_api.models import Catalogue
from core.services import Bot
from web_bot.deps import BotDep
from web_bot.v1.deps import ApiPrincipalDep
from web_bot.v1.errors import V1Route

router = APIRouter(prefix="/v1", route_class=V1Route)


def get_catalogue(bot: BotDep) -> Catalogue:
    return catalogue_of(bot)


def catalogue_of(bot: Bot) -> Catalogue:
    """The models of ``bot``'s engines, ``created`` when the server started."""
    started = int(time.time() - (time.monotonic() - bot.started_at))
    return Catalogue(
        {
            "chat": bot.llm.info(),
            "transcription": bot.stt.info() if bot.stt is not None else None,
            "speech": bot.tts.info() if bot.tts is not None else None,
        },
        started,
    )


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]


@router.get("/models")
async def list_models(principal: ApiPrincipalDep, catalogue: CatalogueDep) -> dict[str, object]:
    """The server's chat, transcription and speech models."""
    return catalogue.listing()


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, principal: ApiPrincipalDep, catalogue: CatalogueDep) -> dict[str, object]:
    """One model, by its id or an alias (``whisper-1``, ``tts-1``…)."""
    return catalogue.describe(model_id)
