"""Typed dependencies for the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from core.services import Bot


def get_bot(connection: HTTPConnection) -> Bot:
    bot: Bot = connection.app.state.bot
    return bot


BotDep = Annotated[Bot, Depends(get_bot)]
