"""RedisBus: what several instances of web-bot share through Redis — each client's events, and connection counts.

- Events: an instance publishes a client's events on ``<prefix>:client:<client_id>`` and subscribes to that channel
  while it holds a socket of that client, so a turn on one instance reaches the client's tabs on all the others.
  A message is a JSON header line ``{"o": origin, "e": event, "b": has_binary}`` followed by the binary frame; an
  instance skips its own messages, since its tabs had them first-hand.
- Connections: each instance keeps ``<prefix>:instance:<id>`` = ``{"connections", "clients"}`` with a TTL of three
  heartbeats, and its id in the set ``<prefix>:instances``; an instance that stops without saying so expires.
- Failures never reach local delivery: ``publish`` only queues (bounded; dropped while Redis is away), one task
  sends the queue in pipelined batches under a timeout, and a supervisor reconnects with backoff, subscribing
  again to every channel still wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core.config import RedisSettings

logger = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
QUEUE_MAX = 10_000  # events waiting to go out, and remote events waiting for one client's tabs
BATCH_MAX = 256

Deliver = Callable[[str, dict[str, object], bytes | None], Awaitable[None]]
Counts = Callable[[], tuple[int, int]]


def default_instance_id() -> str:
    """``<hostname>-<pid>-<random>``: unique per app, even for several apps in one process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def build_bus(settings: RedisSettings) -> RedisBus | None:
    """The bus the settings ask for; None when ``redis.url`` is empty (one instance, alone)."""
    if not settings.url:
        return None
    return RedisBus(
        settings.url,
        instance_id=settings.instance_id or default_instance_id(),
        prefix=settings.prefix,
        heartbeat_s=settings.heartbeat_s,
        timeout_s=settings.timeout_s,
    )


@dataclass(frozen=True, slots=True)
class InstanceCount:
    """One live instance and how many sockets and clients it holds."""

    id: str
    connections: int
    clients: int


class RedisBus:
    """Carries each client's events between instances and keeps every instance's connection count, via Redis."""

    def __init__(
        self, url: str, *, instance_id: str, prefix: str = "web-bot", heartbeat_s: float = 5.0, timeout_s: float = 1.0
    ) -> None:
        self.url = url
        self.instance_id = instance_id
        self._channel_prefix = f"{prefix}:client:"
        self._key_prefix = f"{prefix}:instance:"
        self._instance_key = self._key_prefix + instance_id
        self._instances_key = f"{prefix}:instances"
        self._heartbeat_s = heartbeat_s
        self._timeout_s = timeout_s
        self._deliver: Deliver | None = None
        self._counts: Counts = lambda: (0, 0)
        self._wanted: set[str] = set()
        self._changes: asyncio.Queue[str] = asyncio.Queue()
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_MAX)
        self._counts_changed = asyncio.Event()
        self._mailboxes: dict[str, deque[tuple[dict[str, object], bytes | None]]] = {}
        self._couriers: dict[str, asyncio.Task[None]] = {}
        self._client: aioredis.Redis | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._was_connected = False
        self.error: str | None = None
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return self._client is not None

    def status(self) -> dict[str, object]:
        return {"configured": True, "connected": self.connected, "error": self.error}

    def start(self, deliver: Deliver, counts: Counts) -> None:
        """Start connecting in the background; ``deliver`` sends a remote event to this instance's own sockets."""
        self._deliver = deliver
        self._counts = counts
        self._supervisor = asyncio.create_task(self._supervise(), name="redis-bus")

    async def aclose(self) -> None:
        """Leave: this instance's count is removed from Redis, and every task stops."""
        self._closing = True
        tasks = [t for t in (self._supervisor, *self._couriers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._supervisor = None

    def publish(self, client_id: str, event: dict[str, object], binary: bytes | None = None) -> None:
        """Queue one event for the other instances; never blocks, never raises."""
        if not self.connected:
            self.dropped += 1  # nothing to send it on: the client's tabs elsewhere miss it, as on a reconnect
            return
        try:
            header = json.dumps({"o": self.instance_id, "e": event, "b": binary is not None}, separators=(",", ":"))
            self._outbox.put_nowait((self._channel_prefix + client_id, header.encode() + b"\n" + (binary or b"")))
        except asyncio.QueueFull:
            self._drop("the outgoing queue is full")
        except (TypeError, ValueError) as err:
            logger.error("an event of %s cannot be sent to other instances: %s", client_id, err)

    def watch(self, client_id: str) -> None:
        """This instance now holds a socket of ``client_id``: receive its events from the others."""
        self._wanted.add(client_id)
        self._changes.put_nowait(client_id)

    def unwatch(self, client_id: str) -> None:
        """This instance's last socket of ``client_id`` closed."""
        self._wanted.discard(client_id)
        self._changes.put_nowait(client_id)

    def connections_changed(self) -> None:
        self._counts_changed.set()

    async def instances(self) -> list[InstanceCount] | None:
        """Every live instance's counts (this one's as Redis last heard them); None when Redis cannot say."""
        client = self._client
        if client is None:
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                ids = sorted(_text(i) for i in await client.smembers(self._instances_key))
                values = await client.mget([self._key_prefix + i for i in ids]) if ids else []
                gone = [i for i, v in zip(ids, values, strict=True) if v is None]
                if gone:
                    await client.srem(self._instances_key, *gone)
        except (RedisError, OSError, TimeoutError) as err:
            self.error = _describe(err)
            return None
        live = []
        for ident, value in zip(ids, values, strict=True):
            if value is not None:
                data = json.loads(value)
                live.append(InstanceCount(ident, int(data["connections"]), int(data["clients"])))
        return live

    def _drop(self, reason: str) -> None:
        if self.dropped % 1000 == 0:
            logger.warning("dropping events for other instances: %s (%d dropped so far)", reason, self.dropped)
        self.dropped += 1

    async def _supervise(self) -> None:
        backoff = MIN_BACKOFF_S
        while True:
            self._was_connected = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # any failure of Redis or the network ends this session, never the server
                reason = _describe(err)
                if reason != self.error:
                    logger.warning("redis at %s unavailable: %s", _safe_url(self.url), reason)
                self.error = reason
            backoff = MIN_BACKOFF_S if self._was_connected else min(backoff * 2, MAX_BACKOFF_S)
            await asyncio.sleep(backoff)

    async def _session(self) -> None:
        """One connection's life: connect, subscribe, then run until something fails."""
        client = aioredis.from_url(
            self.url,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
            retry=Retry(NoBackoff(), 0),  # the supervisor retries, with backoff
            health_check_interval=max(1, int(self._heartbeat_s)),
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        subscribed: set[str] = set()
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.timeout(self._timeout_s * 3):
                await client.ping()
                await pubsub.connect()  # type: ignore[no-untyped-call]
                while not self._changes.empty():
                    self._changes.get_nowait()
                await self._follow(pubsub, subscribed, set(self._wanted))
                await self._beat(client)
            self._client = client
            self._was_connected = True
            recovered = " again" if self.error else ""
            logger.info("redis bus connected%s to %s as %s", recovered, _safe_url(self.url), self.instance_id)
            self.error = None
            tasks = [
                asyncio.create_task(self._listen(pubsub), name="redis-bus-listen"),
                asyncio.create_task(self._send(client), name="redis-bus-send"),
                asyncio.create_task(self._heartbeat(client), name="redis-bus-heartbeat"),
                asyncio.create_task(self._subscriptions(pubsub, subscribed), name="redis-bus-subscribe"),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise ConnectionError("a redis bus task ended")
        finally:
            self._client = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            while not self._outbox.empty():
                self._outbox.get_nowait()
                self.dropped += 1
            if self._closing:
                await self._leave(client)
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _leave(self, client: aioredis.Redis) -> None:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                await client.delete(self._instance_key)
                await client.srem(self._instances_key, self.instance_id)

    async def _follow(self, pubsub: PubSub, subscribed: set[str], changed: set[str]) -> None:
        """Subscribe to the channels of clients now wanted, unsubscribe from those no longer."""
        add = [self._channel_prefix + c for c in changed if c in self._wanted and c not in subscribed]
        remove = [self._channel_prefix + c for c in changed if c not in self._wanted and c in subscribed]
        if add:
            await pubsub.subscribe(*add)
        if remove:
            await pubsub.unsubscribe(*remove)
        subscribed.update(c for c in changed if c in self._wanted)
        subscribed.difference_update(c for c in changed if c not in self._wanted)

    async def _subscriptions(self, pubsub: PubSub, subscribed: set[str]) -> None:
        while True:
            changed = {await self._changes.get()}
            while not self._changes.empty():
                changed.add(self._changes.get_nowait())
            async with asyncio.timeout(self._timeout_s):
                await self._follow(pubsub, subscribed, changed)

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=self._heartbeat_s
            )
            if message is not None and message.get("type") == "message":
                self._receive(message["channel"], message["data"])

    def _receive(self, channel: bytes, data: bytes) -> None:
        client_id = channel.decode()[len(self._channel_prefix) :]
        header, _, binary = data.partition(b"\n")
        try:
            meta = json.loads(header)
            origin, event, has_binary = meta["o"], meta["e"], meta["b"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed message on %s", channel.decode(errors="replace"))
            return
        if origin == self.instance_id:
            return
        box = self._mailboxes.setdefault(client_id, deque())
        if len(box) >= QUEUE_MAX:
            self._drop(f"the tabs of {client_id} are not keeping up")
            return
        box.append((event, binary if has_binary else None))
        if client_id not in self._couriers:
            self._couriers[client_id] = asyncio.create_task(self._courier(client_id), name=f"redis-bus-{client_id}")

    async def _courier(self, client_id: str) -> None:
        """Deliver one client's remote events in order; other clients' events never wait for these."""
        box = self._mailboxes[client_id]
        try:
            while box:
                event, binary = box.popleft()
                assert self._deliver is not None
                await self._deliver(client_id, event, binary)
        finally:
            del self._couriers[client_id]
            if not box:
                self._mailboxes.pop(client_id, None)

    async def _send(self, client: aioredis.Redis) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < BATCH_MAX and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            async with client.pipeline(transaction=False) as pipe:
                for channel, payload in batch:
                    pipe.publish(channel, payload)
                # Each PUBLISH stands alone: one that Redis refuses costs only its own event, never the batch's.
                results = await pipe.execute(raise_on_error=False)
            for (channel, _), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    self.dropped += 1
                    logger.warning("an event on %s was refused by Redis: %s", _text(channel), _describe(result))

    async def _heartbeat(self, client: aioredis.Redis) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_s):
                    await self._counts_changed.wait()
                await asyncio.sleep(0.05)  # a burst of connections makes one write, not hundreds
            self._counts_changed.clear()
            await self._beat(client)

    async def _beat(self, client: aioredis.Redis) -> None:
        connections, clients = self._counts()
        async with client.pipeline(transaction=True) as pipe:
            value = json.dumps({"connections": connections, "clients": clients})
            pipe.set(self._instance_key, value, px=int(self._heartbeat_s * 3000))
            pipe.sadd(self._instances_key, self.instance_id)
            await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
