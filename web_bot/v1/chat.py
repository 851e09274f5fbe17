"""``POST /v1/chat/completions``: one reply of the configured model to the messages sent, whole or streamed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response

from core.openai_api.chat import Completion, CompletionShape, events
from web_bot.deps import AuthDep, BotDep
from web_bot.v1.catalogue import CatalogueDep
from web_bot.v1.deps import ApiPrincipalDep
from web_bot.v1.errors import V1Route
from web_bot.v1.schemas import ChatBody
from web_bot.v1.streaming import StoppedOnDisconnect, unless_gone

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", route_class=V1Route)


@router.post("/chat/completions")
async def chat_completions(
    request: Request,
    body: ChatBody, principal: ApiPrincipalDep, bot: BotDep, auth: AuthDep, catalogue: CatalogueDep
) -> Response:
    """Counted as one message against the caller's rate. A failure before the first words is the response's
    status; one while streaming is an ``error`` event."""
    model = catalogue.require(body.model, "chat")
    body.refuse_unsupported()
    messages = body.chat_messages()
    await auth.count_message(principal)
    completion = Completion(
        # No timeout of its own: the engine bounds its waits (llm.timeout_s) but not a queue behind a busy local model,
        # where a request waits its turn as the page's do.
        bot.llm, messages, timeout_s=None, max_tokens=body.max_reply_tokens, stop=body.stops
    )
    completion.check_fits()
    shape = CompletionShape(model.id)
    deltas = completion.deltas()
    try:
        # A caller who hangs up while the model reads the prompt or writes the whole reply frees it at once.
        first = await unless_gone(request, anext(deltas, None) if body.stream else _drained(deltas))
    except BaseException:
        await deltas.aclose()
        raise
    if not body.stream:
        usage = completion.usage()
        logger.info("chat completion %s: %d tokens in, %d out", shape.id, usage["prompt_tokens"],
                    usage["completion_tokens"])
        return JSONResponse(shape.whole(completion))
    stream = events(completion, deltas, first, shape, include_usage=body.include_usage)
    return StoppedOnDisconnect(stream, media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def _drained(deltas: AsyncIterator[str]) -> None:
    async for _ in deltas:
        pass
