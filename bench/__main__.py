"""``python -m bench``: every benchmark, one after another."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["bench.bench_chat", "bench.bench_stt", "bench.bench_voice", "bench.bench_turns", "bench.bench_llm"]
BENCHMARKS.insert(3, "bench.bench_realtime")  # beside the page's own figure
BENCHMARKS.append("bench.bench_search")  # SQLite and PostgreSQL, a million messages (BENCH_SEARCH_MESSAGES)
BENCHMARKS.append("bench.bench_crash")  # SIGKILL and SIGTERM under load, SQLite and PostgreSQL (~10 minutes)


def main() -> int:
    names = sys.argv[1:] or BENCHMARKS
    for name in names:
        module = importlib.import_module(name if name.startswith("bench.") else f"bench.{name}")
        print(f"\n== {module.__name__}", flush=True)
        runner = module.main()
        if runner is not None:  # async benchmarks return a coroutine
            import asyncio

            asyncio.run(runner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
