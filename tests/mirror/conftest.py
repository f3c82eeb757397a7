"""Fixtures of the mirror's tests: an emulator of small accounts, a fresh account per test, and
helpers to deliver webhooks to a mirror and wait for what it does."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest

from audian_fax_async import FaxClient
from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig, EmulatorThread

#: Faxes every new account of the mirror's emulator starts with.
ACCOUNT_FAXES = 6


@pytest.fixture(scope="session")
def mirror_emulator() -> Iterator[Emulator]:
    """An emulator whose accounts hold a few faxes, with webhook retries compressed (24 h in ~1 s)."""
    with EmulatorThread(EmulatorConfig(faxes=ACCOUNT_FAXES, seed=23, time_scale=1e-5)) as emu:
        yield emu


@pytest.fixture
def key() -> str:
    """A fresh account for the test."""
    return "mirror-" + secrets.token_hex(6)


@pytest.fixture
def admin(mirror_emulator: Emulator) -> Iterator[AdminClient]:
    with mirror_emulator.admin() as client:
        client.set_faults("none")
        client.clear_scripts()
        yield client
        client.set_faults("none")
        client.clear_scripts()


@pytest.fixture
async def client(mirror_emulator: Emulator, key: str) -> AsyncIterator[FaxClient]:
    async with FaxClient(key, base_url=mirror_emulator.base_url) as fax_client:
        yield fax_client


def delivery(fax: dict[str, Any], *, event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A ``fax_received`` delivery of ``fax`` (the emulator's detail object), as the API sends it."""
    fields = ("id", "from_number", "from_name", "to_number", "pages", "received_at", "file_size", "format")
    body = {"event": "fax_received", **{name: fax[name] for name in fields}}
    headers = {
        "Content-Type": "application/json",
        "X-Audian-Event": "fax_received",
        "X-Audian-Event-Id": event_id or "evt_" + secrets.token_hex(8),
    }
    return httpx2.Request("POST", "http://x", json=body).content, headers
