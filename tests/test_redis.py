"""Several instances sharing through a real Redis: events reach every tab, counts add up, Redis may come and go."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from core.bus import RedisBus
from core.config import Settings
from core.hub import Hub
from tests.backends import RedisProcess
from tests.conftest import Served

pytestmark = pytest.mark.redis


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def subscribers(url: str, channel: str) -> int:
    client = aioredis.from_url(url)
    try:
        return int(dict(await client.pubsub_numsub(channel))[channel.encode()])
    finally:
        await client.aclose()


async def status(served: Served) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.url) as http:
        body: dict[str, Any] = (await http.get("/api/status")).json()
        return body


class RecordingSink:
    """An EventSink that keeps what it was sent."""

    def __init__(self) -> None:
        self.events: list[tuple[dict[str, object], bytes | None]] = []

    async def send(self, event: dict[str, object], binary: bytes | None = None) -> None:
        self.events.append((event, binary))

    async def close(self, code: int, reason: str) -> None:
        self.events.append(({"type": "closed", "code": code}, None))


def instance(make_settings: Callable[..., Settings], name: str, redis_url: str, prefix: str, db_url: str) -> Settings:
    return make_settings(
        {"redis": {"url": redis_url, "prefix": prefix, "instance_id": name}, "database": {"url": db_url}}
    )


async def test_alone_without_redis(server: Served, connect) -> None:
    await connect(server, "solo")
    body = await status(server)
    assert body["redis"] == {"configured": False, "connected": False, "error": None}
    assert body["active_connections"] == 1 and body["instances"] == 1 and body["status"] == "ok"
    assert body["instance"]["connections"] == 1 and body["instance"]["id"]


async def test_hubs_share_events_in_order_without_echo(redis_server_url: str, redis_prefix: str) -> None:
    hubs = [Hub(RedisBus(redis_server_url, instance_id=name, prefix=redis_prefix)) for name in ("a", "b")]
    sinks = [RecordingSink(), RecordingSink()]
    for hub, sink in zip(hubs, sinks, strict=True):
        hub.start()
        hub.attach("c1", sink)
    try:
        channel = f"{redis_prefix}:client:c1"
        await eventually(lambda: _equals(subscribers(redis_server_url, channel), 2), what="both subscribed")
        await hubs[0].publish("c1", {"type": "reply_delta", "text": "hi"}, b"\x00audio")
        for n in range(200):
            await hubs[0].publish("c1", {"type": "reply_delta", "text": str(n)})
        await hubs[1].publish("c1", {"type": "reply", "text": "from b"})
        await hubs[0].publish("elsewhere", {"type": "reply", "text": "nobody here"})

        async def all_arrived() -> bool:
            return len(sinks[1].events) == 202 and len(sinks[0].events) == 202

        await eventually(all_arrived, what="every event on both hubs")
        await asyncio.sleep(0.2)  # nothing more (no echo) arrives later
        for sink in sinks:
            assert len(sink.events) == 202, "each event reached each sink exactly once"
            texts = [e["text"] for e, _ in sink.events if e["type"] == "reply_delta"]
            assert texts == ["hi", *map(str, range(200))], "one client's events keep their order"
            assert [b for e, b in sink.events if e.get("text") == "hi"] == [b"\x00audio"], "binary frames travel too"

        async def counted() -> dict[str, object] | None:
            shared = await hubs[1].status()
            return shared if shared["active_connections"] == 2 else None

        shared = await eventually(counted, what="both instances counted")
        assert shared["instances"] == 2 and shared["instance"] == {"id": "b", "connections": 1, "clients": 1}
    finally:
        for hub in hubs:
            await hub.aclose()
    client = aioredis.from_url(redis_server_url)
    try:
        assert await client.smembers(f"{redis_prefix}:instances") == set(), "a closed instance leaves at once"
    finally:
        await client.aclose()


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


@pytest.mark.postgres
async def test_two_instances_share_turns_counts_and_clear(
    serve, make_settings, connect, redis_server_url: str, redis_prefix: str, postgres_url: str
) -> None:
    a = serve(instance(make_settings, "a", redis_server_url, redis_prefix, postgres_url))
    b = serve(instance(make_settings, "b", redis_server_url, redis_prefix, postgres_url))
    tab_a = await connect(a, "shared")
    tab_b = await connect(b, "shared")
    await connect(b, "someone-else")
    channel = f"{redis_prefix}:client:shared"
    await eventually(lambda: _equals(subscribers(redis_server_url, channel), 2), what="both instances subscribed")

    turn = await tab_a.chat("hello from a")
    assert turn[-1]["type"] == "reply"
    seen_on_b = await tab_b.until("reply")
    assert [e["type"] for e in seen_on_b] == [e["type"] for e in turn], "the tab on b saw the whole turn"
    assert seen_on_b[-1]["text"] == turn[-1]["text"] and seen_on_b[-1]["message_id"] == turn[-1]["message_id"]

    async def counted() -> dict[str, Any] | None:
        body = await status(a)
        return body if body["active_connections"] == 3 else None

    body = await eventually(counted, what="connections of both instances")
    assert body["instance"] == {"id": "a", "connections": 1, "clients": 1} and body["instances"] == 2
    assert body["redis"] == {"configured": True, "connected": True, "error": None} and body["status"] == "ok"
    await tab_b.send("/status")
    command = await tab_b.until("command")
    assert command[-1]["data"]["active_connections"] == 3 and command[-1]["data"]["instance"]["id"] == "b"

    await tab_b.send("/clear")
    cleared = await tab_a.until("cleared")
    assert cleared[-1]["deleted"] == 2, "the tab on a saw the clear made on b"
    after = await tab_a.chat("do you remember?")
    assert "(context 2 messages)" in after[-1]["text"], "the next reply, on the other instance, remembers nothing"
    assert (await tab_b.until("reply"))[-1]["text"] == after[-1]["text"]


@pytest.mark.postgres
async def test_redis_down_keeps_local_chat_and_recovers(
    serve, make_settings, connect, private_redis: RedisProcess, redis_prefix: str, postgres_url: str
) -> None:
    private_redis.start()
    a = serve(instance(make_settings, "a", private_redis.url, redis_prefix, postgres_url))
    b = serve(instance(make_settings, "b", private_redis.url, redis_prefix, postgres_url))
    tab_a = await connect(a, "weather")
    tab_b = await connect(b, "weather")
    channel = f"{redis_prefix}:client:weather"
    await eventually(lambda: _equals(subscribers(private_redis.url, channel), 2), what="both instances subscribed")
    await tab_a.chat("first")
    assert "first" in (await tab_b.until("reply"))[-1]["text"]

    private_redis.stop()

    async def reports_down() -> dict[str, Any] | None:
        body = await status(a)
        return body if not body["redis"]["connected"] else None

    body = await eventually(reports_down, what="the outage in /api/status")
    assert body["status"] == "degraded" and body["redis"]["configured"] and body["redis"]["error"]
    assert body["active_connections"] == 1, "this instance still counts its own"
    during = await tab_a.chat("while redis is away")
    assert during[-1]["type"] == "reply" and "while redis is away" in during[-1]["text"]

    private_redis.start()

    async def recovered() -> bool:
        return all([(await status(a))["redis"]["connected"], (await status(b))["redis"]["connected"]])

    await eventually(recovered, timeout=20, what="both instances reconnected")
    await eventually(lambda: _equals(subscribers(private_redis.url, channel), 2), what="subscribed again")
    await tab_a.chat("after the outage")
    assert "after the outage" in (await tab_b.until("reply"))[-1]["text"]
    body = await status(a)
    assert body["status"] == "ok" and body["redis"]["error"] is None


async def test_starts_and_serves_before_redis_is_up(
    serve, make_settings, connect, private_redis: RedisProcess, redis_prefix: str
) -> None:
    served = serve(make_settings({"redis": {"url": private_redis.url, "prefix": redis_prefix}}))
    tab = await connect(served, "early")
    turn = await tab.chat("is anyone there?")
    assert turn[-1]["type"] == "reply"
    body = await status(served)
    assert body["status"] == "degraded" and not body["redis"]["connected"] and "refused" in body["redis"]["error"]
    private_redis.start()

    async def connected() -> dict[str, Any] | None:
        body = await status(served)
        return body if body["redis"]["connected"] else None

    body = await eventually(connected, timeout=20, what="the first connection to Redis")
    assert body["status"] == "ok" and body["active_connections"] == 1 and body["instances"] == 1
