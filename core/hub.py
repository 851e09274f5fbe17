"""Hub: which sinks (browser tabs) each client has open, and delivery of a client's events to all of them."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from core.interfaces import EventSink

logger = logging.getLogger(__name__)


class Hub:
    """Delivers each client's events to every one of its open sinks; a failing sink never stops the others."""

    def __init__(self) -> None:
        self._sinks: defaultdict[str, set[EventSink]] = defaultdict(set)
        self._total = 0

    @property
    def connection_count(self) -> int:
        return self._total

    @property
    def client_count(self) -> int:
        return len(self._sinks)

    def tabs(self, client_id: str) -> int:
        return len(self._sinks.get(client_id, ()))

    def attach(self, client_id: str, sink: EventSink) -> None:
        sinks = self._sinks[client_id]
        if sink not in sinks:
            sinks.add(sink)
            self._total += 1

    def detach(self, client_id: str, sink: EventSink) -> None:
        sinks = self._sinks.get(client_id)
        if sinks is None or sink not in sinks:
            return
        sinks.discard(sink)
        self._total -= 1
        if not sinks:
            del self._sinks[client_id]

    async def publish(self, client_id: str, event: dict[str, object], binary: bytes | None = None) -> None:
        """Send one event (and its binary frame) to every sink of the client, concurrently."""
        sinks = self._sinks.get(client_id)
        if not sinks:
            return
        if len(sinks) == 1:
            await self._deliver(client_id, next(iter(sinks)), event, binary)
            return
        await asyncio.gather(*(self._deliver(client_id, sink, event, binary) for sink in list(sinks)))

    async def _deliver(self, client_id: str, sink: EventSink, event: dict[str, object], binary: bytes | None) -> None:
        try:
            await sink.send(event, binary)
        except Exception as err:
            logger.info("dropping a connection of %s: %s", client_id, err or type(err).__name__)
            self.detach(client_id, sink)
