"""nginx.conf for real: Debian's nginx runs the repository's file (ports, upstreams and certificate paths rewritten)
over TLS in front of two web-bot instances that share PostgreSQL and Redis.

The instances send no WebSocket pings here (uvicorn's would keep any socket busy), so only nginx's timeouts decide
whether an idle socket lives.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as connect_sync

from core.config import ROOT, Settings, load_settings
from tests.backends import unavailable
from tests.fakes.openai_server import FakeOpenAI, ThreadedServer, free_port
from web_bot.app import create_app
from web_bot.uploads import MULTIPART_OVERHEAD

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

NGINX_DEFAULT_READ_TIMEOUT_S = 60  # proxy_read_timeout when a location does not set one
IDLE_S = NGINX_DEFAULT_READ_TIMEOUT_S + 5


def nginx_binary() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        unavailable("nginx", "not installed (scripts/system-deps.sh installs it)")
    return binary


def replace_once(text: str, pattern: str, replacement: str) -> str:
    """Rewrite one line of the config; fails when the line is not there exactly once (the config changed)."""
    new, count = re.subn(pattern, replacement, text)
    assert count == 1, f"nginx.conf should have exactly one match of {pattern!r}, found {count}"
    return new


def render(config: str, *, http_port: int, https_port: int, apps: list[int], cert: Path, key: Path) -> str:
    config = replace_once(config, r"listen 80;", f"listen 127.0.0.1:{http_port};")
    config = replace_once(config, r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    for n, port in enumerate(apps, start=1):
        config = replace_once(config, rf"server app{n}:8000 ", f"server 127.0.0.1:{port} ")
    config = replace_once(config, r"ssl_certificate +\S+;", f"ssl_certificate {cert};")
    return replace_once(config, r"ssl_certificate_key +\S+;", f"ssl_certificate_key {key};")


class Nginx:
    """Debian's nginx in the foreground with its files under ``workdir``, serving a rendered nginx.conf."""

    def __init__(self, workdir: Path, site: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "web-bot.conf").write_text(site)
        temp = "\n".join(
            f"    {kind}_temp_path {workdir / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;\n" if os.geteuid() == 0 else ""  # the workers must read the 0700 pytest folders
        (workdir / "main.conf").write_text(
            f"{user}worker_processes 1;\npid {workdir / 'nginx.pid'};\nerror_log {workdir / 'error.log'} info;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {workdir / 'access.log'};\n{temp}\n    include {workdir / 'web-bot.conf'};\n}}\n"
        )
        self.args = [nginx_binary(), "-p", str(workdir), "-c", str(workdir / "main.conf")]
        self.proc: subprocess.Popen[bytes] | None = None

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.args, "-t"], capture_output=True, text=True, timeout=30)

    def start(self, port: int) -> Nginx:
        checked = self.check()
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen([*self.args, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def self_signed(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@dataclass
class Stack:
    """nginx on two ports in front of two instances, and a WebSocket left idle since the start."""

    https: str
    wss: str
    http_port: int
    https_port: int
    tls: ssl.SSLContext
    apps: list[ThreadedServer]
    settings: Settings
    config: str
    cert: Path
    key: Path
    workdir: Path
    idle: ClientConnection
    idle_since: float


def settings_for(workdir: Path, fake: FakeOpenAI, database: str, redis_url: str, prefix: str, name: str) -> Settings:
    path = workdir / f"{name}.json"
    fake_url = f"{fake.url}/v1"  # type: ignore[attr-defined]
    config = {
        "llm": {"engine": "openai", "base_url": fake_url, "model_name": "fake-model", "timeout_s": 5, "max_retries": 0},
        "stt": {"engine": "openai", "base_url": fake_url, "api_key": "test"},
        "tts": {"engine": "none"},
        "database": {"url": database},
        "redis": {"url": redis_url, "prefix": prefix, "instance_id": name},
        "audio": {"dir": str(workdir / "audio")},
        "logging": {"file": str(workdir / f"{name}.log")},
    }
    path.write_text(json.dumps(config))
    return load_settings(path, environ={})


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI, postgres_database: str, redis_server_url: str
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("nginx")
    prefix = f"test-{secrets.token_hex(4)}"
    apps = []
    nginx = None
    try:
        for name in ("app1", "app2"):
            settings = settings_for(workdir, fake_openai, postgres_database, redis_server_url, prefix, name)
            server = settings.server
            apps.append(
                ThreadedServer(
                    create_app(settings),
                    # What `python -m web_bot` passes uvicorn, but without pings (see the module's docstring).
                    proxy_headers=True,
                    forwarded_allow_ips=server.forwarded_allow_ips,
                    ws_max_size=16 * 1024 * 1024,
                    ws_ping_interval=None,
                ).start()
            )
        cert, key = self_signed(workdir)
        http_port, https_port = free_port(), free_port()
        config = (ROOT / "nginx.conf").read_text()
        site = render(config, http_port=http_port, https_port=https_port, apps=[a.port for a in apps], cert=cert,
                      key=key)  # fmt: skip
        nginx = Nginx(workdir / "main", site).start(https_port)
        tls = ssl.create_default_context(cafile=str(cert))
        wss = f"wss://127.0.0.1:{https_port}"
        with connect_sync(f"{wss}/ws/idle-{prefix}", ssl=tls, ping_interval=None, max_size=None) as idle:
            assert json.loads(idle.recv(timeout=10))["type"] == "welcome"
            yield Stack(
                https=f"https://127.0.0.1:{https_port}", wss=wss, http_port=http_port, https_port=https_port,
                tls=tls, apps=apps, settings=settings, config=config, cert=cert, key=key, workdir=workdir,
                idle=idle, idle_since=time.monotonic(),
            )  # fmt: skip
    finally:
        if nginx is not None:
            nginx.stop()
        for app in apps:
            app.stop()


async def open_tab(stack: Stack, client_id: str) -> tuple[Any, str]:
    """A tab through nginx, and the id of the instance nginx sent it to (which `/status` names)."""
    ws = await websockets.connect(f"{stack.wss}/ws/{client_id}", ssl=stack.tls, ping_interval=None, max_size=None)
    assert json.loads(await ws.recv())["type"] == "welcome"
    await ws.send("/status")
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == "command":
            return ws, event["data"]["instance"]["id"]


async def until(ws: Any, kind: str, timeout: float = 15) -> list[dict[str, Any]]:
    events = []
    while True:
        frame = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(frame, str):
            events.append(json.loads(frame))
            if events[-1]["type"] == kind:
                return events


def test_nginx_accepts_the_config_and_the_upload_limit_matches(stack: Stack) -> None:
    limit = int(stack.settings.audio.max_upload_mb * 1_000_000)
    size = re.search(r"client_max_body_size (\d+)m;", stack.config)
    assert size is not None
    allowed = int(size.group(1)) * 1024 * 1024
    assert limit + MULTIPART_OVERHEAD <= allowed <= limit + 2 * 1024 * 1024, "the limits should match, with headroom"
    assert re.search(r"map \$http_upgrade \$connection_upgrade", stack.config)
    ws_location = stack.config[stack.config.index("location /ws/") :]
    assert re.search(r"proxy_read_timeout (\d+)s;", ws_location[: ws_location.index("}")]).group(1) == "3600"  # type: ignore[union-attr]


async def test_plain_http_redirects_to_https(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{stack.http_port}/some/page?x=1")
    assert response.status_code == 301
    assert response.headers["location"] == "https://127.0.0.1/some/page?x=1"


async def test_forwarded_headers_are_honoured(stack: Stack) -> None:
    async with httpx.AsyncClient(verify=stack.tls) as http:
        page = await http.get(f"{stack.https}/")
        status = (await http.get(f"{stack.https}/api/status")).json()
    assert page.status_code == 200
    # The app builds its asset URLs from X-Forwarded-Proto and Host: http:// ones would be blocked as mixed content.
    assert f'href="https://127.0.0.1:{stack.https_port}/static/style.css' in page.text
    assert status["redis"]["connected"] and status["db_connected"] and status["instances"] == 2


async def test_chat_through_nginx_reaches_tabs_on_both_instances(stack: Stack) -> None:
    client_id = f"tabs-{secrets.token_hex(3)}"
    tabs: dict[str, Any] = {}
    opened = []
    try:
        while len(tabs) < 2 and len(opened) < 6:  # least_conn spreads new sockets; keep opening until both have one
            ws, instance = await open_tab(stack, client_id)
            opened.append(ws)
            tabs.setdefault(instance, ws)
        assert set(tabs) == {"app1", "app2"}, "nginx should spread sockets over both instances"
        await tabs["app1"].send(json.dumps({"type": "text", "text": "hello through nginx"}))
        here = await until(tabs["app1"], "reply")
        there = await until(tabs["app2"], "reply")
        assert "hello through nginx" in here[-1]["text"] and there[-1]["text"] == here[-1]["text"]
        assert any(e["type"] == "reply_delta" for e in there), "the reply streamed to the other instance's tab"
    finally:
        for ws in opened:
            await ws.close()


def wav_of_size(size: int, rate: int = 32000) -> bytes:
    """A mono 16-bit WAV file of exactly ``size`` bytes (a quiet tone)."""
    frames = (size - 44) // 2
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((b"\x10\x00\xf0\xff" * (frames // 2 + 1))[: frames * 2])
    data = buf.getvalue()
    assert len(data) == size
    return data


async def test_upload_of_the_limit_size_goes_through_nginx(stack: Stack, fake_openai: FakeOpenAI) -> None:
    limit = int(stack.settings.audio.max_upload_mb * 1_000_000)
    audio = wav_of_size(limit)  # 250 s at 32 kHz: under audio.max_duration_s
    async with httpx.AsyncClient(verify=stack.tls, timeout=120) as http:
        response = await http.post(
            f"{stack.https}/upload_audio", files={"file": ("big.wav", audio, "audio/wav")}, data={"client_id": "big"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "success" and body["transcription"] == fake_openai.transcript
        too_big = await http.post(
            f"{stack.https}/upload_audio", files={"file": ("huge.wav", audio + b"\0" * 2_000_000, "audio/wav")}
        )
    assert too_big.status_code == 413 and "nginx" in too_big.text, "nginx itself turns away what no limit allows"


async def test_a_short_read_timeout_would_drop_an_idle_websocket(stack: Stack) -> None:
    """The control: the same config with /ws/'s timeout at 2 s loses an idle socket, so the setting is what counts."""
    short = replace_once(stack.config, r"proxy_read_timeout 3600s;", "proxy_read_timeout 2s;")
    ports = (free_port(), free_port())
    site = render(short, http_port=ports[0], https_port=ports[1], apps=[a.port for a in stack.apps],
                  cert=stack.cert, key=stack.key)  # fmt: skip
    nginx = Nginx(stack.workdir / "short", site).start(ports[1])
    try:
        url = f"wss://127.0.0.1:{ports[1]}/ws/short-{secrets.token_hex(3)}"
        async with websockets.connect(url, ssl=stack.tls, ping_interval=None) as ws:
            await ws.recv()  # welcome
            started = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()  # idle: nothing comes, until nginx gives up on the socket
            assert 1.5 < time.monotonic() - started < 10
    finally:
        nginx.stop()


def test_websocket_idle_longer_than_nginx_default_timeout_survives(stack: Stack) -> None:
    """Runs last: the socket opened with the stack has sat idle for more than nginx's default 60 s."""
    remaining = IDLE_S - (time.monotonic() - stack.idle_since)
    if remaining > 0:
        time.sleep(remaining)  # the sync socket's own thread keeps reading meanwhile; nothing is sent
    idle_for = time.monotonic() - stack.idle_since
    assert idle_for > NGINX_DEFAULT_READ_TIMEOUT_S
    with pytest.raises(TimeoutError):
        stack.idle.recv(timeout=0)  # nothing arrived while idle (no pings either way)
    stack.idle.send(json.dumps({"type": "text", "text": f"still there after {idle_for:.0f} s?"}))
    while True:
        event = json.loads(stack.idle.recv(timeout=15))
        if event["type"] == "reply":
            break
    assert "still there" in event["text"]


async def test_a_clients_own_forwarded_for_is_replaced_by_nginx(stack: Stack) -> None:
    # The stack runs in mode none, which answers only this machine: were the client's X-Forwarded-For believed,
    # this request (from 127.0.0.1) would pass as 192.0.2.9 and be refused; nginx writes the real address instead.
    async with httpx.AsyncClient(verify=stack.tls) as http:
        spoofed = await http.get(f"{stack.https}/api/status", headers={"X-Forwarded-For": "192.0.2.9"})
    assert spoofed.status_code == 200, spoofed.text
