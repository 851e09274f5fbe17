"""Lanes: each client's jobs run one after another, in order, while other clients' lanes run alongside.

A lane exists only while it has work, so idle clients cost nothing. A job is any coroutine (a turn, ``/clear``); the
turn being run knows itself whether a barge-in may cut it (``core.turn``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Lane:
    jobs: deque[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    current: asyncio.Task[Any] | None = None


class Lanes:
    """One lane per client with work; ``run`` queues a job in its client's lane."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}

    def __len__(self) -> int:
        return len(self._lanes)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._lanes

    def run(self, client_id: str, job: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``job`` in the client's lane, after everything queued before it."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        lane = self._lanes.get(client_id)
        if lane is None:
            lane = self._lanes[client_id] = _Lane()
        lane.jobs.append((job, future))
        if lane.task is None:
            lane.task = asyncio.create_task(self._drain(client_id, lane), name=f"lane-{client_id}")
        return future

    def queued(self, client_id: str) -> int:
        """How many of the client's jobs wait behind the one running."""
        lane = self._lanes.get(client_id)
        return len(lane.jobs) if lane is not None else 0

    async def aclose(self, timeout_s: float | None = None) -> bool:
        """Wait for every lane to run out of work, at most ``timeout_s`` seconds (None: no limit); whether they did.
        Work queued meanwhile is waited for too."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while tasks := [lane.task for lane in self._lanes.values() if lane.task is not None]:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(tasks, timeout=left)
        return True

    def cancel(self) -> int:
        """Cancel every job: the running ones are cancelled (each handles its cancellation: a turn stores what it
        has), the queued ones never start and their futures are cancelled. Returns how many jobs were cancelled."""
        cancelled = 0
        for lane in self._lanes.values():
            while lane.jobs:
                _, future = lane.jobs.popleft()
                future.cancel()
                cancelled += 1
            if lane.current is not None and not lane.current.done():
                lane.current.cancel()
                cancelled += 1
        return cancelled

    async def _drain(self, client_id: str, lane: _Lane) -> None:
        try:
            while lane.jobs:
                job, future = lane.jobs.popleft()
                lane.current = asyncio.ensure_future(job())
                await asyncio.wait([lane.current])
                if future.done():
                    continue
                if lane.current.cancelled():
                    future.cancel()
                elif (exc := lane.current.exception()) is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(lane.current.result())
        finally:
            lane.current = None
            lane.task = None
            if not lane.jobs:
                self._lanes.pop(client_id, None)
