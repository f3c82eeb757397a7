"""Fixtures of the emulator's own tests: one threaded server for the module's tests, plain httpx2 clients."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest

from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig, EmulatorThread

# time_scale 2e-6: the reference's 24 hours of webhook retries take about 0.17 s.
# One TLS context for every client: httpx2 otherwise loads the CA bundle per client (~50 ms a test).
TLS = ssl.create_default_context()
CONFIG = EmulatorConfig(faxes=60, seed=7, time_scale=2e-6)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """The emulator the tests of this directory share (webhook retries take milliseconds)."""
    with EmulatorThread(CONFIG) as emu:
        yield emu


@pytest.fixture
def admin(emulator: Emulator) -> Iterator[AdminClient]:
    """Admin client; every test starts from a reset emulator."""
    with emulator.admin() as client:
        client.reset()
        yield client


@pytest.fixture
def key() -> str:
    """A fresh account for the test."""
    return "test_" + secrets.token_hex(8)


@pytest.fixture
async def api(emulator: Emulator, key: str, admin: AdminClient) -> AsyncIterator[httpx2.AsyncClient]:
    """A plain httpx2 client on the API with the test's key in ``X-Auth-Token``."""
    async with httpx2.AsyncClient(
        base_url=emulator.base_url, headers={"X-Auth-Token": key}, timeout=10, verify=TLS
    ) as client:
        yield client
