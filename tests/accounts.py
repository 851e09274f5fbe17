"""Accounts for tests: a password-mode server with an admin and two users, as fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets

from core.config import Settings

if TYPE_CHECKING:
    from tests.conftest import Served

PASSWORDS = {"root": "root-secret-pw-1", "alice": "alice-secret-pw-2", "bob": "bob-secret-pw-3"}
CHAT = "alice-chat"  # alice's conversation


class People:
    """A password-mode server with an admin (root) and two users (alice owns CHAT, bob does not)."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.cookies: dict[str, str] = {}
        self.ids: dict[str, int] = {}
        self.tokens: dict[str, str] = {}

    async def start(self) -> People:
        async with httpx.AsyncClient(base_url=self.served.url) as http:
            answer = await http.post("/api/auth/setup", json={"username": "root", "password": PASSWORDS["root"]})
            assert answer.status_code == 201, answer.text
            self.cookies["root"] = answer.cookies["web_bot_session"]
            self.ids["root"] = answer.json()["user"]["id"]
            for name in ("alice", "bob"):
                made = await http.post(
                    "/api/users", json={"username": name, "password": PASSWORDS[name], "role": "user"},
                    headers=self.cookie("root"),
                )
                assert made.status_code == 201, made.text
                self.ids[name] = made.json()["id"]
                self.cookies[name] = await self.sign_in(http, name)
            created = await http.post("/api/tokens", json={"name": "script"}, headers=self.cookie("alice"))
            assert created.status_code == 201
            self.tokens["alice"] = created.json()["token"]
        # alice's first socket makes CHAT hers
        async with websockets.connect(f"{self.served.ws_url}/ws/{CHAT}", additional_headers=self.cookie("alice")) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
        return self

    async def sign_in(self, http: httpx.AsyncClient, name: str) -> str:
        """Sign ``name`` in as a browser of their own would (signing in revokes a session the request carries)."""
        http.cookies.clear()
        answer = await http.post("/api/auth/login", json={"username": name, "password": PASSWORDS[name]})
        assert answer.status_code == 200, answer.text
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        return str(answer.cookies["web_bot_session"])

    def cookie(self, name: str) -> dict[str, str]:
        return {"Cookie": f"web_bot_session={self.cookies[name]}"} if name in self.cookies else {}

    def headers(self, who: str) -> dict[str, str]:
        return self.cookie(who) if who != "anonymous" else {}


@pytest.fixture
def password_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**sections: dict[str, Any]) -> Settings:
        return make_settings({"auth": {"mode": "password"}, **sections})

    return make


@pytest.fixture
async def people(serve: Callable[[Settings], Served], password_settings: Callable[..., Settings]) -> People:
    return await People(serve(password_settings())).start()
