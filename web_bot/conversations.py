"""Routes for a user's conversations: list, create, rename, delete, export, import, search, recordings."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from core.conversations import Conversations
from core.errors import AuthError, ProtocolError
from web_bot.deps import ROW_ID_MAX, AuthDep, BotDep, PrincipalDep, RowId
from web_bot.protocol import valid_client_id

router = APIRouter()

MAX_IMPORT_BYTES = 20_000_000


def get_conversations(bot: BotDep) -> Conversations:
    assert bot.conversations is not None
    return bot.conversations


ConversationsDep = Annotated[Conversations, Depends(get_conversations)]


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=1000)


class Rename(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(max_length=1000)


def checked(client_id: str) -> str:
    if not valid_client_id(client_id):
        raise ProtocolError("client_id must be 1-64 characters of A-Z a-z 0-9 _ -", code="bad-client-id")
    return client_id


@router.get("/api/conversations")
async def list_conversations(
    principal: PrincipalDep,
    auth: AuthDep,
    conversations: ConversationsDep,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=ROW_ID_MAX),
) -> dict[str, Any]:
    page = await conversations.of_user(auth.owner_key(principal), limit=limit, offset=offset)
    more = offset + len(page) if len(page) == limit else None
    return {"conversations": [c.to_dict() for c in page], "next_offset": more}


@router.post("/api/conversations", status_code=201)
async def create_conversation(
    body: NewConversation, principal: PrincipalDep, auth: AuthDep, conversations: ConversationsDep
) -> dict[str, Any]:
    return (await conversations.create(auth.owner_key(principal), body.title)).to_dict()


@router.patch("/api/conversations/{client_id}")
async def rename_conversation(
    client_id: str, body: Rename, principal: PrincipalDep, auth: AuthDep, conversations: ConversationsDep
) -> dict[str, Any]:
    await auth.own_conversation(principal, checked(client_id))
    return (await conversations.rename(client_id, body.title)).to_dict()


@router.delete("/api/conversations/{client_id}", status_code=204)
async def delete_conversation(
    client_id: str, principal: PrincipalDep, auth: AuthDep, conversations: ConversationsDep
) -> None:
    await auth.own_conversation(principal, checked(client_id))
    await conversations.delete(client_id)


@router.get("/api/conversations/{client_id}/export")
async def export_conversation(
    client_id: str,
    principal: PrincipalDep,
    auth: AuthDep,
    conversations: ConversationsDep,
    format: Literal["json", "md", "txt"] = Query("json"),
) -> Response:
    await auth.own_conversation(principal, checked(client_id))
    text, media_type = await conversations.export(client_id, format)
    return Response(text, media_type=media_type, headers=_attachment(f"conversation-{client_id}.{format}"))


@router.get("/api/export")
async def export_everything(
    principal: PrincipalDep,
    auth: AuthDep,
    conversations: ConversationsDep,
    recordings: bool = Query(False),
) -> Response:
    archive = await conversations.export_all(auth.owner_key(principal), recordings=recordings)
    return Response(archive, media_type="application/zip", headers=_attachment("web-bot-conversations.zip"))


@router.post("/api/conversations/import", status_code=201)
async def import_conversation(
    request: Request, principal: PrincipalDep, auth: AuthDep, conversations: ConversationsDep
) -> dict[str, Any]:
    owner = auth.owner_key(principal)
    body = await _json_body(request)
    return (await conversations.import_json(owner, body)).to_dict()


@router.get("/api/recordings/{message_id}")
async def recording(
    message_id: RowId, principal: PrincipalDep, auth: AuthDep, conversations: ConversationsDep
) -> FileResponse:
    """A user's recording, for its owner only; HTTP range requests are answered, so players can seek."""
    message = await conversations.message(message_id)
    if message is None:
        raise AuthError("no such recording", code="not-found")
    try:
        await auth.own_conversation(principal, message.client_id)
    except AuthError as err:  # someone else's message is "no such recording" too: which ids exist is not said
        if err.code == "not-found":
            raise AuthError("no such recording", code="not-found") from None
        raise
    path = conversations.recording_path(message)
    if path is None:
        raise AuthError("no such recording", code="not-found")
    media = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".webm": "audio/webm",
             ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".flac": "audio/flac", ".opus": "audio/ogg"}
    return FileResponse(path, media_type=media.get(path.suffix.lower(), "application/octet-stream"),
                        headers={"cache-control": "private, max-age=3600"})


@router.get("/api/search")
async def search(
    principal: PrincipalDep,
    auth: AuthDep,
    conversations: ConversationsDep,
    q: str = Query(min_length=1, max_length=500),
    limit: int = Query(20, ge=1, le=100),
    before: int | None = Query(None, ge=1, le=ROW_ID_MAX),
) -> dict[str, Any]:
    """Full-text search over the caller's own messages (every conversation's in mode none), newest first."""
    owner = auth.owner_key(principal)
    hits = await conversations.search(owner, q, limit=limit, before_id=before)
    return {"query": q, "results": [hit.to_dict() for hit in hits]}


def _attachment(filename: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"}


async def _json_body(request: Request) -> object:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_IMPORT_BYTES:
        raise ProtocolError(f"an import is at most {MAX_IMPORT_BYTES // 1_000_000} MB", code="bad-request")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_IMPORT_BYTES:
            raise ProtocolError(f"an import is at most {MAX_IMPORT_BYTES // 1_000_000} MB", code="bad-request")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as err:  # RecursionError: arrays nested thousands deep
        raise ProtocolError("the import is not JSON (or is nested too deep)", code="bad-request") from err

