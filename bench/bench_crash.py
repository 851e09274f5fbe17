"""Crash and stop: ``python -m web_bot`` killed with SIGKILL under load and started again, on SQLite and on
PostgreSQL; PostgreSQL itself restarted under load; and a SIGTERM with long replies in flight.

1. SQLite: 50 clients (45 chatting a turn at a time, 5 uploading recordings) and 50 SIGKILLs at random moments;
   after each the file must pass ``PRAGMA integrity_check``, and at the end every ``user_message`` and ``reply`` a
   client was sent must be in the history, word for word, with nothing stored twice (``bench.chaos_check``). The
   time from a start to serving is printed beside the first start's.
2. PostgreSQL (a private cluster, ``bench.pgcluster``): the same with 20 kills.
3. PostgreSQL stopped (cleanly, then as in a crash) and started again under load, 4 times: the errors the clients
   got meanwhile, and the time from PostgreSQL's return to the next answered turn.
4. SIGTERM with 50 clients each waiting for a one-minute reply with a message queued behind it: the time to stop,
   beside the baseline of the same stop with ``server.shutdown_timeout_s`` = 600 (waiting for every reply, as
   before the bound existed).

BENCH_QUICK=1: 5 kills on SQLite, 3 on PostgreSQL, 1 PostgreSQL restart, 10 clients stopped with 8-second replies.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.chaos import Ledger, Load, Server, kill_under_load, sigterm_with_long_replies
from bench.chaos_check import Verdict, check_history, postgres_rows, sqlite_integrity, sqlite_rows
from bench.common import QUICK_MARK, line, raise_fd_limit, sized, start_fake_openai
from bench.pgcluster import PrivatePostgres

SQLITE_KILLS = sized(50, 5)
POSTGRES_KILLS = sized(20, 3)
POSTGRES_RESTARTS = sized(4, 1)
STOP_CLIENTS = sized(50, 10)
STOP_WORDS = sized(120, 8)  # words added to each reply stopped: 0.5 s each


def config(workdir: Path, fake_url: str, **sections: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, dict[str, Any]] = {
        "llm": {"engine": "openai", "base_url": f"{fake_url}/v1", "model_name": "fake", "api_key": "x",
                "max_retries": 0, "timeout_s": 10, "max_concurrent": 100},
        "stt": {"engine": "openai", "base_url": f"{fake_url}/v1", "api_key": "x"},
        "tts": {"engine": "none"},
        "vad": {"end_of_turn": "silence"},
        "database": {"db_path": str(workdir / "history.db")},
        "audio": {"dir": str(workdir / "audio")},
        "logging": {"file": str(workdir / "web_bot.log"), "level": "WARNING"},
        "limits": {"enabled": False},
        "history": {"titles": "first-words"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return base


def report(name: str, kills: int, verdict: Verdict, ledger: Ledger, server: Server) -> None:
    lost = sum("after restart" in p for p in verdict.problems)
    line(
        f"{name}: SIGKILLs survived under load (45 chatting + 5 uploading)",
        f"{kills}/{kills}" if not verdict.problems else f"FAILED: {len(verdict.problems)} problem(s)",
        target="all, nothing acknowledged lost",
    )
    print(
        f"{name}: acknowledged messages checked {verdict.acked_checked}, acknowledged replies checked "
        f"{verdict.replies_checked}, rows {verdict.rows}, lost {lost}, other problems {len(verdict.problems) - lost}, "
        f"stored replies by status {dict(verdict.statuses)}, errors sent {dict(ledger.errors)}",
        flush=True,
    )
    for problem in verdict.problems[:10]:
        print(f"  {problem}", flush=True)
    restarts = server.starts[1:]
    if restarts:
        line(f"{name}: start to serving after a kill p50", f"{statistics.median(restarts):.2f} s",
             f"{server.starts[0]:.2f} s first start", statistics.median(restarts) / server.starts[0])


async def sqlite_kills(fake_url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    server, ledger = Server(config(workdir, fake_url), workdir), Ledger()
    db = workdir / "history.db"
    torn: list[str] = []
    try:
        await kill_under_load(server, Load(server, ledger), SQLITE_KILLS, seed=1,
                              after_kill=lambda: torn.extend(sqlite_integrity(db)))
    finally:
        server.close()
    verdict = check_history(sqlite_rows(db), ledger, workdir / "audio")
    for problem in torn + sqlite_integrity(db):
        verdict.fail(f"integrity: {problem}")
    report("sqlite", SQLITE_KILLS, verdict, ledger, server)


async def postgres_kills(fake_url: str, cluster: PrivatePostgres) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-crash-pg-"))
    url = await cluster.database("kills")
    server, ledger = Server(config(workdir, fake_url, database={"url": url}), workdir), Ledger()
    try:
        await kill_under_load(server, Load(server, ledger), POSTGRES_KILLS, seed=2)
    finally:
        server.close()
    verdict = check_history(await postgres_rows(url), ledger, workdir / "audio")
    report("postgresql", POSTGRES_KILLS, verdict, ledger, server)


async def postgres_restarts(fake_url: str, cluster: PrivatePostgres) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-crash-pgr-"))
    url = await cluster.database("restarts")
    server, ledger = Server(config(workdir, fake_url, database={"url": url}), workdir), Ledger()
    load = Load(server, ledger)
    recoveries: list[float] = []
    try:
        await asyncio.to_thread(server.start)
        load.start()
        for n in range(POSTGRES_RESTARTS):
            await load.progress(50, timeout=120)
            await asyncio.to_thread(cluster.stop, "immediate" if n % 2 else "fast")
            await asyncio.sleep(2)
            await asyncio.to_thread(cluster.start)
            back = time.monotonic()
            await load.progress(1, timeout=120)
            recoveries.append(time.monotonic() - back)
        await load.progress(50, timeout=120)
        await load.close()
        await asyncio.to_thread(server.terminate)
    finally:
        server.close()
    verdict = check_history(await postgres_rows(url), ledger, workdir / "audio")
    line(
        f"postgresql restarted under load: restarts survived ({POSTGRES_RESTARTS}, fast and immediate)",
        f"{POSTGRES_RESTARTS}/{POSTGRES_RESTARTS}" if not verdict.problems else f"FAILED: {verdict.problems[:3]}",
        target="all, nothing acknowledged lost",
    )
    line("postgresql back → next answered turn (max)", f"{max(recoveries):.2f} s")
    print(f"postgresql restarted: acknowledged messages checked {verdict.acked_checked}, replies checked "
          f"{verdict.replies_checked}, errors sent {dict(ledger.errors)}", flush=True)


async def sigterm(fake_url: str) -> None:
    took: dict[float, float] = {}
    for timeout_s in (600.0, 10.0):
        workdir = Path(tempfile.mkdtemp(prefix="bench-stop-"))
        stop = {"server": {"shutdown_timeout_s": timeout_s}, "voice": {"barge_in": False}}
        server = Server(config(workdir, fake_url, **stop), workdir)
        try:
            took[timeout_s], closes = await sigterm_with_long_replies(server, STOP_CLIENTS, STOP_WORDS)
        finally:
            server.close()
        rows = sqlite_rows(workdir / "history.db")
        users = sum(1 for r in rows if r[2] == "user")
        print(f"stop with shutdown_timeout_s={timeout_s:g}: {took[timeout_s]:.1f} s, close codes "
              f"{sorted(set(closes), key=str)}, {users}/{2 * STOP_CLIENTS} messages stored", flush=True)
    line(
        f"SIGTERM with {STOP_CLIENTS} long replies in flight (+1 queued each), shutdown_timeout_s 10",
        f"{took[10.0]:.1f} s",
        f"{took[600.0]:.1f} s waiting for every reply",
        took[10.0] / took[600.0],
        "≤ 15 s",
    )


async def main() -> None:
    raise_fd_limit()
    fake, fake_url = start_fake_openai()
    print(f"# crash benchmark{QUICK_MARK}", flush=True)
    try:
        await sqlite_kills(fake_url)
        try:
            cluster = PrivatePostgres().init()
        except (RuntimeError, KeyError, OSError) as err:
            print(f"postgresql: not measured, no private cluster can be made here ({err})", flush=True)
        else:
            try:
                cluster.start()
                await postgres_kills(fake_url, cluster)
                await postgres_restarts(fake_url, cluster)
            finally:
                cluster.remove()
        await sigterm(fake_url)
    finally:
        fake.stop()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
