"""The one place that builds concrete engines from settings, and the Bot that holds them for the server."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from core import __version__
from core.commands import Commands
from core.config import Settings
from core.errors import BotError
from core.history import SQLHistoryStore
from core.hub import Hub
from core.interfaces import HistoryStore, LLMEngine
from core.llm import build_llm
from core.models import EngineInfo
from core.pipeline import ChatPipeline

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Bot:
    """Everything a running server needs: settings, engines, history, the hub of connections, the pipeline."""

    settings: Settings
    history: HistoryStore
    llm: LLMEngine
    hub: Hub
    pipeline: ChatPipeline
    commands: Commands = field(init=False)
    started_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.commands = Commands(self)

    def engines(self) -> dict[str, dict[str, object]]:
        """What each stage runs, for `/api/status` and `/info`; never a secret."""
        stt = self.settings.stt
        tts = self.settings.tts
        return {
            "llm": self.llm.info().to_dict(),
            "stt": EngineInfo(stt.engine, stt.model or "default", False).to_dict(),
            "tts": EngineInfo(tts.engine, tts.voice or "default", False).to_dict(),
        }

    async def status(self) -> dict[str, Any]:
        """The server's health, as `/api/status` and `/status` report it."""
        db_connected = await self.history.ping()
        engines = self.engines()
        llm_available = bool(engines["llm"]["ready"]) and self.pipeline.llm_healthy
        return {
            "status": "ok" if db_connected and llm_available else "degraded",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "active_connections": self.hub.connection_count,
            "active_clients": self.hub.client_count,
            "llm_available": llm_available,
            "db_connected": db_connected,
            "config_loaded": self.settings.config_file is not None,
            **engines,
        }

    async def aclose(self) -> None:
        await self.pipeline.aclose()
        await self.llm.aclose()
        await self.history.aclose()


async def build_bot(settings: Settings) -> Bot:
    """Build and start every engine the settings name; close what was started if one fails."""
    history = SQLHistoryStore(settings.database_url, batch_max=settings.database.batch_max)
    await history.start()
    try:
        llm = await build_llm(settings.llm)
    except BotError:
        await history.aclose()
        raise
    hub = Hub()
    pipeline = ChatPipeline(
        llm=llm,
        history=history,
        hub=hub,
        system_prompt=settings.llm.system_prompt,
        history_messages=settings.llm.history_messages,
        delta_interval_ms=settings.server.delta_interval_ms,
    )
    bot = Bot(settings=settings, history=history, llm=llm, hub=hub, pipeline=pipeline)
    logger.info("engines: %s", {stage: info["engine"] for stage, info in bot.engines().items()})
    return bot
