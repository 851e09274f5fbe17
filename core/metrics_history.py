"""MetricsHistory: the server's own metrics sampled in the background, kept for a bounded time, for the admin page.

Every ``interval_s`` (``metrics.history_interval_s``, 10 s) one point goes into a SeriesRing of
``keep_s / interval_s`` points (``metrics.history_keep_h`` = 24: 8640). Counters and histograms are read from the
server's Prometheus registry and differenced over the minute before each point, as ``increase(…[1m])`` and
``histogram_quantile`` would; health and connections are asked of the bot. The series, by key:

- ``turns/<status>``: turns ended in that minute (``ok``, ``error``, ``interrupted``; all sources together);
- ``errors/<code>``: errors sent to clients in that minute (a value only while there are some: none means zero);
- ``latency_ms/<stage>/p50|p90|p99``: percentiles of each stage of ``core.metrics.STAGES`` in milliseconds,
  interpolated within the histogram's buckets (``first_audio``: the end of the user's speech or message → the
  first audio sent); no value: no turn reached that stage in that minute;
- ``connections/<instance id>``: open sockets of each live instance (others' as of their last Redis heartbeat);
- ``health/<part>``: 1 ok, 0 failing, for ``status``, ``llm``, ``stt``, ``tts``, ``db``, ``redis`` (no value:
  not configured), and ``<stage> <engine>`` for each engine of a fallback chain (``webbot_engine_up``: 0 while it
  is skipped as down).

Memory is fixed: at most ``MAX_SERIES`` columns of float32 (24 h at 10 s: 8640 × (8 + 4 × 81) bytes, 2.9 MB at
worst, about 1 MB for one instance without errors). Error codes beyond ``MAX_CODES`` and instances beyond
``MAX_INSTANCES`` alive in the period are counted under ``other``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from core.bus import RedisBus
from core.hub import Hub
from core.metrics import STAGES
from core.timeseries import Reduce, SeriesRing, Window, downsample, highest, lowest, mean

logger = logging.getLogger(__name__)

WINDOW_S = 60.0  # each point counts and ranks what happened in the minute before it
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
HEALTH = ("status", "llm", "stt", "tts", "db", "redis")
MAX_STATUSES, MAX_CODES, MAX_INSTANCES, MAX_ENGINES = 6, 24, 16, 8
MAX_SERIES = MAX_STATUSES + MAX_CODES + MAX_INSTANCES + 3 + len(STAGES) * len(QUANTILES) + len(HEALTH) + MAX_ENGINES
MAX_POINTS = 720  # a longer window is averaged down to this many points (a chart is rarely wider)
OTHER = "other"
STATUS_KEYS = ("status", "version", "uptime_s", "active_connections", "instance", "instances", "redis",
               "llm_available", "db_connected", "llm", "stt", "tts")
# How runs of points merge when a window is downsampled: counts average, latencies and connections keep their
# highest, health its lowest (one failing sample in a run shows).
REDUCE: dict[str, Reduce] = {"turns": mean, "errors": mean, "latency_ms": highest, "connections": highest,
                             "health": lowest}


@dataclass(frozen=True, slots=True)
class Totals:
    """The registry's counters at one moment: turns by status, errors by code, each stage's cumulative buckets
    as ``(upper bound in seconds, count)`` pairs ending with ``inf``."""

    turns: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    engines_up: dict[str, float] = field(default_factory=dict)  # "<stage> <engine>" -> 1 in use, 0 down


def read_totals(registry: CollectorRegistry) -> Totals:
    """The counters of ``core.metrics.Metrics`` in ``registry`` (names as it registers them)."""
    totals = Totals()
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "webbot_turns_total":
                status = labels["status"]
                totals.turns[status] = totals.turns.get(status, 0.0) + sample.value
            elif sample.name == "webbot_errors_total":
                totals.errors[labels["code"]] = sample.value
            elif sample.name == "webbot_engine_up":  # core.fallback.ChainMetrics
                totals.engines_up[f"{labels['stage']} {labels['engine']}"] = sample.value
            elif sample.name == "webbot_stage_seconds_bucket":
                buckets.setdefault(labels["stage"], []).append((float(labels["le"]), sample.value))
    totals.buckets.update({stage: tuple(sorted(pairs)) for stage, pairs in buckets.items()})
    return totals


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """The ``q`` quantile of cumulative ``buckets`` (as ``histogram_quantile``: linear within the bucket it falls
    in; the highest finite bound if it falls beyond); NaN when they hold no observation."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def health_of(status: Mapping[str, Any]) -> dict[str, float]:
    """``/api/status`` as 1 (ok) and 0 (failing) by part; parts not configured are left out."""
    out = {
        "status": float(status.get("status") == "ok"),
        "llm": float(bool(status.get("llm_available"))),
        "db": float(bool(status.get("db_connected"))),
    }
    for stage in ("stt", "tts"):
        info = status.get(stage)
        if isinstance(info, Mapping) and info.get("engine") not in (None, "", "none"):
            out[stage] = float(bool(info.get("ready")))
    redis = status.get("redis")
    if isinstance(redis, Mapping) and redis.get("configured"):
        out["redis"] = float(bool(redis.get("connected")))
    return out


async def instance_connections(hub: Hub, bus: RedisBus | None) -> dict[str, int]:
    """Open sockets by instance id: this one's now, the others' as their last heartbeat told Redis."""
    counts = await bus.instances() if bus is not None else None
    others = {c.id: c.connections for c in counts or () if c.id != hub.instance_id}
    return {**others, hub.instance_id: hub.connection_count}


class MetricsHistory:
    """Samples the metrics every ``interval_s`` into a ring of ``keep_s`` (see the module's docstring)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        status: Callable[[], Awaitable[Mapping[str, Any]]],
        instances: Callable[[], Awaitable[Mapping[str, int]]],
        interval_s: float = 10.0,
        keep_s: float = 24 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval_s = interval_s
        self.keep_s = keep_s
        self.ring = SeriesRing(max(1, math.ceil(keep_s / interval_s)), MAX_SERIES)
        self.latest: dict[str, Any] = {}  # the last sample's /api/status (engines, instances, Redis)
        self._registry = registry
        self._status = status
        self._instances = instances
        self._clock = clock
        # Totals of the last minute's samples, the first being the minute's start: at first, the counters' zeros
        # (the history starts with the registry, before any turn).
        self._totals: deque[Totals] = deque([Totals()], maxlen=max(1, round(WINDOW_S / interval_s)) + 1)

    async def run(self) -> None:
        """Sample every ``interval_s`` until cancelled; a late sample is skipped rather than caught up on."""
        due = time.monotonic() + self.interval_s
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                await self.sample()
            except Exception as err:  # one failed sample (a database or Redis away) must not end the history
                logger.warning("metrics history: a sample failed: %s", err or type(err).__name__)
            due += self.interval_s
            if due <= time.monotonic():  # behind (a busy machine, a slow database): the missed samples are skipped
                due = time.monotonic() + self.interval_s

    async def sample(self) -> None:
        """Add one point now."""
        totals = await asyncio.to_thread(read_totals, self._registry)  # a few ms of prometheus_client: off the loop
        self._totals.append(totals)
        before = self._totals[0]
        status = await self._status()
        connections = await self._instances()
        values: dict[str, float] = {}
        turns = {"ok": 0.0, **{s: n - before.turns.get(s, 0.0) for s, n in totals.turns.items()}}
        for status_name, count in turns.items():
            self._add(values, "turns/", status_name, count, MAX_STATUSES)
        for code, total in totals.errors.items():
            count = total - before.errors.get(code, 0.0)
            if count > 0 or self.ring.last(f"errors/{code}") > 0:  # a last zero ends the line
                self._add(values, "errors/", code, count, MAX_CODES)
        for stage, buckets in totals.buckets.items():
            earlier = dict(before.buckets.get(stage, ()))
            window = [(bound, count - earlier.get(bound, 0.0)) for bound, count in buckets]
            for name, q in QUANTILES.items():
                value = quantile(q, window) * 1000
                if not math.isnan(value):
                    values[f"latency_ms/{stage}/{name}"] = value
        for instance, count in connections.items():
            self._add(values, "connections/", instance, float(count), MAX_INSTANCES)
        values.update({f"health/{part}": ok for part, ok in health_of(status).items()})
        engines = [key for key in self.ring.live("health/") if key.removeprefix("health/") not in HEALTH]
        for engine, up in totals.engines_up.items():
            key = f"health/{engine}"
            if key in engines or len(engines) < MAX_ENGINES:  # health is no sum: no "other" for engines
                values[key] = up
                engines += [] if key in engines else [key]
        self.latest = {key: status[key] for key in STATUS_KEYS if key in status}
        self.ring.append(self._clock(), values)

    def _add(self, values: dict[str, float], prefix: str, name: str, value: float, cap: int) -> None:
        key = prefix + name
        live = self.ring.live(prefix)
        if key not in live and key not in values and len(live) + _new(values, prefix, live) >= cap:
            key = prefix + OTHER
        values[key] = values.get(key, 0.0) + value

    async def view(self, window_s: float, max_points: int = MAX_POINTS) -> dict[str, Any]:
        """The last ``window_s`` seconds as JSON-ready columns (at most ``max_points`` points; see ``render``)."""
        window = self.ring.window(self._clock() - window_s)  # a copy, taken between two samples
        return await asyncio.to_thread(self.render, window, window_s, max_points)

    def render(self, window: Window, window_s: float, max_points: int) -> dict[str, Any]:
        """``{"t": [seconds since the epoch…], "turns": {status: […]}, "errors": {code: […]}, "latency_ms": {stage:
        {"p50": […], …}}, "connections": {instance: […]}, "health": {part: […]}, …}`` with null for no value."""
        points, k = downsample(window, max_points, lambda key: REDUCE[key.split("/", 1)[0]])
        body: dict[str, Any] = {
            "interval_s": self.interval_s,
            "step_s": self.interval_s * k,
            "window_s": window_s,
            "keep_s": self.keep_s,
            "memory_bytes": self.ring.nbytes,
            "now": self.latest,
            "t": [round(float(t), 3) for t in points.t],
            **{group: {} for group in REDUCE},
        }
        for key, column in sorted(points.columns.items()):
            if np.isnan(column).all():
                continue  # its values were in points the window leaves out
            group, _, name = key.partition("/")
            values = [None if v != v else v for v in np.round(column.astype(np.float64), 2).tolist()]  # NaN → null
            if group == "latency_ms":
                stage, _, name = name.rpartition("/")
                body[group].setdefault(stage, {})[name] = values
            else:
                body[group][name] = values
        return body


def _new(values: Mapping[str, float], prefix: str, live: Sequence[str]) -> int:
    """Keys of ``prefix`` this sample adds that the ring does not hold yet."""
    return sum(1 for key in values if key.startswith(prefix) and key not in live)
