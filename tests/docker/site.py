"""A running web-bot reached as a browser would: sign in, a WebSocket chat, an audio upload, the history.

The same checks run against a container's published port (plain HTTP) and against nginx in front of the compose
file's two instances (HTTPS with a self-signed certificate).
"""

from __future__ import annotations

import json
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

# The local model answers on a shared 2-core CPU; generous bounds, since a test that waits is not a test that fails.
TURN_TIMEOUT_S = 300
COOKIE = "web_bot_session"


def self_signed(folder: Path) -> ssl.SSLContext:
    """fullchain.pem and privkey.pem for 127.0.0.1 in ``folder`` (nginx.conf's names), and a client context that
    trusts exactly that certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    key.chmod(0o644)  # nginx's workers read it as another user from a read-only mount
    return ssl.create_default_context(cafile=str(cert))


@dataclass
class Site:
    """``address`` is host:port; ``tls`` a client context for HTTPS/WSS, or None for plain HTTP/WS."""

    address: str
    tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def http(self, cookie: str | None = None) -> httpx.Client:
        cookies = {COOKIE: cookie} if cookie else None
        return httpx.Client(base_url=self.url, verify=self.tls or True, cookies=cookies, timeout=TURN_TIMEOUT_S)

    def sign_in(self, username: str, password: str) -> str:
        """The session cookie /api/auth/login sets."""
        with self.http() as http:
            answer = http.post("/api/auth/login", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        return str(answer.cookies[COOKIE])

    def chat(self, cookie: str, client_id: str, text: str) -> dict[str, Any]:
        """Sends ``text`` on /ws/{client_id}; returns the ``reply`` event (fails on an ``error`` event)."""
        url = f"{'wss' if self.tls else 'ws'}://{self.address}/ws/{client_id}"
        with connect(url, ssl=self.tls, additional_headers={"Cookie": f"{COOKIE}={cookie}"}, max_size=None,
                     open_timeout=30) as ws:  # fmt: skip
            welcome = json.loads(ws.recv(timeout=30))
            assert welcome["type"] == "welcome", welcome
            ws.send(json.dumps({"type": "text", "text": text}))
            while True:
                frame = ws.recv(timeout=TURN_TIMEOUT_S)
                if isinstance(frame, bytes):
                    continue  # spoken reply audio
                event: dict[str, Any] = json.loads(frame)
                assert event["type"] != "error", event
                if event["type"] == "reply":
                    return event

    def upload(self, cookie: str, client_id: str, audio: bytes) -> dict[str, Any]:
        """POSTs a WAV to /upload_audio; returns the JSON answer."""
        with self.http(cookie) as http:
            answer = http.post("/upload_audio", files={"file": ("speech.wav", audio, "audio/wav")},
                               data={"client_id": client_id})  # fmt: skip
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def status(self, cookie: str) -> dict[str, Any]:
        """/api/status as an admin sees it (engines, database, Redis, instances)."""
        with self.http(cookie) as http:
            answer = http.get("/api/status")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def history(self, cookie: str, client_id: str) -> list[dict[str, Any]]:
        with self.http(cookie) as http:
            answer = http.get(f"/api/history/{client_id}")
        assert answer.status_code == 200, answer.text
        messages: list[dict[str, Any]] = answer.json()["messages"]
        return messages
