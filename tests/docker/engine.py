"""A Docker engine for tests/test_docker.py: found or started, images built once per content hash, containers
waited on until healthy.

Nothing here fails for want of an engine: a machine without Docker, or one where dockerd cannot start, skips the
Docker tests with the reason (scripts/docker/engine.sh installs Debian's docker.io and starts dockerd).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from core.config import ROOT
from tests.test_deploy import dockerignored, instructions

BASE_PREFIX = "web-bot-local"  # scripts/docker-base.sh's default WEB_BOT_BASE_PREFIX
BASE = f"{BASE_PREFIX}/python:3.11-bookworm"
BASE_TIMEOUT_S = 1800  # debootstrap and four small images: ~3 min here
# A first build compiles llama.cpp inside the builder stage; later builds reuse Docker's layer cache, and a build
# whose inputs are unchanged is skipped altogether (the tag names their hash).
BUILD_TIMEOUT_S = 3600
DAEMON_START_S = 60


class Docker:
    """The docker CLI against one engine; ``started`` is the dockerd this test run started itself, if any."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.started: subprocess.Popen[bytes] | None = None

    def run(self, *args: str, timeout: float = 120, stdin: str | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> str:  # fmt: skip
        """``docker ARGS``'s standard output, stripped; an AssertionError with its error output when it fails."""
        result = subprocess.run(
            [self.client, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})}, cwd=ROOT,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"docker {shlex.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result.stdout.strip()

    def answers(self) -> bool:
        return self.run("version", "--format", "{{.Server.Version}}", check=False, timeout=30) != ""

    def has_image(self, tag: str) -> bool:
        return self.run("image", "inspect", "--format", "{{.Id}}", tag, check=False) != ""

    def stop_daemon(self) -> None:
        if self.started is not None and self.started.poll() is None:
            self.started.terminate()
            self.started.wait(60)


def engine(log: Path) -> Docker:
    """A Docker engine that answers: the running one, else a dockerd started here (as root), else a skip."""
    client = shutil.which("docker")
    if client is None:
        pytest.skip("no docker client (bash scripts/docker/engine.sh installs Debian's docker.io)")
    docker = Docker(client)
    if docker.answers():
        return docker
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if dockerd is None:
        pytest.skip("no Docker engine: dockerd is not installed (bash scripts/docker/engine.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("dockerd is not running, and only root can start it")
    with log.open("wb") as out:
        docker.started = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + DAEMON_START_S
    while time.monotonic() < deadline and docker.started.poll() is None:
        if docker.answers():
            return docker
        time.sleep(1)
    docker.stop_daemon()
    tail = log.read_text(errors="replace").strip().splitlines()[-5:]
    pytest.skip("dockerd cannot run on this machine: " + " | ".join(tail))


def compose_available(docker: Docker) -> bool:
    return docker.run("compose", "version", check=False) != ""


def build_base_images(docker: Docker) -> float:
    """scripts/docker-base.sh (it keeps images whose making has not changed); returns its seconds. Skips when the
    script says something it needs is missing (its exit code 3)."""
    start = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker-base.sh")], capture_output=True, text=True, timeout=BASE_TIMEOUT_S
    )
    if result.returncode == 3:
        pytest.skip(f"no base images: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, f"scripts/docker-base.sh failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return time.monotonic() - start


def build_inputs() -> list[Path]:
    """Every file the Dockerfile's build reads: itself, .dockerignore and what its COPY lines bring in."""
    found = {ROOT / "Dockerfile", ROOT / ".dockerignore"}
    for keyword, args in instructions():
        if keyword == "COPY" and "--from=" not in args:
            *sources, _dest = shlex.split(args)
            for source in (ROOT / s for s in sources if not s.startswith("--")):
                found |= {source} if source.is_file() else {p for p in source.rglob("*") if p.is_file()}
    return sorted(p for p in found if not dockerignored(str(p.relative_to(ROOT))))


def image_tag(docker: Docker) -> str:
    """web-bot:test-HASH, HASH over the build's input files (paths and contents) and the base image's id."""
    digest = hashlib.sha256(docker.run("image", "inspect", "--format", "{{.Id}}", BASE).encode())
    for path in build_inputs():
        digest.update(b"\0" + str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"web-bot:test-{digest.hexdigest()[:16]}"


def build_image(docker: Docker) -> tuple[str, float | None]:
    """The project's image from the local base, built unless an image of the same inputs exists; its tag and the
    build's seconds (None when it was already there). Builds use the host's network, for pip and apt."""
    tag = image_tag(docker)
    if docker.has_image(tag):
        return tag, None
    start = time.monotonic()
    docker.run("build", "--network", "host", "--build-arg", f"BASE={BASE}", "-t", tag, ".", timeout=BUILD_TIMEOUT_S)
    seconds = time.monotonic() - start
    # Only the newest test image is kept: each is 2.6 GB, most of it shared, the rest not.
    for old in docker.run("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "web-bot").split():
        if old.startswith("web-bot:test-") and old != tag:
            docker.run("image", "rm", old, check=False)
    return tag, seconds


def wait_healthy(docker: Docker, container: str, timeout: float = 300) -> float:
    """Seconds until ``container``'s health check says healthy; fails with its log when it exits or times out."""
    start = time.monotonic()
    state = ""
    while time.monotonic() - start < timeout:
        state = docker.run("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", container)
        if state == "running healthy":
            return time.monotonic() - start
        if not state.startswith(("created", "running", "restarting")) or state.endswith("unhealthy"):
            break
        time.sleep(0.5)
    logs = docker.run("logs", "--tail", "40", container, check=False)
    raise AssertionError(f"{container} is {state!r} after {time.monotonic() - start:.0f} s:\n{logs}")


def published(docker: Docker, container: str, port: int) -> str:
    """host:port that ``container``'s ``port`` is published on (127.0.0.1 only)."""
    address = docker.run("port", container, f"{port}/tcp").splitlines()[0]
    assert address.startswith("127.0.0.1:"), address
    return address
