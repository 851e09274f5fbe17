"""Hub: which sinks (browser tabs) each client has open, and delivery of a client's events to all of them.

With a bus (Redis), a client's events also reach its tabs on other instances, and the connection counts cover
every instance. Without one, the hub serves this instance's tabs alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from core.bus import RedisBus, default_instance_id
from core.interfaces import EventSink

logger = logging.getLogger(__name__)

# The close code of a tab that failed to take an event: 1011, "internal error" (RFC 6455 §7.4.1); the page
# reconnects and reloads its history.
TAB_FAILED = 1011


class Hub:
    """Delivers each client's events to every one of its open sinks; a failing sink never stops the others."""

    def __init__(self, bus: RedisBus | None = None) -> None:
        self._sinks: defaultdict[str, set[EventSink]] = defaultdict(set)
        self._closing: set[asyncio.Task[None]] = set()
        self._total = 0
        self._bus = bus
        self.instance_id = bus.instance_id if bus is not None else default_instance_id()

    @property
    def connection_count(self) -> int:
        """This instance's open sinks."""
        return self._total

    @property
    def client_count(self) -> int:
        return len(self._sinks)

    def tabs(self, client_id: str) -> int:
        return len(self._sinks.get(client_id, ()))

    def start(self) -> None:
        """Start the bus, if there is one (it connects in the background)."""
        if self._bus is not None:
            self._bus.start(self.deliver, lambda: (self._total, len(self._sinks)))

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._bus is not None:
            await self._bus.aclose()

    def attach(self, client_id: str, sink: EventSink) -> None:
        sinks = self._sinks[client_id]
        if sink not in sinks:
            sinks.add(sink)
            self._total += 1
            if self._bus is not None:
                if len(sinks) == 1:
                    self._bus.watch(client_id)
                self._bus.connections_changed()

    def detach(self, client_id: str, sink: EventSink) -> None:
        sinks = self._sinks.get(client_id)
        if sinks is None or sink not in sinks:
            return
        sinks.discard(sink)
        self._total -= 1
        if not sinks:
            del self._sinks[client_id]
        if self._bus is not None:
            if not sinks:
                self._bus.unwatch(client_id)
            self._bus.connections_changed()

    async def publish(self, client_id: str, event: dict[str, object], binary: bytes | None = None) -> None:
        """Send one event (and its binary frame) to every sink of the client, here and on other instances."""
        if self._bus is not None:
            # Queuing for the bus never blocks nor raises, so it goes first: a slow tab here delays no one there.
            self._bus.publish(client_id, event, binary)
        await self.deliver(client_id, event, binary)

    async def deliver(self, client_id: str, event: dict[str, object], binary: bytes | None = None) -> None:
        """Send one event to this instance's sinks of the client, concurrently."""
        sinks = self._sinks.get(client_id)
        if not sinks:
            return
        if len(sinks) == 1:
            await self._deliver(client_id, next(iter(sinks)), event, binary)
            return
        await asyncio.gather(*(self._deliver(client_id, sink, event, binary) for sink in list(sinks)))

    async def status(self) -> dict[str, object]:
        """Connections across every instance, this instance's own, and the bus's health, for `/api/status`."""
        own = {"id": self.instance_id, "connections": self._total, "clients": len(self._sinks)}
        if self._bus is None:
            return {
                "active_connections": self._total,
                "instance": own,
                "instances": 1,
                "redis": {"configured": False, "connected": False, "error": None},
            }
        counts = await self._bus.instances()
        total, instances = self._total, 1
        if counts is not None:
            # This instance's count is always the live one; the others' are as of their last heartbeat.
            others = [c for c in counts if c.id != self.instance_id]
            total += sum(c.connections for c in others)
            instances += len(others)
        return {"active_connections": total, "instance": own, "instances": instances, "redis": self._bus.status()}

    async def _deliver(self, client_id: str, sink: EventSink, event: dict[str, object], binary: bytes | None) -> None:
        try:
            await sink.send(event, binary)
        except Exception as err:
            if sink not in self._sinks.get(client_id, ()):
                return  # already dropped by an earlier event
            # A tab that missed an event must not look alive: it is closed (the page reconnects and reloads its
            # history), never left open without its events.
            logger.warning(
                "closing a connection of %s: a %s event could not be sent (%s)",
                client_id, event.get("type"), f"{type(err).__name__}: {err}" if str(err) else type(err).__name__,
            )
            self.detach(client_id, sink)
            task = asyncio.create_task(sink.close(TAB_FAILED, "the server could not send an event to this tab"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
