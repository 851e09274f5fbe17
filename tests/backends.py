"""Real PostgreSQL and Redis for the tests: a database per session, a key prefix per test, private redis-servers.

PostgreSQL and Redis listen on 127.0.0.1 on the development and CI machines. Where they do not, the tests that
need them are skipped, except under CI (``CI`` set), where a missing service is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.fakes.openai_server import free_port

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, err: object) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not reachable under CI: {err}")
    pytest.skip(f"{what} is not reachable: {err}")


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS conversations, api_tokens, sessions, users, messages, alembic_version CASCADE"
        )
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of its own for this test session, dropped at the end; yields its SQLAlchemy async URL."""
    name = f"web_bot_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as err:
        unavailable("PostgreSQL at 127.0.0.1:5432", err)
    admin = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{admin}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session's PostgreSQL database, emptied of tables for this test (like a fresh SQLite file)."""
    asyncio.run(_reset(postgres_database))
    return postgres_database


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """The Redis on 127.0.0.1:6379, checked once."""

    async def ping() -> None:
        client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (OSError, aioredis.RedisError) as err:
        unavailable("Redis at 127.0.0.1:6379", err)
    return REDIS_URL


@pytest.fixture
async def redis_prefix(redis_server_url: str) -> AsyncIterator[str]:
    """A key and channel prefix of this test's own (pub/sub ignores database numbers); its keys go at the end."""
    prefix = f"test-{secrets.token_hex(4)}"
    yield prefix
    client = aioredis.from_url(redis_server_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class RedisProcess:
    """A private ``redis-server`` on a free port, without persistence, that a test can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", "not installed")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [*args, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A stopped private redis-server; the test starts (and may stop) it."""
    server = RedisProcess(tmp_path)
    yield server
    server.stop()
