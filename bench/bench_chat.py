"""Chat throughput and latency through /ws/{client_id}, against the raw AsyncOpenAI call rate on the same fake.

1. baseline: streamed chat completions through one AsyncOpenAI client against a loopback fake, concurrency 100;
2. web-bot: chat turns through the WebSocket with 100 concurrent clients, every turn stored, on the engines the
   default configuration loads (Whisper and Piper loaded, ``voice.replies`` = auto: typed turns are not spoken);
3. latency at one client, minus the baseline's single-call latency;
4. server RSS per idle connection with 1000 clients.

BENCH_QUICK=1: 10 clients x 3 turns, 20 solo turns, 50 idle connections.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai
import websockets

from bench.common import (
    QUICK_MARK,
    line,
    percentile,
    raise_fd_limit,
    rss_bytes,
    sized,
    start_fake_openai,
    start_web_bot,
)

CONCURRENCY = sized(100, 10)
TURNS_PER_CLIENT = sized(20, 3)
SOLO_TURNS = sized(200, 20)
IDLE_CLIENTS = sized(1000, 50)


async def raw_calls(base_url: str, concurrency: int, total: int) -> tuple[float, list[float]]:
    client = openai.AsyncOpenAI(api_key="bench", base_url=f"{base_url}/v1", max_retries=0)
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            stream = await client.chat.completions.create(
                model="fake", messages=[{"role": "user", "content": "hello bench"}], stream=True
            )
            async for _ in stream:
                pass
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await client.close()
    return total / elapsed, latencies


async def one_client_turns(port: int, client_id: str, turns: int, latencies: list[float]) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/{client_id}", max_size=None) as ws:
        await ws.recv()  # welcome
        for i in range(turns):
            start = time.perf_counter()
            await ws.send(json.dumps({"type": "text", "text": f"hello bench {i}"}))
            while True:
                frame = await ws.recv()
                if isinstance(frame, bytes):
                    raise RuntimeError("a typed turn was spoken: voice.replies = auto must not synthesise it")
                event = json.loads(frame)
                if event["type"] == "reply":
                    break
                if event["type"] == "error":
                    raise RuntimeError(event)
            latencies.append(time.perf_counter() - start)


async def ws_turns(port: int, clients: int, turns: int, prefix: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(one_client_turns(port, f"{prefix}{i}", turns, latencies) for i in range(clients)))
    elapsed = time.perf_counter() - start
    return clients * turns / elapsed, latencies


async def idle_connections(port: int, pid: int, count: int) -> float:
    before = rss_bytes(pid)
    sockets = []
    for i in range(count):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/idle{i}", max_size=None)
        await ws.recv()
        sockets.append(ws)
    await asyncio.sleep(1)
    after = rss_bytes(pid)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return (after - before) / count


async def main() -> None:
    raise_fd_limit()
    fake, fake_url = start_fake_openai()
    workdir = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    server = None
    try:
        await raw_calls(fake_url, 20, sized(200, 40))  # warm-up
        rate, _ = await raw_calls(fake_url, CONCURRENCY, CONCURRENCY * TURNS_PER_CLIENT)
        _, single = await raw_calls(fake_url, 1, SOLO_TURNS)
        base_p50 = statistics.median(single)

        server, port = start_web_bot(
            {
                # Only the LLM is the fake; speech engines and voice settings are the defaults a user gets.
                "llm": {"engine": "openai", "base_url": f"{fake_url}/v1", "model_name": "fake", "max_retries": 0},
            },
            workdir,
        )
        await ws_turns(port, sized(20, 5), sized(5, 2), "warm")
        turns, _ = await ws_turns(port, CONCURRENCY, TURNS_PER_CLIENT, "load")
        _, one = await ws_turns(port, 1, SOLO_TURNS, "solo")
        with sqlite3.connect(workdir / "bench.db") as db:
            stored = db.execute("SELECT count(*) FROM messages WHERE client_id LIKE 'load%'").fetchone()[0]
        assert stored == 2 * CONCURRENCY * TURNS_PER_CLIENT, f"only {stored} messages stored"
        per_conn = await idle_connections(port, server.pid, IDLE_CLIENTS)

        print(
            f"# chat benchmark{QUICK_MARK} ({CONCURRENCY} clients x {TURNS_PER_CLIENT} turns, loopback fake LLM, "
            "default speech engines loaded)"
        )
        line(
            f"turns/s through /ws ({CONCURRENCY} clients, all stored)",
            f"{turns:.0f}",
            f"{rate:.0f} raw AsyncOpenAI streamed calls/s",
            turns / rate,
            "≥ 0.5",
        )
        line(
            "turn latency p50 at 1 client, minus baseline call p50",
            f"{(statistics.median(one) - base_p50) * 1000:.2f} ms",
            f"{base_p50 * 1000:.2f} ms call p50",
            statistics.median(one) / base_p50,
            "≤ 2 ms",
        )
        line(
            "turn latency p99 at 1 client, minus baseline call p50",
            f"{(percentile(one, 99) - base_p50) * 1000:.2f} ms",
            f"{percentile(single, 99) * 1000:.2f} ms call p99",
        )
        line(f"server RSS per idle connection ({IDLE_CLIENTS} clients)", f"{per_conn / 1024:.1f} KB", target="≤ 64 KB")
    finally:
        if server is not None:
            server.stop()
        fake.stop()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
