"""``POST /v1/audio/speech``: text read aloud by the server's voices, streamed as it is synthesised."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter
from starlette.requests import Request

from core.errors import BotError, TTSError
from core.openai_api.speech import VoiceNames, speak
from core.tts.stream import StreamEncoder
from web_bot.deps import AuthDep, BotDep
from web_bot.v1.catalogue import CatalogueDep
from web_bot.v1.deps import ApiPrincipalDep
from web_bot.v1.errors import V1Route
from web_bot.v1.schemas import SpeechBody
from web_bot.v1.streaming import StoppedOnDisconnect, unless_gone

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", route_class=V1Route)


@router.post("/audio/speech")
async def speech(
    request: Request,
    body: SpeechBody, principal: ApiPrincipalDep, bot: BotDep, auth: AuthDep, catalogue: CatalogueDep
) -> StoppedOnDisconnect:
    """Counted as one message against the caller's rate. The first sentence is synthesised before the response
    starts, so a failure there is its status; a later one ends the audio early (and is logged)."""
    tts = bot.tts
    if tts is None:
        raise TTSError("speech is turned off on this server", code="tts-unavailable")
    catalogue.require(body.model, "speech")
    text = body.text()
    language = VoiceNames(tts, bot.settings.tts.voices).language(body.voice)
    await auth.count_message(principal)
    encoder = await asyncio.to_thread(StreamEncoder, body.response_format, speed=body.speed)
    audio = speak(tts, text, encoder, language=language, detect=bot.pipeline.text_language)
    try:
        first = await unless_gone(request, anext(audio, b""))
    except BaseException:
        await audio.aclose()
        raise
    logger.info("speech: %d chars as %s (voice %s, speed %g)", len(text), body.response_format, body.voice, body.speed)
    return StoppedOnDisconnect(_sent(first, audio), media_type=encoder.media_type)


async def _sent(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for data in rest:
            yield data
    except BotError as err:
        logger.warning("speech ended early: %s (%s)", err.code, err.__cause__ or err)
    except Exception:
        logger.exception("speech ended early")
    finally:
        await rest.aclose()
