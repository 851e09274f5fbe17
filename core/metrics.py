"""Prometheus metrics for one server: connections, turns by source, errors by code, and each stage's latency."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds; from a few milliseconds (a loopback LLM) to the tens of seconds a slow model may take.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
STAGES = ("stt_ms", "llm_first_token_ms", "llm_total_ms", "tts_first_audio_ms", "first_audio_ms", "total_ms")


class Metrics:
    """The server's own registry (never the process-global one), so each app instance counts alone."""

    def __init__(self, connections: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._connections = Gauge(
            "webbot_connections", "Open WebSocket connections", registry=self.registry
        )
        self._connections.set_function(connections)
        self._turns = Counter("webbot_turns", "Chat turns answered", ["source", "status"], registry=self.registry)
        self._errors = Counter("webbot_errors", "Errors sent to clients", ["code"], registry=self.registry)
        self._stages = Histogram(
            "webbot_stage_seconds", "Latency of each pipeline stage", ["stage"], buckets=BUCKETS,
            registry=self.registry,
        )
        for stage in STAGES:
            self._stages.labels(stage.removesuffix("_ms"))

    def turn(self, source: str, status: str, timings: dict[str, float]) -> None:
        self._turns.labels(source, status).inc()
        self.stages(timings)

    def stages(self, timings: dict[str, float]) -> None:
        """Observe the stage latencies found in ``timings`` (milliseconds, keyed as in STAGES)."""
        for stage in STAGES:
            if stage in timings:
                self._stages.labels(stage.removesuffix("_ms")).observe(timings[stage] / 1000)

    def error(self, code: str) -> None:
        self._errors.labels(code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
