"""The operator's view (issue 16): who may read the metrics history, the series it records from real turns through
a real server, the bound on its memory, the vendored chart library, and the Grafana dashboard held to the metric
names ``/metrics`` really renders."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.config import Settings
from core.errors import ConfigError
from core.metrics import BUCKETS, Metrics
from core.metrics_history import MAX_CODES, MAX_INSTANCES, MAX_SERIES, MetricsHistory, quantile, read_totals
from core.timeseries import SeriesRing
from tests.accounts import PASSWORDS, People
from tests.conftest import Served

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "web-bot.json"
VENDOR = ROOT / "web_bot" / "static" / "vendor"
FAST = {"metrics": {"history_interval_s": 0.2, "history_keep_h": 0.05}}  # a sample every 0.2 s, kept 3 minutes


async def history(served: Served, window: str = "2m", headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=served.url) as http:
        return await http.get("/api/admin/metrics", params={"window": window}, headers=headers or {})


def latest(values: list[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


async def until(served: Served, check: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
    """The history once ``check`` holds for it (the sampler runs in the server's background)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await history(served)).json()
        if check(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


# ---- who may read it -------------------------------------------------------------------------------------------


async def test_only_admins_read_the_history_and_anyone_gets_the_page(people: People) -> None:
    served = people.served
    expected = {"anonymous": (401, "auth-required"), "alice": (403, "not-allowed"), "bob": (403, "not-allowed")}
    for who, (status, code) in expected.items():
        answer = await history(served, headers=people.headers(who))
        assert (answer.status_code, answer.json()["code"]) == (status, code), (who, answer.text)
    token = {"Authorization": f"Bearer {people.tokens['alice']}"}
    assert (await history(served, headers=token)).status_code == 403  # a user's API token is still a user's
    answer = await history(served, headers=people.cookie("root"))
    assert answer.status_code == 200, answer.text
    assert {"t", "turns", "errors", "latency_ms", "connections", "health", "now"} <= set(answer.json())
    async with httpx.AsyncClient(base_url=served.url) as http:
        page = await http.get("/admin")
    assert page.status_code == 200 and 'id="charts"' in page.text
    assert "script-src 'self' 'sha256-" in page.headers["content-security-policy"]
    assert "/static/vendor/uplot-1.6.32/uPlot.min.css" in page.text and "cdn" not in page.text.lower()
    assert PASSWORDS["root"] not in answer.text


async def test_with_no_accounts_the_local_user_reads_it_and_bad_windows_are_refused(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings]
) -> None:
    served = serve(make_settings(FAST))
    assert (await history(served, "3m")).status_code == 200
    longer = await history(served, "4m")  # more than is kept: all that is kept
    assert longer.status_code == 200 and longer.json()["window_s"] == longer.json()["keep_s"] == 180, longer.text
    for window, fragment in (("0", "metrics.history_interval_s"), ("soon", "window"), ("1d", "window")):
        answer = await history(served, window)
        assert answer.status_code == 400, (window, answer.text)
        assert answer.json()["code"] == "bad-request" and fragment in answer.json()["detail"], answer.text


# ---- what it records -------------------------------------------------------------------------------------------


async def test_the_series_count_real_turns_errors_connections_and_latency(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings], connect: Callable[..., Any]
) -> None:
    served = serve(make_settings(FAST))
    first = (await history(served)).json()
    client = await connect(served, "ops-chat")
    totals = []
    for n in range(3):
        events = await client.chat(f"turn number {n}")
        assert events[-1]["type"] == "reply", events
        totals.append(events[-1]["timings"]["total_ms"])
    body = await until(served, lambda b: latest(b["turns"].get("ok", [])) == 3)
    assert latest(body["turns"]["ok"]) == 3, body["turns"]
    assert len(body["t"]) > len(first["t"]) and body["t"] == sorted(body["t"])
    assert body["interval_s"] == 0.2 and body["step_s"] == 0.2 and body["keep_s"] == 180
    # The median turn, as the histogram ranks it: inside the bucket that holds the median of what the turns said.
    median = sorted(totals)[1] / 1000
    upper = next(b for b in BUCKETS if median <= b)
    lower = max([0.0, *(b for b in BUCKETS if b < upper)])
    p50 = latest(body["latency_ms"]["total"]["p50"])
    assert p50 is not None and lower * 1000 <= p50 <= upper * 1000, (p50, totals)
    assert "first_audio" not in body["latency_ms"]  # no TTS: no turn reached the first audio
    instance = body["now"]["instance"]["id"]
    assert latest(body["connections"][instance]) == 1  # the one socket open
    # The parts configured (no STT, TTS nor Redis here), and the LLM chain's one engine, in use.
    assert {part: latest(v) for part, v in body["health"].items()} == {"status": 1, "llm": 1, "db": 1, "llm openai": 1}
    assert body["errors"] == {}

    events = await client.chat("this one fails [status:500]")
    code = events[-1]["code"]
    assert events[-1]["type"] == "error" and code.startswith("llm-"), events
    body = await until(served, lambda b: latest(b["errors"].get(code, [])) == 1)
    assert latest(body["errors"][code]) == 1, body["errors"]
    assert latest(body["turns"]["error"]) == 1 and latest(body["turns"]["ok"]) == 3, body["turns"]
    assert set(body["errors"]) == {code}
    assert latest(body["health"]["status"]) == (1 if body["now"]["status"] == "ok" else 0)
    await client.close()
    body = await until(served, lambda b: latest(b["connections"][instance]) == 0)
    assert latest(body["connections"][instance]) == 0


# ---- the bounds --------------------------------------------------------------------------------------------------


async def test_memory_is_bounded_whatever_the_codes_and_instances() -> None:
    metrics = Metrics(lambda: 0)
    seen: list[str] = []

    async def status() -> dict[str, Any]:
        return {"status": "ok", "llm_available": True, "db_connected": True}

    async def instances() -> dict[str, int]:
        seen.append(f"instance-{len(seen)}")  # every sample a new instance (restarts, say)
        return {seen[-1]: 1}

    history = MetricsHistory(metrics.registry, status=status, instances=instances, interval_s=10, keep_s=500)
    capacity = history.ring.capacity
    assert capacity == 50
    for n in range(150):  # three times the ring, six times the codes kept
        metrics.error(f"code-{n}")  # a new error code every sample
        metrics.turn("text", "ok", {"total_ms": 12.0})
        await history.sample()
    ring = history.ring
    assert len(ring) == capacity
    assert ring.nbytes <= capacity * (8 + 4 * MAX_SERIES)
    assert len(ring.keys()) <= MAX_SERIES
    codes = [k for k in ring.live("errors/") if k != "errors/other"]
    assert len(codes) < MAX_CODES and ring.last("errors/other") > 0  # the rest counted under "other"
    live_instances = ring.live("connections/")
    assert len(live_instances) <= MAX_INSTANCES + 1
    assert "connections/instance-0" not in live_instances  # gone from the period (its column may be reused)
    # A full day of 10-second samples is 8640 points, and what a page is sent stays small.
    day = MetricsHistory(metrics.registry, status=status, instances=instances)
    assert day.ring.capacity == 8640
    for _ in range(40):
        await day.sample()
    view = await day.view(24 * 3600, max_points=10)
    assert len(view["t"]) == 10 and view["step_s"] == 40


def test_the_settings_refuse_an_unbounded_history(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="history_keep_h"):
        make_settings({"metrics": {"history_interval_s": 0.1, "history_keep_h": 24}})


def test_percentiles_interpolate_within_buckets_as_prometheus_does() -> None:
    metrics = Metrics(lambda: 0)
    for ms in (4, 8, 12, 30, 200, 5):
        metrics.stages({"total_ms": ms})
    buckets = read_totals(metrics.registry).buckets["total"]
    assert quantile(0.9, buckets) == pytest.approx(0.14)  # rank 5.4 of 6: 40 % into (0.1, 0.2]
    assert quantile(0.5, buckets) == pytest.approx(0.01)  # rank 3: the top of (0.005, 0.01]
    assert math.isnan(quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
    assert quantile(0.99, [(0.1, 0.0), (30.0, 1.0), (math.inf, 2.0)]) == 30.0  # beyond the last bound: that bound


def test_a_column_is_refused_only_while_every_other_is_alive() -> None:
    ring = SeriesRing(capacity=4, max_series=2)
    ring.append(1.0, {"a": 1.0, "b": 2.0, "c": 3.0})
    assert ring.keys() == ["a", "b"]  # no room for c while a and b have values in the ring
    for t in range(2, 6):
        ring.append(float(t), {"a": 1.0})
    ring.append(6.0, {"c": 3.0})  # b's last value left the ring: c takes its column
    assert sorted(ring.keys()) == ["a", "c"]
    window = ring.window(3.0)
    assert list(window.t) == [3.0, 4.0, 5.0, 6.0] and list(window.columns["c"][-1:]) == [3.0]


# ---- the vendored chart library and the Grafana dashboard --------------------------------------------------------


def test_the_vendored_chart_library_is_the_one_recorded() -> None:
    recorded = re.findall(r"^([0-9a-f]{64})  (\S+)$", (VENDOR / "README.md").read_text(), flags=re.M)
    assert len(recorded) == 3
    for digest, name in recorded:
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    source = (VENDOR / "uplot-1.6.32" / "uPlot.esm.js").read_text()
    assert not re.search(r"\beval\(|new Function|innerHTML|insertAdjacentHTML|setAttribute\(\"style", source)


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                   "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana ``label_values(metric, label)``) reads."""
    expr = re.sub(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,[^)]*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w$.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if not expr[match.end():].lstrip().startswith("(") and match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def test_the_query_reader_finds_metric_names_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, stage) (rate(webbot_stage_seconds_bucket{stage="x", '
            'instance=~"$instance"}[$__rate_interval]))) / on (stage) sum(webbot_x_total offset 5m) * 60')
    assert metric_names(expr) == {"webbot_stage_seconds_bucket", "webbot_x_total"}
    assert metric_names("label_values(webbot_connections, instance)") == {"webbot_connections"}


async def test_every_metric_the_grafana_dashboard_queries_is_one_the_server_renders(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings], connect: Callable[..., Any]
) -> None:
    served = serve(make_settings())
    client = await connect(served, "grafana-chat")
    assert (await client.chat("hello"))[-1]["type"] == "reply"
    assert (await client.chat("fail [status:500]"))[-1]["type"] == "error"  # so that webbot_errors_total has a code
    async with httpx.AsyncClient(base_url=served.url) as http:
        rendered = (await http.get("/metrics")).text
    families = list(text_string_to_metric_families(rendered))
    samples = {sample.name for family in families for sample in family.samples}
    queries = dashboard_queries()
    used = set().union(*(metric_names(q) for q in queries))
    assert len(queries) >= 10 and used, queries
    assert used <= samples, f"the dashboard queries metrics /metrics does not render: {sorted(used - samples)}"
    # And the other way: each of the server's metrics has a panel.
    # (prometheus_client's ``*_created`` timestamps parse as families of their own: they are no metric to plot.)
    ours = {f.name for f in families if f.name.startswith("webbot_") and not f.name.endswith("_created")}
    unused = {name for name in ours if not any(u.startswith(name) for u in used)}
    assert not unused, f"metrics with no panel in {DASHBOARD.name}: {sorted(unused)}"
    labels = {family.name: {k for s in family.samples for k in s.labels} for family in families}
    grouped = set(re.findall(r"by \(([^)]*)\)", " ".join(queries)))
    for group in grouped:  # every label a panel groups by is one the metrics carry (or Prometheus's instance)
        for label in (part.strip() for part in group.split(",")):
            assert label == "instance" or any(label in found for found in labels.values()), label
