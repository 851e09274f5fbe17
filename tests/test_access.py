"""Who may do what (issue 13), through a real server: every route and the socket × {anonymous, another user, the
owner, an admin}, sign-in limits, Origin checks, revocation, the modes, the CLI, and what reaches the log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from core.auth.limits import RateLimits
from core.config import LimitsSettings, Settings
from core.errors import ConfigError, RateLimited
from tests.accounts import CHAT, PASSWORDS, People
from tests.conftest import Served
from web_bot.app import create_app

ROOT = Path(__file__).resolve().parent.parent


WHO = ("anonymous", "other", "owner", "admin")
NAME = {"other": "bob", "owner": "alice", "admin": "root", "anonymous": "anonymous"}

# route -> expected status for anonymous, another user, the owner, an admin
ROUTES: list[tuple[str, str, dict[str, Any] | None, tuple[int, int, int, int]]] = [
    ("GET", "/", None, (200, 200, 200, 200)),
    ("GET", "/api/auth/me", None, (200, 200, 200, 200)),
    ("GET", "/api/status", None, (200, 200, 200, 200)),
    ("GET", f"/api/history/{CHAT}", None, (401, 404, 200, 404)),
    ("GET", "/api/history/nobodys-yet", None, (401, 200, 200, 200)),
    ("GET", "/api/tokens", None, (401, 200, 200, 200)),
    ("POST", "/api/tokens", {"name": "t"}, (401, 201, 201, 201)),
    ("GET", "/api/users", None, (401, 403, 403, 200)),
    ("POST", "/api/users", {"username": "u{n}", "password": "long-enough-pw"}, (401, 403, 403, 201)),
    ("PATCH", "/api/users/{bob}", {"role": "user"}, (401, 403, 403, 200)),
    ("POST", "/api/auth/password", {"current_password": "wrong-one", "new_password": "whatever-x"},
     (401, 401, 401, 401)),
    ("POST", "/api/auth/setup", {"username": "late", "password": "long-enough-pw"}, (403, 403, 403, 403)),
    ("GET", "/metrics", None, (200, 200, 200, 200)),  # 127.0.0.1 is in metrics.allow_ips
]


async def test_every_route_answers_each_kind_of_caller_as_the_table_says(people: People) -> None:
    wrong = []
    async with httpx.AsyncClient(base_url=people.served.url) as http:
        for n, (method, path, body, expected) in enumerate(ROUTES):
            for who, status in zip(WHO, expected, strict=True):
                url = path.replace("{bob}", str(people.ids["bob"]))
                payload = json.loads(json.dumps(body).replace("{n}", f"{n}{who}")) if body is not None else None
                answer = await http.request(method, url, json=payload, headers=people.headers(NAME[who]))
                if answer.status_code != status:
                    got = f"{answer.status_code}: {answer.text[:80]}"
                    wrong.append(f"{method} {path} as {who}: {got}, expected {status}")
                elif status >= 400:
                    assert answer.json()["code"], answer.text
        # the status's details are for admins only
        brief = (await http.get("/api/status", headers=people.cookie("bob"))).json()
        full = (await http.get("/api/status", headers=people.cookie("root"))).json()
        assert set(brief) == {"status", "version", "auth"}
        assert {"llm", "active_connections", "instances", "db_connected"} <= set(full)
        # an upload to alice's conversation: bob and root are told it does not exist; alice gets past the checks
        files = {"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}
        for who, status in (("anonymous", 401), ("other", 404), ("admin", 404), ("owner", 503)):
            answer = await http.post("/upload_audio", files=files, data={"client_id": CHAT},
                                     headers=people.headers(NAME[who]))
            if answer.status_code != status:
                wrong.append(f"POST /upload_audio as {who}: {answer.status_code}, expected {status}")
        # revoking alice's token: bob cannot (it is not his: 404), alice can
        listed = (await http.get("/api/tokens", headers=people.cookie("alice"))).json()["tokens"]
        token_id = listed[0]["id"]
        assert (await http.delete(f"/api/tokens/{token_id}", headers=people.cookie("bob"))).status_code == 404
        assert (await http.delete(f"/api/tokens/{token_id}", headers=people.cookie("root"))).status_code == 404
        assert (await http.delete(f"/api/tokens/{token_id}")).status_code == 401
        assert (await http.delete(f"/api/tokens/{token_id}", headers=people.cookie("alice"))).status_code == 204
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("who", "close_code"), [("anonymous", 4401), ("other", 4404), ("admin", 4404)])
async def test_the_socket_refuses_whoever_does_not_own_the_conversation(
    people: People, who: str, close_code: int
) -> None:
    async with websockets.connect(
        f"{people.served.ws_url}/ws/{CHAT}", additional_headers=people.headers(NAME[who])
    ) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == close_code


async def test_the_owner_chats_and_reads_back_by_cookie_and_by_token(people: People) -> None:
    async with websockets.connect(f"{people.served.ws_url}/ws/{CHAT}", additional_headers=people.cookie("alice")) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "text", "text": "hello there"}))
        while json.loads(await ws.recv())["type"] != "reply":
            pass
    async with httpx.AsyncClient(base_url=people.served.url) as http:
        token = (await http.post("/api/tokens", json={"name": "cli"}, headers=people.cookie("alice"))).json()["token"]
        read = await http.get(f"/api/history/{CHAT}", headers={"Authorization": f"Bearer {token}"})
        assert read.status_code == 200
        assert [m["content"] for m in read.json()["messages"]][:1] == ["hello there"]
        # a wrong token is an error, not anonymity
        wrong = await http.get("/api/tokens", headers={"Authorization": "Bearer wbt_nonsense"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")


async def test_logout_and_revocation_hold_at_once(people: People) -> None:
    async with httpx.AsyncClient(base_url=people.served.url) as http:
        alice = people.cookie("alice")
        token = (await http.post("/api/tokens", json={"name": "soon gone"}, headers=alice)).json()
        bearer = {"Authorization": f"Bearer {token['token']}"}
        assert (await http.get("/api/tokens", headers=bearer)).status_code == 200
        assert (await http.delete(f"/api/tokens/{token['id']}", headers=alice)).status_code == 204
        assert (await http.get("/api/tokens", headers=bearer)).status_code == 401
        # an open socket ends at its next frame once its session is signed out
        async with websockets.connect(f"{people.served.ws_url}/ws/{CHAT}", additional_headers=alice) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            assert (await http.post("/api/auth/logout", headers=alice)).status_code == 204
            assert (await http.get("/api/tokens", headers=alice)).status_code == 401
            await ws.send(json.dumps({"type": "ping"}))
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 4401
        # a password change ends every session of that user, and the new password works
        bob = people.cookie("bob")
        second = await people.sign_in(http, "bob")
        changed = await http.post(
            "/api/auth/password", json={"current_password": PASSWORDS["bob"], "new_password": "bob-new-password"},
            headers=bob,
        )
        assert changed.status_code == 204
        assert (await http.get("/api/tokens", headers={"Cookie": f"web_bot_session={second}"})).status_code == 401
        renewed = {"Cookie": f"web_bot_session={changed.cookies['web_bot_session']}"}
        assert (await http.get("/api/tokens", headers=renewed)).status_code == 200
        # disabling an account ends its sessions, and it cannot sign in again
        root = people.cookie("root")
        assert (await http.patch(f"/api/users/{people.ids['bob']}", json={"disabled": True}, headers=root)).is_success
        assert (await http.get("/api/tokens", headers=renewed)).status_code == 401
        refused = await http.post("/api/auth/login", json={"username": "bob", "password": "bob-new-password"})
        assert refused.status_code == 403 and refused.json()["code"] == "account-disabled"
        # the last admin can be neither demoted nor disabled
        last = await http.patch(f"/api/users/{people.ids['root']}", json={"role": "user"}, headers=root)
        assert last.status_code == 409 and last.json()["code"] == "last-admin"


async def test_brute_force_sign_in_is_slowed_then_refused(
    serve: Callable[[Settings], Served], password_settings: Callable[..., Settings]
) -> None:
    served = serve(password_settings(limits={"enabled": True, "sign_in": "5/minute", "sign_in_slow_after": 2}))
    people = await People(served).start()
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        took = []
        for _ in range(5):
            began = time.monotonic()
            answer = await http.post("/api/auth/login", json={"username": "alice", "password": "guess"})
            took.append(time.monotonic() - began)
            assert answer.status_code == 401 and answer.json()["code"] == "bad-credentials"
        # after two failures each answer waits longer: 0.5 s, 1 s, 2 s (lower bounds: a busy machine only adds)
        assert took[2] >= 0.5 and took[3] >= 1.0 and took[4] >= 2.0, took
        refused = await http.post("/api/auth/login", json={"username": "alice", "password": PASSWORDS["alice"]})
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1 and refused.json()["retry_after_ms"] >= 1000
        # the limit is per address and per name: another name from this address is refused too
        other = await http.post("/api/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert other.status_code == 429
    assert people.ids["alice"]


async def test_a_foreign_origin_can_neither_connect_nor_post_with_the_cookie(people: People) -> None:
    alice = people.cookie("alice")
    async with websockets.connect(
        f"{people.served.ws_url}/ws/{CHAT}", additional_headers=alice, origin="https://evil.example"  # type: ignore[arg-type]
    ) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4403
    own = people.served.url
    async with websockets.connect(
        f"{people.served.ws_url}/ws/{CHAT}", additional_headers=alice, origin=own  # type: ignore[arg-type]
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
    async with httpx.AsyncClient(base_url=own) as http:
        foreign = await http.post("/api/tokens", json={"name": "x"}, headers={**alice, "Origin": "https://evil.example"})
        assert foreign.status_code == 403 and foreign.json()["code"] == "bad-origin"
        cross = await http.post("/api/tokens", json={"name": "x"}, headers={**alice, "Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        same = await http.post("/api/tokens", json={"name": "x"}, headers={**alice, "Origin": own})
        assert same.status_code == 201


async def test_socket_limits_refuse_with_retry_after_and_keep_the_socket(
    serve: Callable[[Settings], Served], password_settings: Callable[..., Settings]
) -> None:
    served = serve(password_settings(limits={"enabled": True, "messages": "2/minute", "sockets_per_user": 2}))
    people = await People(served).start()
    alice = people.cookie("alice")
    async with websockets.connect(f"{served.ws_url}/ws/{CHAT}", additional_headers=alice) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        for _ in range(2):
            await ws.send(json.dumps({"type": "text", "text": "hi"}))
            while json.loads(await ws.recv())["type"] != "reply":
                pass
        await ws.send(json.dumps({"type": "text", "text": "one too many"}))
        event = json.loads(await ws.recv())
        while event["type"] != "error":
            event = json.loads(await ws.recv())
        assert event["code"] == "rate-limited" and event["retry_after_ms"] >= 1000
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
        # a second socket fits; a third is one too many
        async with websockets.connect(f"{served.ws_url}/ws/{CHAT}", additional_headers=alice) as second:
            assert json.loads(await second.recv())["type"] == "welcome"
            async with websockets.connect(f"{served.ws_url}/ws/{CHAT}", additional_headers=alice) as third:
                refused = json.loads(await third.recv())
                assert refused["code"] == "rate-limited"
                with pytest.raises(ConnectionClosed):
                    await third.recv()
                assert third.close_code == 4429
    assert served.stored(CHAT)[:2] == [("user", "hi", "ok"), ("assistant", served.stored(CHAT)[1][1], "ok")]


async def test_audio_seconds_are_refused_once_used_up() -> None:
    limits = RateLimits(LimitsSettings(audio_seconds="10/hour"))
    await limits.check("audio_seconds", "user:1")
    await limits.spend("audio_seconds", "user:1", 25)  # what was heard counts, even past the limit
    with pytest.raises(RateLimited) as refused:
        await limits.check("audio_seconds", "user:1")
    assert refused.value.retry_after_s >= 1
    await limits.check("audio_seconds", "user:2")  # per user
    await limits.aclose()


def test_passwords_are_stored_as_argon2id(people: People) -> None:
    with sqlite3.connect(people.served.settings.database.db_path) as db:
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM users")]
        token_hashes = [row[0] for row in db.execute("SELECT token_hash FROM api_tokens")]
    assert len(hashes) == 3 and all(h.startswith("$argon2id$v=19$") for h in hashes)
    assert not any(pw in h for pw in PASSWORDS.values() for h in hashes)
    assert people.tokens["alice"] not in token_hashes
    assert hashlib.sha256(people.tokens["alice"].encode()).hexdigest() in token_hashes


async def test_nothing_secret_reaches_the_log(people: People) -> None:
    log = Path(people.served.settings.logging.file).read_text()
    assert "signed in" in log  # the log did record the sessions
    secrets = [*PASSWORDS.values(), *people.cookies.values(), *people.tokens.values()]
    assert not [s for s in secrets if s in log]
    assert not re.search(r"wbt_[A-Za-z0-9_-]{20,}", log)


async def test_conversations_made_before_accounts_are_closed_until_adopted(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings]
) -> None:
    before = serve(make_settings())  # mode none: no owners
    async with websockets.connect(f"{before.ws_url}/ws/old-chat") as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "text", "text": "from the old days"}))
        while json.loads(await ws.recv())["type"] != "reply":
            pass
    before.stop()
    closed = await People(serve(make_settings({"auth": {"mode": "password"}}))).start()
    async with httpx.AsyncClient(base_url=closed.served.url) as http:
        assert (await http.get("/api/history/old-chat", headers=closed.cookie("alice"))).status_code == 404
    closed.served.stop()
    adopted = serve(make_settings({"auth": {"mode": "password", "legacy_owner": "alice"}}))
    async with httpx.AsyncClient(base_url=adopted.url) as http:
        alice = {"Cookie": f"web_bot_session={await closed.sign_in(http, 'alice')}"}
        read = await http.get("/api/history/old-chat", headers=alice)
        assert read.status_code == 200 and read.json()["messages"][0]["content"] == "from the old days"
        bob = {"Cookie": f"web_bot_session={await closed.sign_in(http, 'bob')}"}
        assert (await http.get("/api/history/old-chat", headers=bob)).status_code == 404


async def test_proxy_mode_trusts_the_header_only_from_a_trusted_proxy(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings]
) -> None:
    trusted = serve(make_settings({"auth": {"mode": "proxy"}}))  # 127.0.0.1 is server.forwarded_allow_ips
    async with httpx.AsyncClient(base_url=trusted.url) as http:
        me = (await http.get("/api/auth/me", headers={"X-Forwarded-User": "carol"})).json()
        assert me["user"]["username"] == "carol" and me["via"] == "proxy"
        assert (await http.get("/api/history/x", headers={"X-Forwarded-User": "carol"})).status_code == 200
        assert (await http.get("/api/history/x")).status_code == 401
        refused = await http.post("/api/auth/login", json={"username": "carol", "password": "anything-at-all"})
        assert refused.status_code == 403
    untrusted = serve(make_settings({"auth": {"mode": "proxy"}, "server": {"forwarded_allow_ips": "10.9.9.9"}}))
    async with httpx.AsyncClient(base_url=untrusted.url) as http:
        me = (await http.get("/api/auth/me", headers={"X-Forwarded-User": "carol"})).json()
        assert me["user"] is None
        assert (await http.get("/api/history/x", headers={"X-Forwarded-User": "carol"})).status_code == 401


async def test_metrics_outside_allow_ips_need_an_admin(
    serve: Callable[[Settings], Served], password_settings: Callable[..., Settings]
) -> None:
    served = serve(password_settings(metrics={"allow_ips": ["10.0.0.0/8"]}))
    people = await People(served).start()
    async with httpx.AsyncClient(base_url=served.url) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers=people.cookie("alice"))).status_code == 403
        assert (await http.get("/metrics", headers=people.cookie("root"))).status_code == 200


def test_mode_none_listens_only_on_loopback_unless_told(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=r"auth\.mode is none"):
        create_app(make_settings({"server": {"host": "0.0.0.0"}}))
    create_app(make_settings({"server": {"host": "0.0.0.0"}, "auth": {"allow_anonymous": True}}))
    create_app(make_settings({"server": {"host": "0.0.0.0"}, "auth": {"mode": "password"}}))


async def test_anonymous_on_a_network_is_said_in_the_status(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings]
) -> None:
    served = serve(make_settings({"auth": {"allow_anonymous": True}}))
    async with httpx.AsyncClient(base_url=served.url) as http:
        status = (await http.get("/api/status")).json()
    assert status["auth"]["mode"] == "none" and "anyone" in status["auth"]["warning"]


async def test_security_headers_and_a_csp_that_allows_only_the_import_map(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/")
        api = await http.get("/api/status")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"]
    assert api.headers["x-content-type-options"] == "nosniff"
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page.text, re.S)
    assert len(inline) == 1, "the import map is the only inline script"
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert not re.search(r"\son[a-z]+=", page.text), "no inline event handlers"
    assert not re.search(r"\sstyle=", page.text), "no inline styles"


def test_the_users_command_adds_an_admin_from_stdin(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings({"auth": {"mode": "password"}})
    config = tmp_path / "config.json"
    assert config.is_file() and settings.config_file == str(config)
    run = [sys.executable, "-m", "web_bot", "users", "--config", str(config)]
    added = subprocess.run([*run, "add", "admin1", "--admin", "--password-stdin"], input="a-long-password\n",
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert added.returncode == 0, added.stderr
    assert "created admin admin1" in added.stdout
    short = subprocess.run([*run, "add", "u2", "--password-stdin"], input="short\n", capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    assert short.returncode == 1 and "weak-password" in short.stderr
    listed = subprocess.run([*run, "list"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert re.search(r"admin1\s+admin\s+active", listed.stdout), listed.stdout
    with sqlite3.connect(settings.database.db_path) as db:
        (hashed,) = db.execute("SELECT password_hash FROM users WHERE username='admin1'").fetchone()
    assert hashed.startswith("$argon2id$")


async def test_a_silent_socket_is_closed_soon_after_its_session_ends(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("web_bot.guard.IDLE_RECHECK_S", 0.2)
    alice = people.cookie("alice")
    async with websockets.connect(f"{people.served.ws_url}/ws/{CHAT}", additional_headers=alice) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        async with httpx.AsyncClient(base_url=people.served.url) as http:
            assert (await http.post("/api/auth/logout", headers=alice)).status_code == 204
        with pytest.raises(ConnectionClosed):  # it sends nothing: the server notices by itself
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4401
