"""Abuse limits: rates per user and per client address (the ``limits`` library, moving windows), and caps on
open sockets; in memory for one instance, in Redis (``redis.url``) for several, so a limit holds across them.

Rates refuse with ``RateLimited`` carrying ``retry_after_s``: when the oldest hit in the full window expires.
Audio seconds are checked before a turn and counted after it (its length is known only once decoded), so a user
can pass the limit by at most one utterance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from core.config import LimitsSettings
from core.errors import RateLimited

logger = logging.getLogger(__name__)

LEASE_S = 60.0  # a socket slot not renewed for this long is freed (its instance died)
SOCKETS_RETRY_S = 10.0  # what a refused socket is told to wait


class RateLimits:
    """Named rates from ``LimitsSettings`` (``sign_in``, ``messages``, ``messages_per_address``, ``audio_seconds``)."""

    def __init__(self, settings: LimitsSettings, *, redis_url: str = "", prefix: str = "web-bot") -> None:
        self._enabled = settings.enabled
        self._slow_after = settings.sign_in_slow_after
        self._rules: dict[str, list[RateLimitItem]] = {
            name: parse_many(getattr(settings, name)) if getattr(settings, name) else []
            for name in ("sign_in", "sign_in_per_address", "messages", "messages_per_address", "audio_seconds")
        }
        self._storage: Storage
        self._pool: aioredis.ConnectionPool | None = None
        if redis_url:
            # Our own pool, so closing it at shutdown leaves no connection behind.
            self._pool = aioredis.ConnectionPool.from_url(redis_url, socket_timeout=1.0)
            self._storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", key_prefix=f"{prefix}:limits",
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
        else:
            self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)

    @property
    def shared(self) -> bool:
        return isinstance(self._storage, RedisStorage)

    async def check(self, rule: str, key: str, cost: int = 1) -> None:
        """Raise ``RateLimited`` if ``cost`` more would pass ``rule`` for ``key``; count nothing."""
        async with self._failing_open(rule):
            await self._refuse_if(rule, key, cost, count=False)

    async def hit(self, rule: str, key: str, cost: int = 1) -> None:
        """Count ``cost`` against ``rule`` for ``key``, or raise ``RateLimited`` (counting nothing) if it would pass."""
        async with self._failing_open(rule):
            await self._refuse_if(rule, key, cost, count=True)

    async def spend(self, rule: str, key: str, cost: int) -> None:
        """Count ``cost`` whatever it makes of the limit (what was already used, like seconds of speech heard)."""
        if not self._enabled or cost <= 0:
            return
        async with self._failing_open(rule):
            await self._spend(rule, key, cost)

    async def _spend(self, rule: str, key: str, cost: int) -> None:
        for item in self._rules[rule]:
            # A moving window refuses a hit that would pass it; count what fits, and the rest is the next one's.
            room = min(cost, (await self._limiter.get_window_stats(item, rule, key)).remaining)
            if room > 0:
                await self._limiter.hit(item, rule, key, cost=room)

    async def used(self, rule: str, key: str) -> int:
        """How much of ``rule``'s tightest window ``key`` has used."""
        if not self._enabled or not self._rules[rule]:
            return 0
        item = self._rules[rule][0]
        try:
            stats = await self._limiter.get_window_stats(item, rule, key)
        except (RedisError, StorageError, OSError) as err:
            logger.warning("limit %s not read, its store failed: %s", rule, type(err).__name__)
            return 0
        return item.amount - stats.remaining

    async def sign_in_delay(self, name_key: str) -> float:
        """Seconds to wait before answering a sign-in, growing with the attempts counted for its name (a success
        clears them): nothing for the first ``sign_in_slow_after``, then 0.5 s, 1 s, 2 s, up to 4 s."""
        failures = await self.used("sign_in", name_key) - 1  # this attempt is counted already
        if failures < self._slow_after or failures == 0:
            return 0.0
        return float(min(0.5 * 2 ** (failures - self._slow_after), 4.0))

    async def forget(self, rule: str, key: str) -> None:
        """Clear ``key``'s count for ``rule`` (a successful sign-in clears the failures of that username)."""
        if not self._enabled:
            return
        async with self._failing_open(rule):
            for item in self._rules[rule]:
                await self._limiter.clear(item, rule, key)

    @contextlib.asynccontextmanager
    async def _failing_open(self, rule: str) -> AsyncIterator[None]:
        # A limit guards against abuse; while its store (Redis) is away, nobody is refused for it.
        try:
            yield
        except (RedisError, StorageError, OSError) as err:
            logger.warning("limit %s not applied, its store failed: %s", rule, type(err).__name__)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def _refuse_if(self, rule: str, key: str, cost: int, *, count: bool) -> None:
        if not self._enabled:
            return
        items = self._rules[rule]
        if count:
            # Each hit is atomic (a lock in memory, a script in Redis) and says whether it fitted: requests that
            # arrive together cannot all pass a test before any of them counts.
            refused = [item for item in items if not await self._limiter.hit(item, rule, key, cost=cost)]
        else:
            refused = [item for item in items if not await self._limiter.test(item, rule, key, cost=cost)]
        if refused:
            raise self._refusal(rule, refused, await self._waits(rule, key, refused))

    async def _waits(self, rule: str, key: str, items: Sequence[RateLimitItem]) -> float:
        now = time.time()
        resets = [(await self._limiter.get_window_stats(item, rule, key)).reset_time for item in items]
        return max(1.0, max(resets) - now)

    @staticmethod
    def _refusal(rule: str, items: Sequence[RateLimitItem], wait_s: float) -> RateLimited:
        what = {"sign_in": "sign-in attempts", "sign_in_per_address": "sign-in attempts", "messages": "messages",
                "messages_per_address": "messages",
                "audio_seconds": "seconds of audio"}[rule]
        limit = items[0]
        return RateLimited(
            f"too many {what}: the limit is {limit.amount} per {limit.get_expiry()} s; try again in "
            f"{wait_s:.0f} s",
            retry_after_s=wait_s,
        )


_TAKE = """
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  local most = tonumber(ARGV[4 + i])
  if most > 0 and redis.call('ZCARD', key) >= most then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  redis.call('EXPIRE', key, ARGV[4])
end
return 0
"""


class SocketSlots:
    """Caps on open sockets per key (``user:<id>``, ``addr:<ip>``). In Redis, each key is a sorted set of slot ids
    scored by lease expiry; every instance renews the leases of its open sockets, so a dead instance's slots expire
    within ``LEASE_S``."""

    def __init__(self, *, redis_url: str = "", prefix: str = "web-bot", enabled: bool = True) -> None:
        self._enabled = enabled
        self._prefix = prefix
        self._redis = aioredis.from_url(redis_url, socket_timeout=1.0) if redis_url else None
        self._local: dict[str, set[str]] = {}
        self._held: dict[str, list[str]] = {}  # slot id -> its keys
        self._renewer: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._redis is not None:
            self._renewer = asyncio.create_task(self._renew(), name="socket-slots")

    async def take(self, caps: Sequence[tuple[str, int]]) -> str:
        """A slot under every ``(key, most)`` cap (``most`` 0: none), or ``RateLimited``."""
        slot = secrets.token_hex(8)
        caps = [(key, most) for key, most in caps if self._enabled]
        if self._redis is None:
            for key, most in caps:
                if most and len(self._local.get(key, ())) >= most:
                    raise self._refusal(most)
            for key, _ in caps:
                self._local.setdefault(key, set()).add(slot)
        else:
            keys = [self._key(key) for key, _ in caps]
            now = time.time()
            try:
                full = await self._redis.eval(
                    _TAKE, len(keys), *keys, now, now + LEASE_S, slot, round(LEASE_S * 2), *(m for _, m in caps)
                )
            except RedisError as err:
                logger.warning("socket caps not checked, Redis failed: %s", type(err).__name__)
                full = 0  # a cap is a guard, not a reason to refuse everyone while Redis is away
            if full:
                raise self._refusal(caps[int(full) - 1][1])
        self._held[slot] = [key for key, _ in caps]
        return slot

    async def give_back(self, slot: str) -> None:
        keys = self._held.pop(slot, [])
        if self._redis is None:
            for key in keys:
                members = self._local.get(key)
                if members is not None:
                    members.discard(slot)
                    if not members:
                        del self._local[key]
            return
        with contextlib.suppress(RedisError):
            for key in keys:
                await self._redis.zrem(self._key(key), slot)

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for slot in list(self._held):
            await self.give_back(slot)
        if self._redis is not None:
            await self._redis.aclose()

    async def _renew(self) -> None:
        assert self._redis is not None
        while True:
            await asyncio.sleep(LEASE_S / 3)
            expiry = time.time() + LEASE_S
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for slot, keys in self._held.items():
                        for key in keys:
                            pipe.zadd(self._key(key), {slot: expiry}, xx=True)
                    await pipe.execute()
            except RedisError as err:
                logger.warning("renewing socket leases failed: %s", type(err).__name__)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:sockets:{key}"

    @staticmethod
    def _refusal(most: int) -> RateLimited:
        return RateLimited(f"too many open connections: at most {most}", retry_after_s=SOCKETS_RETRY_S)
