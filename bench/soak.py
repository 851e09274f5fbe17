"""Soak: an hour (``SOAK_MINUTES``; 5 in CI) of mixed traffic against one server, with its memory, open file
descriptors, asyncio tasks and threads sampled each minute; it fails if any of them keeps growing.

Traffic, on the offline speech engines (Whisper, Piper, Silero, Smart Turn) and the loopback fake LLM: clients
typing (a few reconnecting every 15 turns, one interrupting its own replies), one uploading recordings, one
streaming live microphone audio in real time and talking over the spoken replies (barge-in), one opening and
closing sockets, and one that stops reading its spoken replies for a while (``bench.soak_traffic``). Each minute
the clients finish what they are doing and hold, and the server is sampled idle, so
the samples compare like with like (``bench.soak_server``).

RSS is read after a garbage collection and glibc's ``malloc_trim`` (``bench.soak_server``): what the process holds,
not the free lists its allocator keeps (150 MB of them after the first minute, measured). A metric fails when the
median of the last three samples exceeds the mean of the first two minutes' (the warm-up) by more than its
allowance (``ALLOWED``), or, in runs of 20 minutes or more, when the second half of the run still climbs
faster than ``MAX_SLOPE`` per minute. ``python -m bench.soak`` (``make soak``); exits 1 on a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Process, free_port, line, raise_fd_limit, start_fake_openai
from bench.soak_traffic import Traffic

MINUTES = int(os.environ.get("SOAK_MINUTES", "60"))
METRICS = ("rss_mb", "fds", "tasks", "threads")
# Growth over the first sample allowed at the end: (absolute, fraction of the first).
ALLOWED = {"rss_mb": (48.0, 0.10), "fds": (8.0, 0.0), "tasks": (8.0, 0.0), "threads": (2.0, 0.0)}
# The first minutes' mean is what the last ones are compared with: memory still settles in the second minute (RSS
# 682 -> 748 -> 759 -> 798 -> 802 MB, untrimmed, in a 5-minute CI run whose hour-long twin plateaued).
WARM_UP_SAMPLES = 2
MAX_SLOPE = {"rss_mb": 0.5, "fds": 0.05, "tasks": 0.1, "threads": 0.02}  # per minute, over the second half


def soak_config(workdir: Path, fake_url: str) -> dict[str, object]:
    return {
        "llm": {"engine": "openai", "base_url": f"{fake_url}/v1", "model_name": "fake", "api_key": "x",
                "max_retries": 0},
        "server": {"send_timeout_s": 3},
        "tts": {"format": "wav"},  # large audio frames: the slow reader's socket backs up quickly
        "database": {"db_path": str(workdir / "soak.db")},
        "audio": {"dir": str(workdir / "audio")},
        "logging": {"file": str(workdir / "soak.log"), "level": "WARNING"},
        "limits": {"enabled": False},
        "history": {"titles": "first-words"},
    }


def slope(values: list[float]) -> float:
    """Least-squares growth per sample."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(values)
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den if den else 0.0


def judge(samples: list[dict[str, float]]) -> list[str]:
    """The metrics that grew without bound (empty: none)."""
    failures = []
    for metric in METRICS:
        values = [s[metric] for s in samples]
        first = statistics.fmean(values[:WARM_UP_SAMPLES])
        last = statistics.median(values[-3:])
        absolute, fraction = ALLOWED[metric]
        allowed = first + absolute + fraction * first
        if last > allowed:
            failures.append(f"{metric} grew from {first:g} to {last:g} (allowed {allowed:g})")
        if len(values) >= 20 and (rate := slope(values[len(values) // 2 :])) > MAX_SLOPE[metric]:
            failures.append(f"{metric} still climbs {rate:.3g} a minute in the second half")
    return failures


async def sample(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(f"{url}/_soak/sample")
        answer.raise_for_status()
        values: dict[str, float] = answer.json()
        return values


async def run(minutes: int) -> int:
    raise_fd_limit()
    fake, fake_url = start_fake_openai()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    config = workdir / "soak.json"
    config.write_text(json.dumps(soak_config(workdir, fake_url)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process([sys.executable, "-m", "bench.soak_server", str(config), str(port)])
    traffic: Traffic | None = None
    try:
        server.wait_http(f"{url}/api/status", timeout=600)
        traffic = Traffic(port)
        await traffic.prepare()
        traffic.start()
        samples: list[dict[str, float]] = []
        began = time.monotonic()
        print(f"# soak: {minutes} minute(s) of mixed traffic, sampled idle each minute", flush=True)
        print("minute | RSS MB | fds | tasks | threads | turns | errors | RSS MB before trimming", flush=True)
        for minute in range(1, minutes + 1):
            await asyncio.sleep(max(0.0, began + 60 * minute - time.monotonic()))
            await traffic.pause()
            await asyncio.sleep(2)  # tails: echo windows, sockets closing
            samples.append(await sample(url))
            traffic.resume()
            s = samples[-1]
            print(f"{minute} | {s['rss_mb']:.0f} | {s['fds']:.0f} | {s['tasks']:.0f} | {s['threads']:.0f} | "
                  f"{traffic.counts['turns']} | {sum(traffic.errors.values())} | {s['untrimmed_rss_mb']:.0f}",
                  flush=True)
            traffic.check_alive()
        await traffic.close()
        return report(samples, traffic)
    finally:
        if traffic is not None:
            await traffic.close()
        server.stop()
        fake.stop()


def report(samples: list[dict[str, float]], traffic: Traffic) -> int:
    first, last = samples[0], samples[-1]
    for metric, unit in (("rss_mb", " MB"), ("fds", ""), ("tasks", ""), ("threads", "")):
        line(f"soak {metric}: last minute", f"{last[metric]:.0f}{unit}", f"{first[metric]:.0f}{unit} first minute",
             last[metric] / first[metric] if first[metric] else None)
    print(f"soak traffic: {dict(traffic.counts)}; errors by code {dict(traffic.errors)}", flush=True)
    failures = judge(samples) if len(samples) >= 2 else ["fewer than two samples"]
    failures += traffic.problems()
    for failure in failures:
        print(f"soak FAILED: {failure}", flush=True)
    if not failures:
        print("soak passed: nothing grew without bound", flush=True)
    return 1 if failures else 0


def main() -> int:
    return asyncio.run(run(MINUTES))


if __name__ == "__main__":
    sys.exit(main())
