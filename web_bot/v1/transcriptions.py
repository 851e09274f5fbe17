"""``POST /v1/audio/transcriptions``: an uploaded file's words, as OpenAI's Whisper API gives them."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response

from core.errors import STTError
from core.models import Transcript
from core.openai_api.errors import InvalidRequest
from core.openai_api.transcripts import MEDIA_TYPES, render
from web_bot.deps import AuthDep, BotDep
from web_bot.v1.catalogue import CatalogueDep
from web_bot.v1.deps import ApiPrincipalDep
from web_bot.v1.errors import V1Route
from web_bot.v1.forms import read_transcription
from web_bot.v1.streaming import unless_gone

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", route_class=V1Route)


@router.post("/audio/transcriptions")
async def transcriptions(
    request: Request, principal: ApiPrincipalDep, bot: BotDep, auth: AuthDep, catalogue: CatalogueDep
) -> Response:
    """Any container the server accepts, up to ``audio.max_upload_mb`` and ``audio.max_duration_s``; the audio's
    seconds count against the caller's ``limits.audio_seconds``. Nothing is kept. Audio with no speech in it is an
    empty transcript, as OpenAI's is, not an error."""
    if not bot.transcriber.available:
        raise STTError("speech-to-text is turned off on this server", code="stt-unavailable")
    await auth.check_audio(principal)
    upload = await read_transcription(request, int(bot.settings.audio.max_upload_mb * 1_000_000))
    form = upload.form
    catalogue.require(form.model, "transcription")
    if form.stream:
        raise InvalidRequest("transcriptions are not streamed here (stream false)", param="stream")
    if form.language and not bot.transcriber.knows_language(form.language):
        raise InvalidRequest(f"the speech model knows no language {form.language!r} (ISO-639-1)", param="language")
    # A caller who hangs up frees speech-to-text at once (at Whisper's next 30 s window): with one slot, a long
    # clip abandoned held everyone's transcriptions for minutes.
    clip = await unless_gone(request, bot.transcriber.decode(upload.data))
    try:
        transcript = await unless_gone(
            request, bot.transcriber.transcribe(clip, form.language, form.prompt, timestamps=form.timestamps)
        )
    except STTError as err:
        if err.code != "no-speech":
            raise
        transcript = Transcript("", form.language, clip.duration_s, segments=())
    finally:
        await auth.spend_audio(principal, clip.duration_s)
    logger.info(
        "transcription: %.1f s of %s audio as %s, %d chars", clip.duration_s, transcript.language or "unknown",
        form.response_format, len(transcript.text),
    )
    body = render(transcript, form.response_format, words=form.timestamps == "word", segments=form.segments_wanted)
    if isinstance(body, dict):
        return JSONResponse(body)
    return Response(str(body), media_type=MEDIA_TYPES[form.response_format])
