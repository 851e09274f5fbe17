"""The OpenAI-compatible REST API under ``/v1``: models, chat completions, transcriptions and speech."""

from __future__ import annotations

from fastapi import APIRouter

from web_bot.v1 import catalogue, chat, speech, transcriptions

router = APIRouter()
for part in (catalogue, chat, transcriptions, speech):
    router.include_router(part.router)
