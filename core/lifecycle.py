"""Engines that start and close: one started, or closed again if starting failed."""

from __future__ import annotations

from typing import Protocol


class Startable(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


async def started(engine: Startable) -> None:
    """Start ``engine``; if that fails (or is cancelled), close what it had opened and raise."""
    try:
        await engine.start()
    except BaseException:
        await engine.aclose()
        raise
