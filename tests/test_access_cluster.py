"""Accounts across a cluster (issue 13): two instances sharing PostgreSQL and Redis behind the repository's nginx.conf,
in mode password. A session, an API token, a rate limit and a conversation's owner are the same on both instances,
and an ending (sign-out, a password change, a revoked token) holds at once on both.

Each test makes its own users through the admin's API token, so the tests do not depend on their order. Failed
sign-ins count per client address, so the test that fails some on purpose connects from an address of its own
(any 127.x.y.z reaches a loopback listener); the others never fail one.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.config import ROOT, Settings, load_settings
from tests.fakes.openai_server import FakeOpenAI, ThreadedServer, free_port
from tests.test_nginx import Nginx, nginx_binary, render, self_signed, settings_for
from web_bot.app import CLOSE_NOT_FOUND, CLOSE_SIGN_IN, create_app

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

COOKIE = "web_bot_session"  # auth.cookie_name's default
NGINX, A, B = "nginx", "A", "B"
EVERYWHERE = (NGINX, A, B)
LIMITS = {"sign_in": "3/minute", "messages": "3/minute"}
TIMEOUT_S = 30.0  # generous: nothing here is timed, a slow machine only waits longer


@dataclass
class Person:
    """An account made for one test."""

    name: str
    password: str


@dataclass
class Cluster:
    """nginx (https) in front of instances A and B (each also reachable directly over http), and an admin's token."""

    https: str
    tls: ssl.SSLContext
    apps: dict[str, ThreadedServer]
    admin: dict[str, str] = field(default_factory=dict)  # the Authorization header of the admin's API token

    def url(self, where: str) -> str:
        return self.https if where == NGINX else self.apps[where].url

    def http(self, where: str, *, address: str | None = None) -> httpx.AsyncClient:
        """A client of ``where``; ``address``: connect from this loopback address instead of 127.0.0.1."""
        transport = httpx.AsyncHTTPTransport(verify=self.tls, local_address=address) if address else None
        return httpx.AsyncClient(base_url=self.url(where), verify=self.tls, transport=transport, timeout=TIMEOUT_S)

    async def add_user(self) -> Person:
        person = Person(f"user-{secrets.token_hex(4)}", f"password-{secrets.token_hex(8)}")
        async with self.http(NGINX) as http:
            made = await http.post(
                "/api/users",
                json={"username": person.name, "password": person.password, "role": "user"},
                headers=self.admin,
            )
        assert made.status_code == 201, made.text
        return person

    async def sign_in(self, person: Person) -> dict[str, str]:
        """Sign in through nginx, as a browser would; the session cookie's header, to send anywhere."""
        async with self.http(NGINX) as http:
            answer = await http.post("/api/auth/login", json={"username": person.name, "password": person.password})
        assert answer.status_code == 200, answer.text
        return cookie_of(answer)


def cookie_of(answer: httpx.Response) -> dict[str, str]:
    """The session cookie an answer set, as a Cookie header. The header is sent by hand because the cookie is
    Secure (it was set over https), and a cookie jar would keep it from the instances' plain-http ports."""
    return {"Cookie": f"{COOKIE}={answer.cookies[COOKIE]}"}


def fresh_address() -> str:
    """A loopback address other than 127.0.0.1, so this client's failed sign-ins are counted apart."""
    return f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}.{secrets.randbelow(253) + 2}"


def write_settings(workdir: Path, fake: FakeOpenAI, database: str, redis_url: str, prefix: str, name: str) -> Settings:
    """test_nginx's instance, in mode password with tight limits."""
    base = settings_for(workdir, fake, database, redis_url, prefix, name)
    assert base.config_file is not None
    path = Path(base.config_file)
    path.write_text(json.dumps({**json.loads(path.read_text()), "auth": {"mode": "password"}, "limits": LIMITS}))
    return load_settings(path, environ={})


def add_admin(settings: Settings, person: Person) -> None:
    """The first admin, made as an operator would: ``python -m web_bot users add`` with the instances' config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_BOT_", "OPENAI_"))}
    added = subprocess.run(
        [sys.executable, "-m", "web_bot", "users", "--config", str(settings.config_file), "add", person.name,
         "--admin", "--password-stdin"],
        input=f"{person.password}\n", capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**env, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def forget_keys(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI, postgres_database: str, redis_server_url: str
) -> Iterator[Cluster]:
    nginx_binary()  # skips (fails under CI) before anything starts, as test_nginx does
    workdir = tmp_path_factory.mktemp("cluster")
    prefix = f"test-{secrets.token_hex(4)}"
    apps: dict[str, ThreadedServer] = {}
    nginx = None
    try:
        settings = {}
        for name in (A, B):
            settings[name] = write_settings(workdir, fake_openai, postgres_database, redis_server_url, prefix,
                                            f"app-{name.lower()}")  # fmt: skip
            apps[name] = ThreadedServer(
                create_app(settings[name]),
                proxy_headers=True,
                forwarded_allow_ips=settings[name].server.forwarded_allow_ips,
                ws_max_size=16 * 1024 * 1024,
                ws_ping_interval=None,
            ).start()
        cert, key = self_signed(workdir)
        http_port, https_port = free_port(), free_port()
        site = render((ROOT / "nginx.conf").read_text(), http_port=http_port, https_port=https_port,
                      apps=[apps[A].port, apps[B].port], cert=cert, key=key)  # fmt: skip
        nginx = Nginx(workdir / "nginx", site).start(https_port)
        tls = ssl.create_default_context(cafile=str(cert))
        built = Cluster(f"https://127.0.0.1:{https_port}", tls, apps)
        admin = Person(f"admin-{secrets.token_hex(4)}", f"password-{secrets.token_hex(8)}")
        add_admin(settings[A], admin)
        with httpx.Client(base_url=built.https, verify=tls, timeout=TIMEOUT_S) as http:
            signed_in = http.post("/api/auth/login", json={"username": admin.name, "password": admin.password})
            assert signed_in.status_code == 200, signed_in.text
            token = http.post("/api/tokens", json={"name": "cluster tests"}, headers=cookie_of(signed_in))
            assert token.status_code == 201, token.text
        built.admin = {"Authorization": f"Bearer {token.json()['token']}"}
        yield built
    finally:
        if nginx is not None:
            nginx.stop()
        for app in apps.values():
            app.stop()
        forget_keys(redis_server_url, prefix)


class Tabs:
    """WebSockets to nginx or straight to an instance, closed when the test ends."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.opened: list[ClientConnection] = []

    async def open(
        self, where: str, client_id: str, headers: dict[str, str], *, welcome: bool = True
    ) -> ClientConnection:
        url = f"{self.cluster.url(where).replace('http', 'ws', 1)}/ws/{client_id}"
        ws = await connect(
            url, ssl=self.cluster.tls if where == NGINX else None, additional_headers=headers, ping_interval=None,
            open_timeout=TIMEOUT_S, max_size=None, proxy=None,
        )  # fmt: skip
        self.opened.append(ws)
        if welcome:
            assert (await event_of(ws, "welcome"))["type"] == "welcome"
        return ws


@pytest.fixture
async def tabs(cluster: Cluster) -> AsyncIterator[Tabs]:
    opened = Tabs(cluster)
    yield opened
    for ws in opened.opened:
        await ws.close()


async def event_of(ws: ClientConnection, *kinds: str) -> dict[str, Any]:
    """The next event of one of ``kinds``, skipping the others (streamed deltas, states)."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
        if isinstance(frame, str):
            event: dict[str, Any] = json.loads(frame)
            if event["type"] in kinds:
                return event


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes the socket; the code it closed with."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT_S)
    return ws.close_code


async def statuses(cluster: Cluster, path: str, headers: dict[str, str]) -> dict[str, int]:
    """GET ``path`` with ``headers`` through nginx and from each instance directly."""
    found = {}
    for where in EVERYWHERE:
        async with cluster.http(where) as http:
            found[where] = (await http.get(path, headers=headers)).status_code
    return found


async def chat(ws: ClientConnection, text: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "text", "text": text}))
    return await event_of(ws, "reply", "error")


async def test_a_session_works_on_both_instances_and_sign_out_ends_it_on_both_at_once(
    cluster: Cluster, tabs: Tabs
) -> None:
    person = await cluster.add_user()
    async with cluster.http(NGINX) as http:
        signed_in = await http.post("/api/auth/login", json={"username": person.name, "password": person.password})
    assert signed_in.status_code == 200, signed_in.text
    attributes = signed_in.headers["set-cookie"].lower()
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert "secure" in attributes, "nginx said https (X-Forwarded-Proto), so the cookie is Secure"
    cookie = cookie_of(signed_in)
    assert await statuses(cluster, "/api/tokens", cookie) == {NGINX: 200, A: 200, B: 200}
    for where in EVERYWHERE:
        async with cluster.http(where) as http:
            assert (await http.get("/api/auth/me", headers=cookie)).json()["user"]["username"] == person.name
    sockets = {where: await tabs.open(where, f"{person.name}-{where}", cookie) for where in (A, B)}

    async with cluster.http(A) as http:
        assert (await http.post("/api/auth/logout", headers=cookie)).status_code == 204

    assert await statuses(cluster, "/api/tokens", cookie) == {NGINX: 401, A: 401, B: 401}
    for where, ws in sockets.items():
        await ws.send(json.dumps({"type": "ping"}))
        assert await close_code(ws) == CLOSE_SIGN_IN, f"the open socket on {where} outlived the session"
    for where in EVERYWHERE:
        refused = await tabs.open(where, f"{person.name}-late", cookie, welcome=False)
        assert await close_code(refused) == CLOSE_SIGN_IN, f"a new socket on {where} took the ended session"


async def test_a_password_change_on_one_instance_ends_every_older_session_on_both(cluster: Cluster, tabs: Tabs) -> None:
    person = await cluster.add_user()
    cookie, other_device = await cluster.sign_in(person), await cluster.sign_in(person)
    ws = await tabs.open(A, f"{person.name}-a", other_device)
    new_password = f"changed-{secrets.token_hex(8)}"

    async with cluster.http(B) as http:
        changed = await http.post(
            "/api/auth/password",
            json={"current_password": person.password, "new_password": new_password},
            headers=cookie,
        )
    assert changed.status_code == 204, changed.text

    for old in (cookie, other_device):
        assert await statuses(cluster, "/api/tokens", old) == {NGINX: 401, A: 401, B: 401}
    renewed = cookie_of(changed)  # the browser that changed it stays signed in, with a new session
    assert await statuses(cluster, "/api/tokens", renewed) == {NGINX: 200, A: 200, B: 200}
    await ws.send(json.dumps({"type": "ping"}))
    assert await close_code(ws) == CLOSE_SIGN_IN
    assert await cluster.sign_in(Person(person.name, new_password))


async def test_an_api_token_made_on_one_instance_works_on_the_other_until_revoked_there(
    cluster: Cluster, tabs: Tabs
) -> None:
    person = await cluster.add_user()
    cookie = await cluster.sign_in(person)
    async with cluster.http(A) as http:
        made = await http.post("/api/tokens", json={"name": "a script"}, headers=cookie)
    assert made.status_code == 201, made.text
    bearer = {"Authorization": f"Bearer {made.json()['token']}"}
    async with cluster.http(B) as http:
        listed = await http.get("/api/tokens", headers=bearer)
    assert listed.status_code == 200 and [t["id"] for t in listed.json()["tokens"]] == [made.json()["id"]]
    assert await statuses(cluster, "/api/tokens", bearer) == {NGINX: 200, A: 200, B: 200}
    ws = await tabs.open(A, f"{person.name}-script", bearer)

    async with cluster.http(B) as http:
        assert (await http.delete(f"/api/tokens/{made.json()['id']}", headers=bearer)).status_code == 204

    async with cluster.http(A) as http:
        refused = await http.get("/api/tokens", headers=bearer)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert await statuses(cluster, "/api/tokens", bearer) == {NGINX: 401, A: 401, B: 401}
    await ws.send(json.dumps({"type": "ping"}))
    assert await close_code(ws) == CLOSE_SIGN_IN
    assert await statuses(cluster, "/api/tokens", cookie) == {NGINX: 200, A: 200, B: 200}, "only the token ended"


async def test_failed_sign_ins_count_across_both_instances(cluster: Cluster) -> None:
    person = await cluster.add_user()
    address = fresh_address()
    for where in (A, B, A):  # three failures in all: two on A, one on B
        async with cluster.http(where, address=address) as http:
            failed = await http.post("/api/auth/login", json={"username": person.name, "password": "a wrong guess"})
        assert failed.status_code == 401 and failed.json()["code"] == "bad-credentials", (where, failed.text)

    for where in (B, A, NGINX):  # B has seen one failure and A two, yet the right password is refused on each
        async with cluster.http(where, address=address) as http:
            refused = await http.post("/api/auth/login", json={"username": person.name, "password": person.password})
        assert refused.status_code == 429, (where, refused.text)
        body = refused.json()
        assert body["code"] == "rate-limited", body
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert 0 < body["retry_after_ms"] <= 60_000


async def test_chat_messages_count_across_sockets_on_both_instances(cluster: Cluster, tabs: Tabs) -> None:
    person = await cluster.add_user()
    cookie = await cluster.sign_in(person)
    on = {where: await tabs.open(where, f"{person.name}-{where}", cookie) for where in (A, B)}
    for n, where in enumerate((A, B, A), start=1):  # three messages in all: two on A, one on B
        answer = await chat(on[where], f"message {n}")
        assert answer["type"] == "reply" and f"message {n}" in answer["text"], answer

    for where in (B, A):  # B has carried one message and A two, yet both refuse the fourth
        refused = await chat(on[where], "one too many")
        assert refused["type"] == "error" and refused["code"] == "rate-limited", refused
        assert 0 < refused["retry_after_ms"] <= 60_000
    for ws in on.values():  # a refused message is an event, not the end of the socket
        await ws.send(json.dumps({"type": "ping"}))
        assert (await event_of(ws, "pong", "error"))["type"] == "pong"


async def test_a_conversation_is_its_owners_on_the_other_instance_too(cluster: Cluster, tabs: Tabs) -> None:
    owner, other = await cluster.add_user(), await cluster.add_user()
    owners, others = await cluster.sign_in(owner), await cluster.sign_in(other)
    client_id = f"{owner.name}-diary"
    ws = await tabs.open(A, client_id, owners)  # opening it claims it
    assert (await chat(ws, "a private note"))["type"] == "reply"

    async with cluster.http(B) as http:
        theirs = await http.get(f"/api/history/{client_id}", headers=others)
        mine = await http.get(f"/api/history/{client_id}", headers=owners)
    assert theirs.status_code == 404 and theirs.json()["code"] == "not-found", theirs.text
    assert "a private note" not in theirs.text
    assert mine.status_code == 200 and "a private note" in [m["content"] for m in mine.json()["messages"]], mine.text
    assert await statuses(cluster, f"/api/history/{client_id}", others) == {NGINX: 404, A: 404, B: 404}

    for where in (B, NGINX):
        refused = await tabs.open(where, client_id, others, welcome=False)
        assert await close_code(refused) == CLOSE_NOT_FOUND, where


async def test_deleting_a_conversation_on_one_instance_empties_it_everywhere(cluster: Cluster, tabs: Tabs) -> None:
    owner = await cluster.add_user()
    owners = await cluster.sign_in(owner)
    async with cluster.http(A) as http:
        made = await http.post("/api/conversations", json={"title": "Short-lived"}, headers=owners)
    assert made.status_code == 201, made.text
    client_id = made.json()["client_id"]
    on_a = await tabs.open(A, client_id, owners)
    assert (await chat(on_a, "soon gone words"))["type"] == "reply"
    on_b = await tabs.open(B, client_id, owners)
    async with cluster.http(B) as http:
        found = (await http.get("/api/search", params={"q": "soon gone"}, headers=owners)).json()["results"]
        assert {hit["client_id"] for hit in found} == {client_id}
        assert (await http.delete(f"/api/conversations/{client_id}", headers=owners)).status_code == 204
    for ws in (on_a, on_b):  # the tab on the other instance is told through Redis
        assert (await event_of(ws, "conversation_deleted"))["client_id"] == client_id
    async with cluster.http(A) as http:
        assert (await http.get(f"/api/history/{client_id}", headers=owners)).json()["messages"] == []
        assert (await http.get("/api/search", params={"q": "soon gone"}, headers=owners)).json()["results"] == []
        listed = (await http.get("/api/conversations", headers=owners)).json()["conversations"]
        assert client_id not in [c["client_id"] for c in listed]
