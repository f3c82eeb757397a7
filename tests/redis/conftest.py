"""Fixtures of the Redis suite: a real redis-server on a free loopback port, started and stopped here.

The suite never skips for want of Redis: a missing ``redis-server`` fails loudly (``make pytest`` and
``.ci/run`` install it). This folder is the package ``tests.redis``, so it never shadows redis-py.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig, EmulatorThread

from .redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's redis-server (no persistence); stopped when the session ends."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for this test alone, for tests that stop or restart it."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's server, for looking behind the limiter's back."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_account() -> str:
    """A fresh account name (so tests sharing the server never share slots)."""
    return "acct_" + secrets.token_hex(6)


@pytest.fixture(scope="session")
def redis_emulator() -> Iterator[Emulator]:
    """An emulator that would admit 50 downloads at once: the limit of 10 must come from the limiter."""
    with EmulatorThread(EmulatorConfig(faxes=0, seed=11, max_concurrent_downloads=50)) as emu:
        yield emu


@pytest.fixture
def redis_admin(redis_emulator: Emulator) -> Iterator[AdminClient]:
    with redis_emulator.admin() as client:
        client.reset()
        yield client
