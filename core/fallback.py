"""Failover: one stage's engines tried in order within one deadline, each behind a small circuit breaker.

A stage (``llm``, ``stt``, ``tts``) has its configured engine and the ``fallbacks`` after it. A request gets one
deadline, the stage's ``timeout_s``: each engine is given an equal share of what is left (so a hung first engine
leaves time for the next), and an engine that fails, by any error of the stage, hands over to the next. An engine
that failed because it is *down* (unreachable, refusing, or not answering in time) is skipped for ``down_for_s``;
then one request probes it again (a success brings it back, a failure skips it for another ``down_for_s``). The
last engine of a chain is never skipped, so a chain of one behaves exactly like the engine alone, and a chain whose
engines are all down still tries something.

We keep the breaker small (closed → open → half-open with a single probe) rather than take a library: aiobreaker
is unmaintained since 2021, and purgatory's storage and event machinery bring nothing a per-process counter needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

E = TypeVar("E")

# Code suffixes (``llm-timeout`` → ``timeout``) that mean the engine is down rather than that one request failed.
DOWN = frozenset({"timeout", "unavailable"})


def is_down(code: str) -> bool:
    """Whether an error code (``llm-unavailable``, ``stt-unavailable``…) says the engine is down."""
    return code.rpartition("-")[2] in DOWN


class Breaker:
    """Closed while the engine works; open (skipped) for ``down_for_s`` after it was found down; then half-open:
    one request probes it, and its outcome closes or reopens the breaker. ``clock`` is in seconds."""

    def __init__(self, down_for_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.down_for_s = down_for_s
        self._clock = clock
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.down_for_s:
            return "half-open"
        return "open"

    def allows(self) -> bool:
        """Whether a request may use the engine now; in half-open, only the first (the probe) may."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def succeeded(self) -> None:
        self._opened_at = None
        self._probing = False

    def failed(self, *, down: bool) -> None:
        """A request failed; ``down``: because the engine is down, which opens the breaker (again)."""
        if down:
            self._opened_at = self._clock()
        elif self._probing:  # the probe reached a working engine that refused this one request
            self._opened_at = None
        self._probing = False

    def retry_in_s(self) -> float | None:
        """Seconds until the engine is tried again; None when it is not skipped."""
        if self._opened_at is None or self._probing:
            return None
        return max(0.0, self.down_for_s - (self._clock() - self._opened_at))


@dataclass(slots=True)
class Member(Generic[E]):
    """One engine of a chain, and what it did."""

    name: str
    engine: E
    timeout_s: float
    breaker: Breaker
    served: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    last_error: str | None = None

    def succeeded(self) -> None:
        self.served += 1
        self.breaker.succeeded()

    def failed(self, code: str) -> None:
        self.failures[code] = self.failures.get(code, 0) + 1
        self.last_error = code
        down = is_down(code)
        if down and self.breaker.state == "closed":
            logger.warning("engine %s is down (%s): skipped for %.0f s", self.name, code, self.breaker.down_for_s)
        self.breaker.failed(down=down)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.breaker.state,
            "retry_in_s": _rounded(self.breaker.retry_in_s()),
            "served": self.served,
            "failed": sum(self.failures.values()),
            "skipped": self.skipped,
            "last_error": self.last_error,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def member_names(engines: Iterable[str]) -> list[str]:
    """Names for a chain's engines: each engine's name, with its position after a repeated one (``openai-2``)."""
    names = list(engines)
    return [name if names.count(name) == 1 else f"{name}-{i + 1}" for i, name in enumerate(names)]


class Chain(Generic[E]):
    """A stage's engines in order, with the deadline and breakers of a request (``attempts``)."""

    def __init__(self, stage: str, members: list[Member[E]], *, timeout_s: float) -> None:
        if not members:
            raise ValueError("a chain needs an engine")
        self.stage = stage
        self.members = members
        self.timeout_s = timeout_s
        self.last_used: str | None = None

    @property
    def primary(self) -> E:
        return self.members[0].engine

    def attempts(self) -> Iterator[tuple[Member[E], float]]:
        """The engines to try for one request, each with the seconds it may take: an equal share of what is
        left of ``timeout_s`` (capped by its own timeout); those skipped by their breaker are counted and left out.
        The caller reports each attempt's outcome to the member (``succeeded`` / ``failed``) and stops at the first
        success; ends when the deadline has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        last = self.members[-1]
        candidates = [m for m in self.members if m is last or m.breaker.state != "open"]
        for member in self.members:
            if member not in candidates:
                member.skipped += 1
        for index, member in enumerate(candidates):
            left = deadline - loop.time()
            if left <= 0:
                return
            # Asked only now: a half-open breaker lets one request through, and that must be one that tries it.
            if member is not last and not member.breaker.allows():
                member.skipped += 1
                continue
            yield member, min(member.timeout_s, left / (len(candidates) - index))

    def used(self, member: Member[E]) -> None:
        member.succeeded()
        if self.last_used != member.name and len(self.members) > 1:
            logger.info("%s: served by %s", self.stage, member.name)
        self.last_used = member.name

    def describe(self) -> dict[str, object]:
        """For ``/api/status``: each engine's state and counts, and the one that served last."""
        return {"last_used": self.last_used, "engines": [member.describe() for member in self.members]}


def chains_of(*engines: object) -> list[Chain[Any]]:
    """The chains the given stages' engines run (``chain``, or ``chains`` of a router of voices)."""
    found: list[Chain[Any]] = []
    for engine in engines:
        chain = getattr(engine, "chain", None)
        found.extend([chain] if isinstance(chain, Chain) else [])
        found.extend(item for item in getattr(engine, "chains", ()) if isinstance(item, Chain))
    return found


class ChainMetrics(Collector):
    """Prometheus view of chains: ``webbot_engine_requests_total{stage,engine,outcome}`` (``served``, ``skipped``
    or a failure's code) and ``webbot_engine_up{stage,engine}`` (0 while an engine is skipped as down)."""

    def __init__(self, chains: Callable[[], Iterable[Chain[Any]]]) -> None:
        self._chains = chains

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        requests = CounterMetricFamily(
            "webbot_engine_requests", "Requests to each engine, by outcome", labels=["stage", "engine", "outcome"]
        )
        up = GaugeMetricFamily(
            "webbot_engine_up", "Whether an engine is in use (0: skipped as down)", labels=["stage", "engine"]
        )
        seen: set[tuple[str, str]] = set()
        for chain in self._chains():
            for member in chain.members:
                labels = [chain.stage, member.name]
                if (chain.stage, member.name) in seen:  # an engine in several chains (voices) is one engine
                    continue
                seen.add((chain.stage, member.name))
                requests.add_metric([*labels, "served"], member.served)
                requests.add_metric([*labels, "skipped"], member.skipped)
                for code, count in member.failures.items():
                    requests.add_metric([*labels, code], count)
                up.add_metric(labels, 0.0 if member.breaker.state == "open" else 1.0)
        yield requests
        yield up
