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
from tests.fakes.openai_server import FakeOpenAI
from web_bot.app import create_app
from web_bot.security import LOOPBACK_HOSTS, GuardHosts

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
    (
        "POST",
        "/api/auth/password",
        {"current_password": "wrong-one", "new_password": "whatever-x"},
        (401, 401, 401, 401),
    ),
    ("POST", "/api/auth/setup", {"username": "late", "password": "long-enough-pw"}, (403, 403, 403, 403)),
    ("GET", "/metrics", None, (200, 200, 200, 200)),  # 127.0.0.1 is in metrics.allow_ips
    ("GET", "/admin", None, (200, 200, 200, 200)),  # the page holds no data; it asks for it
    ("GET", "/api/admin/metrics", None, (401, 403, 403, 200)),
    ("GET", "/v1/models", None, (401, 401, 401, 401)),  # personal API tokens only: a cookie is not enough
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
                    error = answer.json()
                    assert (error["error"] if path.startswith("/v1/") else error)["code"], answer.text  # OpenAI's shape
        # the status's details are for admins only
        brief = (await http.get("/api/status", headers=people.cookie("bob"))).json()
        full = (await http.get("/api/status", headers=people.cookie("root"))).json()
        assert set(brief) == {"status", "version", "auth"}
        assert {"llm", "active_connections", "instances", "db_connected"} <= set(full)
        # an upload to alice's conversation: bob and root are told it does not exist; alice gets past the checks
        files = {"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")}
        for who, status in (("anonymous", 401), ("other", 404), ("admin", 404), ("owner", 503)):
            answer = await http.post(
                "/upload_audio", files=files, data={"client_id": CHAT}, headers=people.headers(NAME[who])
            )
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
        assert wrong.json()["code"] == "bad-credentials"


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
            "/api/auth/password",
            json={"current_password": PASSWORDS["bob"], "new_password": "bob-new-password"},
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
    limits = {"enabled": True, "sign_in": "5/minute", "sign_in_per_address": "8/minute", "sign_in_slow_after": 2}
    served = serve(password_settings(limits=limits))
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
        # per address too: two sign-ins at the start, five failures and that refusal make eight; bob is refused
        other = await http.post("/api/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert other.status_code == 429
    assert people.ids["alice"]


async def test_parallel_guesses_cannot_slip_under_the_sign_in_limit(
    serve: Callable[[Settings], Served], password_settings: Callable[..., Settings]
) -> None:
    served = serve(password_settings(limits={"enabled": True, "sign_in": "5/minute"}))
    await People(served).start()
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        guess = {"username": "alice", "password": "guess"}
        guesses = [http.post("/api/auth/login", json={**guess, "password": f"guess-{n}"}) for n in range(12)]
        answers = await asyncio.gather(*guesses)
        assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 7
        right = await http.post("/api/auth/login", json={"username": "alice", "password": PASSWORDS["alice"]})
        assert right.status_code == 429


async def test_a_foreign_origin_can_neither_connect_nor_post_with_the_cookie(people: People) -> None:
    alice = people.cookie("alice")
    async with websockets.connect(
        f"{people.served.ws_url}/ws/{CHAT}",
        additional_headers=alice,
        origin="https://evil.example",  # type: ignore[arg-type]
    ) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4403
    own = people.served.url
    async with websockets.connect(
        f"{people.served.ws_url}/ws/{CHAT}",
        additional_headers=alice,
        origin=own,  # type: ignore[arg-type]
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
    async with httpx.AsyncClient(base_url=own) as http:
        foreign = await http.post(
            "/api/tokens", json={"name": "x"}, headers={**alice, "Origin": "https://evil.example"}
        )
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
    added = subprocess.run(
        [*run, "add", "admin1", "--admin", "--password-stdin"],
        input="a-long-password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    assert "created admin admin1" in added.stdout
    short = subprocess.run(
        [*run, "add", "u2", "--password-stdin"], input="short\n", capture_output=True, text=True, cwd=ROOT, timeout=120
    )
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


async def test_mode_none_answers_only_this_machine_and_its_own_host_names(
    serve: Callable[[Settings], Served], make_settings: Callable[..., Settings]
) -> None:
    local = serve(make_settings())
    async with httpx.AsyncClient(base_url=local.url) as http:
        # 127.0.0.1 is a trusted proxy here, so X-Forwarded-For stands for a client elsewhere
        remote = await http.get("/api/conversations", headers={"X-Forwarded-For": "192.0.2.9"})
        assert remote.status_code == 403 and remote.json()["code"] == "not-allowed"
        rebound = await http.get("/api/conversations", headers={"Host": "rebind.attacker.example"})
        assert rebound.status_code == 403 and rebound.json()["code"] == "bad-origin"
        assert (
            await http.get("/api/conversations", headers={"Host": f"localhost:{local.url.rsplit(':', 1)[1]}"})
        ).is_success
    shared = serve(make_settings({"auth": {"allow_anonymous": True}, "server": {"allowed_hosts": ["chat.example"]}}))
    async with httpx.AsyncClient(base_url=shared.url) as http:
        assert (await http.get("/api/status", headers={"X-Forwarded-For": "192.0.2.9"})).status_code == 200
        assert (await http.get("/api/status", headers={"Host": "chat.example"})).status_code == 200
        assert (await http.get("/api/status", headers={"Host": "other.example"})).status_code == 403


async def test_a_rebound_host_name_cannot_reach_the_setup_form(
    serve: Callable[[Settings], Served], password_settings: Callable[..., Settings]
) -> None:
    served = serve(password_settings())
    async with httpx.AsyncClient(base_url=served.url) as http:
        rebound = {"Host": "rebind.attacker.example", "Origin": "http://rebind.attacker.example"}
        assert (await http.get("/api/auth/me", headers=rebound)).json()["setup_needed"] is False
        setup = await http.post(
            "/api/auth/setup", json={"username": "x", "password": "long-enough-pw"}, headers=rebound
        )
        assert setup.status_code == 403 and setup.json()["code"] == "setup-closed"
        assert (await http.get("/api/auth/me")).json()["setup_needed"] is True


async def test_a_reset_or_disable_ends_tokens_and_tokens_make_no_tokens(people: People) -> None:
    async with httpx.AsyncClient(base_url=people.served.url) as http:
        root, alice = people.cookie("root"), people.cookie("alice")
        bearer = {"Authorization": f"Bearer {people.tokens['alice']}"}
        assert (await http.get("/api/tokens", headers=bearer)).status_code == 200
        minted = await http.post("/api/tokens", json={"name": "child"}, headers=bearer)
        assert minted.status_code == 403 and minted.json()["code"] == "not-allowed"
        changed = await http.post(
            "/api/auth/password",
            json={"current_password": PASSWORDS["alice"], "new_password": "x" * 12},
            headers=bearer,
        )
        assert changed.status_code == 403
        reset = await http.patch(f"/api/users/{people.ids['alice']}", json={"password": "reset-by-admin"}, headers=root)
        assert reset.status_code == 200
        assert (await http.get("/api/tokens", headers=bearer)).status_code == 401
        assert (await http.get("/api/tokens", headers=alice)).status_code == 401
        bob_token = (await http.post("/api/tokens", json={"name": "b"}, headers=people.cookie("bob"))).json()["token"]
        await http.patch(f"/api/users/{people.ids['bob']}", json={"disabled": True}, headers=root)
        await http.patch(f"/api/users/{people.ids['bob']}", json={"disabled": False}, headers=root)
        assert (await http.get("/api/tokens", headers={"Authorization": f"Bearer {bob_token}"})).status_code == 401


async def test_guessing_the_current_password_is_limited_like_a_sign_in(
    serve: Callable[[Settings], Served], password_settings: Callable[..., Settings]
) -> None:
    served = serve(password_settings(limits={"enabled": True, "sign_in": "3/minute", "sign_in_slow_after": 10}))
    people = await People(served).start()
    async with httpx.AsyncClient(base_url=served.url) as http:
        codes = []
        for n in range(4):
            body = {"current_password": f"guess-{n}", "new_password": "whatever-long"}
            codes.append((await http.post("/api/auth/password", json=body, headers=people.cookie("bob"))).status_code)
    assert codes == [401, 401, 401, 429]


async def test_users_who_are_not_admins_get_the_brief_status_everywhere(
    serve: Callable[[Settings], Served], password_settings: Callable[..., Settings], fake_openai: FakeOpenAI
) -> None:
    leaky = f"http://svc:TOPSECRETPW@127.0.0.1:{fake_openai.url.rsplit(':', 1)[1]}/v1?api-key=KEY123"  # type: ignore[attr-defined]
    served = serve(password_settings(llm={"base_url": leaky}))
    people = await People(served).start()
    async with websockets.connect(f"{served.ws_url}/ws/{CHAT}", additional_headers=people.cookie("alice")) as ws:
        await ws.recv()
        for command in ("/status", "/info"):
            await ws.send(json.dumps({"type": "text", "text": command}))
            event = json.loads(await ws.recv())
            while event["type"] != "command":
                event = json.loads(await ws.recv())
            text = json.dumps(event)
            assert "TOPSECRETPW" not in text and "KEY123" not in text and "base_url" not in text, text
            if command == "/status":
                assert set(event["data"]) == {"status", "version", "auth"}
    async with httpx.AsyncClient(base_url=served.url) as http:
        full = (await http.get("/api/status", headers=people.cookie("root"))).text
    assert "TOPSECRETPW" not in full and "KEY123" not in full and '"base_url":"http://127.0.0.1:' in full


async def test_odd_requests_get_json_errors_not_500s(people: People) -> None:
    huge = "99999999999999999999999"
    async with httpx.AsyncClient(base_url=people.served.url) as http:
        alice, root = people.cookie("alice"), people.cookie("root")
        for method, path, headers in (
            ("DELETE", f"/api/tokens/{huge}", alice),
            ("PATCH", f"/api/users/{huge}", root),
            ("GET", f"/api/recordings/{huge}", alice),
            ("GET", f"/api/history/{CHAT}?before={huge}", alice),
            ("GET", f"/api/conversations?offset={huge}", alice),
            ("GET", "/no/such/route", alice),
            ("POST", "/api/status", alice),
        ):
            answer = await http.request(method, path, headers=headers, json={} if method == "PATCH" else None)
            assert 400 <= answer.status_code < 500 and answer.json()["code"], (method, path, answer.text)
            assert answer.headers["x-content-type-options"] == "nosniff"
        # an Origin of another scheme, or with a path, is not the server's own
        for origin in (people.served.url.replace("http:", "https:"), people.served.url + "/page"):
            answer = await http.post("/api/tokens", json={"name": "x"}, headers={**alice, "Origin": origin})
            assert answer.status_code == 403, origin


def test_the_users_command_takes_config_after_the_action(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    make_settings({"auth": {"mode": "password"}})
    config = str(tmp_path / "config.json")
    for argv in (["users", "list", "--config", config], ["--config", config, "users", "list"]):
        listed = subprocess.run(
            [sys.executable, "-m", "web_bot", *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert listed.returncode == 0 and "no accounts yet" in listed.stdout, (argv, listed.stderr)
    empty = subprocess.run(
        [sys.executable, "-m", "web_bot", "users", "add", "x", "--password-stdin", "--config", config],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert empty.returncode == 1 and "Traceback" not in empty.stderr


async def test_a_socket_for_another_host_name_is_closed_before_it_opens() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not see it")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = GuardHosts(app, hosts=LOOPBACK_HOSTS, loopback_only=True)
    scope = {"type": "websocket", "headers": [(b"host", b"rebind.attacker.example")], "client": ("127.0.0.1", 1)}
    await guard(scope, None, send)
    assert sent == [{"type": "websocket.close", "code": 4403, "reason": sent[0]["reason"]}]
