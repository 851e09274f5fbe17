"""TurnOutlet: the one way a turn's events leave — typed events, stamped with the turn's id at the edge, then sent
to every tab of the turn's client (``core.hub``)."""

from __future__ import annotations

import secrets

from core.events import Event
from core.hub import Hub


def new_turn_id() -> str:
    """A turn's id: 12 random hex digits (48 bits: no two turns a server will see share one)."""
    return secrets.token_hex(6)


class TurnOutlet:
    """Sends one turn's events: each carries ``turn_id``, so a page can tell two turns' events apart."""

    def __init__(self, hub: Hub, client_id: str, turn_id: str) -> None:
        self._hub = hub
        self.client_id = client_id
        self.turn_id = turn_id

    async def send(self, event: Event, binary: bytes | None = None) -> None:
        await self._hub.publish(self.client_id, {**event.to_dict(), "turn_id": self.turn_id}, binary)
