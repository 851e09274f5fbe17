"""Shared benchmark plumbing: subprocess servers on loopback, readiness, RSS, percentiles."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# BENCH_QUICK=1: every benchmark runs a much smaller version of itself (same lines, header marked "(quick)").
QUICK = os.environ.get("BENCH_QUICK") == "1"
QUICK_MARK = " (quick)" if QUICK else ""


def sized(full: int, quick: int) -> int:
    """``full`` normally, ``quick`` under BENCH_QUICK=1."""
    return quick if QUICK else full


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit(wanted: int = 8192) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


class Process:
    """A server in a subprocess, stopped with SIGINT."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_BOT_", "OPENAI_"))}
        full_env.update(HF_HUB_OFFLINE="1", **(env or {}))
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_http(self, url: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{url} exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                httpx.get(url, timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_fake_openai() -> tuple[Process, str]:
    port = free_port()
    proc = Process([sys.executable, "-m", "tests.fakes.openai_server", str(port)])
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/v1/models")
    return proc, url


def start_web_bot(config: dict[str, Any], workdir: Path) -> tuple[Process, int]:
    port = free_port()
    path = workdir / "bench-config.json"
    base = {
        "database": {"db_path": str(workdir / "bench.db")},
        "logging": {"file": str(workdir / "bench.log"), "level": "WARNING"},
        "audio": {"dir": str(workdir / "audio")},
        # The benchmarks measure capacity from one address, which the abuse limits exist to refuse.
        "limits": {"enabled": False},
    }
    for section, values in config.items():
        base.setdefault(section, {}).update(values)
    path.write_text(json.dumps(base))
    proc = Process([sys.executable, "-m", "web_bot", "--host", "127.0.0.1", "--port", str(port), "--config", str(path)])
    proc.wait_http(f"http://127.0.0.1:{port}/api/status")
    return proc, port


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def line(name: str, value: str, baseline: str = "", ratio: float | None = None, target: str = "") -> None:
    parts = [f"{name}: {value}"]
    if baseline:
        parts.append(f"baseline {baseline}")
    if ratio is not None:
        parts.append(f"ratio {ratio:.2f}")
    if target:
        parts.append(f"target {target}")
    print(" | ".join(parts), flush=True)
