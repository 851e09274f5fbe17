"""The Dockerfile and docker-compose.yml for real: the image built from local Debian-made bases (no registry can be
pulled from here), run as a container and as the compose file's five services behind nginx.

Each checks what a user would: the server runs as the Dockerfile's unprivileged user, the health check passes, a
WebSocket chat (the image's own local model answers) and an audio upload (its Whisper transcribes generated speech)
work after signing in, and the history is still there after the containers are replaced on the same volumes.

Slow: a first build compiles llama.cpp (scripts/docker-base.sh, then the image; both are kept for later runs by a
hash of their inputs). Skipped with the reason where no Docker engine can run (scripts/docker/engine.sh installs
one). The figures (build times, image size, start to healthy) go to test-artifacts/docker.json.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.config import ROOT
from tests.docker.engine import (
    Docker,
    build_base_images,
    build_image,
    compose_available,
    engine,
    published,
    wait_healthy,
)
from tests.docker.site import Site, self_signed
from tests.speech import SENTENCE_WER, SENTENCES, speak, wav, wer

pytestmark = pytest.mark.slow

# A first image build compiles llama.cpp inside Docker (23 minutes on 2 busy cores): past what `make test` can spend
# in CI's budget, so these run on demand, `make docker-test`.
if os.environ.get("DOCKER_TESTS") != "1":
    pytest.skip("Docker tests run with `make docker-test` (DOCKER_TESTS=1)", allow_module_level=True)

UID = "10001"  # the Dockerfile's USER
ADMIN, PASSWORD = "root", "docker-secret-pw-1"
SPOKEN = SENTENCES[4]  # "Turn off the lights in the kitchen."
COMPOSE_FILES = ["-f", "docker-compose.yml", "-f", "tests/docker/compose.local.yml"]
FIGURES = ROOT / "test-artifacts" / "docker.json"


@dataclass
class Built:
    docker: Docker
    image: str
    figures: dict[str, float | None] = field(default_factory=dict)

    def record(self, **figures: float | None) -> None:
        self.figures.update({k: None if v is None else round(v, 1) for k, v in figures.items()})
        FIGURES.parent.mkdir(exist_ok=True)
        FIGURES.write_text(json.dumps(self.figures, indent=2) + "\n")
        print(f"docker figures: {self.figures}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    docker = engine(tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    try:
        base_s = build_base_images(docker)
        image, build_s = build_image(docker)
        size = int(docker.run("image", "inspect", "--format", "{{.Size}}", image))
        result = Built(docker, image)
        result.record(base_script_s=base_s, image_build_s=build_s, image_mb=size / 1e6)
        yield result
    finally:
        docker.stop_daemon()


def add_admin(docker: Docker, *exec_in: str, env: dict[str, str] | None = None) -> None:
    """The first admin, made in the container as the README says (``exec_in``: how to run a command in it)."""
    command = [*exec_in, "python", "-m", "web_bot", "users", "add", ADMIN, "--admin", "--password-stdin"]
    docker.run(*command, stdin=PASSWORD + "\n", timeout=120, env=env)


def use(site: Site, tag: str) -> str:
    """Chats and uploads on ``site``; returns the session cookie."""
    cookie = site.sign_in(ADMIN, PASSWORD)
    status = site.status(cookie)
    assert status["status"] == "ok" and status["llm_available"], status
    reply = site.chat(cookie, f"chat-{tag}", "Say hello in three words.")
    assert reply["text"].strip(), reply
    pcm, rate = speak(SPOKEN)
    answer = site.upload(cookie, f"upload-{tag}", wav(pcm, rate))
    assert answer["status"] == "success" and wer(SPOKEN, answer["transcription"]) <= SENTENCE_WER, answer
    return cookie


def kept(site: Site, tag: str) -> None:
    """What ``use`` left is in the history, read after a fresh sign-in (the account was kept too)."""
    cookie = site.sign_in(ADMIN, PASSWORD)
    chat = site.history(cookie, f"chat-{tag}")
    assert [m["role"] for m in chat] == ["user", "assistant"] and chat[0]["content"] == "Say hello in three words."
    upload = site.history(cookie, f"upload-{tag}")
    assert upload and upload[0]["role"] == "user" and wer(SPOKEN, upload[0]["content"]) <= SENTENCE_WER
    assert upload[0]["has_recording"], "the uploaded audio is kept on the audio volume"


def test_the_image_runs_unprivileged_healthy_and_keeps_its_data_on_its_volumes(built: Built) -> None:
    docker, tag = built.docker, secrets.token_hex(4)
    name, volumes = f"web-bot-test-{tag}", [f"web-bot-test-{tag}-data", f"web-bot-test-{tag}-audio"]
    # The Dockerfile's health check, run every 2 s instead of 30 s so that start to healthy is measured closely.
    run = ["run", "-d", "--name", name, "-p", "127.0.0.1::8000", "--health-interval", "2s",
           "-v", f"{volumes[0]}:/app/data", "-v", f"{volumes[1]}:/app/audio", built.image]  # fmt: skip
    try:
        docker.run(*run)
        started_s = wait_healthy(docker, name)
        assert docker.run("exec", name, "id", "-u") == UID
        status = docker.run("exec", name, "cat", "/proc/1/status")
        assert f"Uid:\t{UID}\t" in status, "the server itself runs unprivileged"
        add_admin(docker, "exec", "-i", name)
        site = Site(published(docker, name, 8000))
        use(site, tag)
        # A new container on the same volumes: only what the volumes hold can be there.
        docker.run("rm", "-f", "-v", name)
        docker.run(*run)
        restarted_s = wait_healthy(docker, name)
        kept(Site(published(docker, name, 8000)), tag)
        built.record(start_to_healthy_s=started_s, restart_to_healthy_s=restarted_s)
    finally:
        docker.run("rm", "-f", "-v", name, check=False)
        docker.run("volume", "rm", *volumes, check=False)


def test_compose_brings_up_two_instances_behind_nginx_with_postgres_and_redis(built: Built, tmp_path: Path) -> None:
    docker = built.docker
    if not compose_available(docker):
        pytest.skip("no Compose v2 (`docker compose`; bash scripts/docker/engine.sh installs it)")
    tls = self_signed(tmp_path / "certs")
    project, tag = f"web-bot-test-{secrets.token_hex(4)}", "compose"
    env = {"WEB_BOT_TEST_IMAGE": built.image, "WEB_BOT_TEST_CERTS": str(tmp_path / "certs"),
           "POSTGRES_PASSWORD": secrets.token_urlsafe(16)}  # fmt: skip

    def compose(*args: str, check: bool = True) -> str:
        return docker.run("compose", "-p", project, *COMPOSE_FILES, *args, env=env, timeout=600, check=check)

    try:
        # --wait: every service running, and the instances' and the databases' health checks passing.
        start = time.monotonic()
        compose("up", "-d", "--no-build", "--wait")
        up_s = time.monotonic() - start
        for app in ("app1", "app2"):
            assert compose("exec", "-T", app, "id", "-u") == UID
        add_admin(docker, "compose", "-p", project, *COMPOSE_FILES, "exec", "-T", "app1", env=env)
        site = Site(compose("port", "nginx", "443"), tls)
        cookie = use(site, tag)
        status = site.status(cookie)
        assert status["db_connected"] and status["redis"]["connected"], status
        assert status["instances"] == 2 and status["instance"]["id"] in ("app1", "app2"), "both share Redis"
        # Containers removed and made again; the named volumes (PostgreSQL's among them) stay. (`rm -v` rather than
        # `down`: it also drops Redis's anonymous /data volume, which `down --volumes` would no longer find.)
        compose("rm", "--stop", "--force", "--volumes")
        start = time.monotonic()
        compose("up", "-d", "--no-build", "--wait")
        built.record(compose_up_to_healthy_s=up_s, compose_again_to_healthy_s=time.monotonic() - start)
        kept(Site(compose("port", "nginx", "443"), tls), tag)
    finally:
        compose("down", "--volumes", "--remove-orphans", check=False)
