"""Logging for the server: the console and a rotating ``web_bot.log``, configured by the app factory."""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path

from core.config import LoggingSettings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# uvicorn's websockets-sansio protocol (its default with websockets >= 14) never marks a handshake refused with an
# HTTP response (ASGI's websocket.http.response, which /v1/realtime sends with OpenAI's error body) as complete, and
# so logs this ERROR after every such refusal, which the refusing route has already logged with its cause.
# uvicorn's wsproto protocol does mark it. Only this exact message is dropped.
UVICORN_DENIAL_NOISE = "ASGI callable returned without completing handshake."


class DenialNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != UVICORN_DENIAL_NOISE


def configure_logging(settings: LoggingSettings) -> None:
    Path(settings.file).parent.mkdir(parents=True, exist_ok=True)
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": FORMAT}},
            "handlers": {
                "console": {"class": "logging.StreamHandler", "formatter": "plain"},
                "file": {
                    "class": "logging.handlers.RotatingFileHandler",
                    "formatter": "plain",
                    "filename": settings.file,
                    "maxBytes": settings.max_bytes,
                    "backupCount": settings.backup_count,
                    "encoding": "utf-8",
                },
            },
            "loggers": {
                "core": {"level": settings.level},
                "web_bot": {"level": settings.level},
                "uvicorn": {"level": "INFO"},
                "uvicorn.access": {"level": "WARNING"},
            },
            "root": {"level": "WARNING", "handlers": ["console", "file"]},
        }
    )
    # uvicorn installs its own handlers before importing the app; route its records through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DenialNoise) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(DenialNoise())
