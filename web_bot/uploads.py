"""Reading an uploaded audio file with a hard size limit: reading stops as soon as the limit is passed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from core.errors import AudioError, ProtocolError
from web_bot.protocol import valid_client_id

# Room for the multipart boundaries and the small fields beside the file.
MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class Upload:
    client_id: str
    data: bytes
    filename: str | None


def too_large(limit: int) -> AudioError:
    return AudioError(f"the file is larger than the {limit / 1e6:g} MB limit", code="audio-too-large")


def limited_body(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The request's body, refused (``audio-too-large``) as soon as it declares or passes ``limit`` file bytes and
    the multipart overhead: nothing past the limit is read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise too_large(limit)
    return _limited(request.stream(), limit)


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit + MULTIPART_OVERHEAD:
            raise too_large(limit)
        yield chunk


async def read_upload(request: Request, limit: int) -> Upload:
    """Parse ``file`` and the optional ``client_id`` from a multipart body of at most ``limit`` file bytes."""
    body = limited_body(request, limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ProtocolError("send the audio as multipart/form-data with a `file` field", code="bad-request")
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=4)
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise ProtocolError(f"the form could not be read: {err.message}", code="bad-request") from err
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ProtocolError("the form has no `file` field", code="bad-request")
        data = await upload.read()
        if len(data) > limit:
            raise too_large(limit)
        if not data:
            raise AudioError("the file is empty", code="empty-audio")
        client_id = form.get("client_id")
        if client_id is None or client_id == "":
            client_id = f"u-{uuid.uuid4().hex}"
        if not isinstance(client_id, str) or not valid_client_id(client_id):
            raise ProtocolError("client_id must be 1-64 characters of A-Z a-z 0-9 _ -", code="bad-client-id")
        return Upload(client_id, data, upload.filename)
    finally:
        await form.close()
