"""Reading ``POST /v1/audio/transcriptions``'s multipart form with the upload limit: reading stops as soon as the
body passes ``audio.max_upload_mb`` (plus room for the small fields), as ``/upload_audio``'s does."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from core.errors import AudioError
from core.openai_api.errors import InvalidRequest
from web_bot.uploads import limited_body, too_large
from web_bot.v1.schemas import TranscriptionForm

MAX_FIELDS = 16  # model, language, prompt, response_format, temperature, timestamp_granularities[] ×2, include[]…


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    form: TranscriptionForm
    data: bytes


async def read_transcription(request: Request, limit: int) -> TranscriptionRequest:
    """The form's fields, validated, and the file's bytes (at most ``limit``)."""
    body = limited_body(request, limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("send the audio as multipart/form-data with a `file` field", param="file")
    parser = MultiPartParser(
        request.headers, body, max_files=1, max_fields=MAX_FIELDS
    )
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise InvalidRequest(f"the form could not be read: {err.message}") from err
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("the form has no `file` field", param="file")
        fields: dict[str, object] = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        fields["timestamp_granularities[]"] = form.getlist("timestamp_granularities[]")
        try:
            parsed = TranscriptionForm.model_validate(fields)
        except ValidationError as err:
            raise RequestValidationError(err.errors()) from err
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > limit:
        raise too_large(limit)
    if not data:
        raise AudioError("the file is empty", code="empty-audio")
    return TranscriptionRequest(parsed, data)
