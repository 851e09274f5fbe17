"""The soak's server: ``python -m web_bot``'s own app and uvicorn server (``web_bot.__main__.build_server``) with
one more route, ``GET /_soak/sample``, which reads inside the process what only it can see: its asyncio tasks, and
its memory once garbage is collected and the allocator's free pages are given back (``release_free_memory``).

``python -m bench.soak_server CONFIG PORT``
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
import sys
import threading
from pathlib import Path

from core.config import load_settings
from web_bot.__main__ import build_server
from web_bot.app import create_app


def process_sample(pid: int | str = "self") -> dict[str, float]:
    """RSS (MB), open file descriptors and OS threads of a process, from /proc."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
    }


def release_free_memory(libc: ctypes.CDLL | None) -> None:
    """Collect garbage, then hand the allocator's free pages back to the OS (glibc's ``malloc_trim(0)``; only the
    collection with another C library), so that RSS counts what the process holds rather than what glibc keeps
    cached for reuse: with a worker thread per engine, glibc keeps a heap arena per thread, and their free lists grow
    and shrink with the mix of work in flight, by tens of MB between otherwise identical idle samples."""
    gc.collect()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def load_libc() -> ctypes.CDLL | None:
    """The C library, once at start-up (``find_library`` runs ``ldconfig`` in a subprocess); None if not found."""
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name is not None else None


def main(argv: list[str]) -> int:
    config, port = argv
    settings = load_settings(config)
    app = create_app(settings)
    libc = load_libc()

    @app.get("/_soak/sample")
    async def sample() -> dict[str, float]:
        untrimmed = process_sample()["rss_mb"]
        release_free_memory(libc)
        return {
            **process_sample(),
            "untrimmed_rss_mb": untrimmed,
            "tasks": len(asyncio.all_tasks()),
            "python_threads": threading.active_count(),
        }

    server = build_server(app, settings, int(port))
    server.run()
    return 0 if server.started else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
