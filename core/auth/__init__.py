"""Accounts, sessions, API tokens, conversation ownership and abuse limits (``build_auth`` makes them)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from core.auth.accounts import AccountStore
from core.auth.limits import RateLimits, SocketSlots
from core.auth.models import ApiToken, Principal, User
from core.auth.passwords import Passwords
from core.auth.service import Auth, Credentials, is_loopback
from core.auth.sessions import RedisSessionStore, SessionStore, SQLSessionStore
from core.config import Settings

__all__ = ["ApiToken", "Auth", "Credentials", "Principal", "User", "build_auth", "is_loopback"]

logger = logging.getLogger(__name__)


async def build_auth(settings: Settings, engine: AsyncEngine) -> Auth:
    """Auth on the history database ``engine``; sessions and limits in Redis when ``redis.url`` is set."""
    auth, redis = settings.auth, settings.redis
    idle_s, max_s = auth.session_idle_h * 3600, auth.session_max_h * 3600
    sessions: SessionStore
    if redis.url:
        sessions = RedisSessionStore(redis.url, prefix=redis.prefix, idle_s=idle_s, max_s=max_s,
                                     timeout_s=redis.timeout_s)
    else:
        sessions = SQLSessionStore(engine, idle_s=idle_s, max_s=max_s)
    limits = RateLimits(settings.limits, redis_url=redis.url, prefix=redis.prefix)
    slots = SocketSlots(redis_url=redis.url, prefix=redis.prefix, enabled=settings.limits.enabled)
    passwords = await asyncio.to_thread(Passwords)
    service = Auth(settings, AccountStore(engine), sessions, passwords, limits, slots)
    await service.start()
    if auth.mode == "none" and auth.allow_anonymous:
        logger.warning("auth.mode is none and auth.allow_anonymous is set: anyone who can reach this server can use "
                       "it, and list, read, export and delete every conversation")
    logger.info("auth: mode %s, sessions in %s, limits %s", auth.mode, "Redis" if redis.url else "the database",
                "shared through Redis" if limits.shared else "per instance")
    return service
