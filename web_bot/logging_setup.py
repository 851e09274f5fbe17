"""Logging for the server: the console and a rotating ``web_bot.log``, configured by the app factory."""

from __future__ import annotations

import logging.config
from pathlib import Path

from core.config import LoggingSettings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
