"""The account limit: at most 10 downloads at once per account; the 11th gets 429 with Retry-After."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import httpx2
import pytest
from starlette.requests import Request

from audian_fax_async.emulator import AdminClient, EmulatorConfig, FaultConfig, run_emulator
from audian_fax_async.emulator._app import EmulatorCore
from audian_fax_async.emulator._responses import DocumentResponse

from .emulator_helpers import error_of

# The emulator serves from its own thread; these tests check it, not the client's loop independence.
pytestmark = pytest.mark.loops("asyncio")


async def wait_until_idle(admin: AdminClient, key: str) -> dict[str, Any]:
    with anyio.fail_after(5):
        while (stats := admin.stats(key))["downloads"]["current"] != 0:
            await anyio.sleep(0.01)
    return stats


async def hold_downloads(api: httpx2.AsyncClient, fax_ids: list[str], release: anyio.Event) -> list[httpx2.Response]:
    """Start one streamed download per id at once; keep the admitted ones open until ``release``."""
    responses: list[httpx2.Response] = []
    admitted = anyio.Event()

    async def one(fax_id: str) -> None:
        async with api.stream("GET", f"/fax/received/{fax_id}/download") as response:
            responses.append(response)
            if response.status_code == 429:
                await response.aread()
            if len(responses) == len(fax_ids):
                admitted.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        for fax_id in fax_ids:
            tg.start_soon(one, fax_id)
        await admitted.wait()
        admitted_responses = list(responses)
        release.set()
    return admitted_responses


async def test_eleven_slow_downloads_at_once_exactly_one_is_refused(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    admin.set_faults(bandwidth=20_000)  # ~5 s a document: all of them are in flight together
    faxes = (await api.get("/fax/received", params={"limit": 11})).json()["faxes"]
    with anyio.fail_after(10):
        responses = await hold_downloads(api, [f["id"] for f in faxes], anyio.Event())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert error_of(refused)["code"] == "too_many_concurrent_downloads"
    stats = await wait_until_idle(admin, key)  # clients left mid-body: every slot came back
    assert stats["downloads"]["highest"] == 10
    assert stats["downloads"]["refused"] == 1
    assert stats["requests"]["download"] == {"200": 10, "429": 1}


async def test_slots_come_back_after_complete_and_abandoned_downloads(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    faxes = (await api.get("/fax/received", params={"limit": 12})).json()["faxes"]
    for fax in faxes:  # sequential, complete: never more than one at a time
        assert (await api.get(f"/fax/received/{fax['id']}/download")).status_code == 200
    stats = await wait_until_idle(admin, key)
    assert stats["downloads"]["highest"] == 1
    assert stats["bytes_served"] == sum(f["file_size"] for f in faxes)
    admin.set_faults(bandwidth=20_000)
    for fax in faxes:  # twelve abandoned mid-body, one after the other: none refused
        async with api.stream("GET", f"/fax/received/{fax['id']}/download") as response:
            assert response.status_code == 200
            async for _ in response.aiter_raw():
                break
        await wait_until_idle(admin, key)
    assert admin.stats(key)["downloads"]["refused"] == 0


async def test_limit_is_per_account_and_its_retry_after_is_configurable() -> None:
    config = EmulatorConfig(faxes=3, max_concurrent_downloads=2, retry_after=7, faults=FaultConfig(bandwidth=10_000))
    async with run_emulator(config) as emu, contextlib.AsyncExitStack() as stack:
        alice, bob = [
            await stack.enter_async_context(
                httpx2.AsyncClient(base_url=emu.base_url, headers={"X-Auth-Token": name}, timeout=10)
            )
            for name in ("alice", "bob")
        ]
        alice_ids = [f["id"] for f in (await alice.get("/fax/received")).json()["faxes"]]
        bob_ids = [f["id"] for f in (await bob.get("/fax/received")).json()["faxes"]]
        for fax_id in alice_ids[:2]:  # held open until the end of the test
            held = await stack.enter_async_context(alice.stream("GET", f"/fax/received/{fax_id}/download"))
            assert held.status_code == 200
        third = await alice.get(f"/fax/received/{alice_ids[2]}/download")
        assert third.status_code == 429
        assert third.headers["retry-after"] == "7"
        for fax_id in bob_ids[:2]:
            other = await stack.enter_async_context(bob.stream("GET", f"/fax/received/{fax_id}/download"))
            assert other.status_code == 200
        assert emu.core.state.accounts["alice"].downloads_current == 2
        assert emu.core.state.accounts["bob"].downloads_current == 2


async def test_leaving_a_huge_download_early_frees_the_slot_without_sending_it_all(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    size = 256 * 1024 * 1024
    admin.inject(key, faxes=[{"id": "fax_received_huge", "pages": 10, "size": size}])
    async with api.stream("GET", "/fax/received/fax_received_huge/download") as response:
        assert response.status_code == 200
        async for _ in response.aiter_raw():
            break
    stats = await wait_until_idle(admin, key)
    assert stats["bytes_served"] < size // 4


def _download_request(fax_id: str, port: int) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": f"/v2/fax/received/{fax_id}/download",
            "headers": [],
            "query_string": b"",
            "client": ("127.0.0.1", port),
            "path_params": {"fax_id": fax_id},
        }
    )


async def test_a_new_request_on_a_connection_frees_the_slot_of_its_last_download() -> None:
    # A keep-alive client sends its next request as soon as a body's last frame arrives, and the
    # server may start it before the last response's task runs again to give the slot back. HTTP/1.1
    # serves one response at a time per connection, so the new request proves the last one complete
    # (a bare httpx2 loop at the limit got a 429 in CI without this).
    core = EmulatorCore(EmulatorConfig(faxes=3, max_concurrent_downloads=1))
    account = core.state.account("k")
    ids = [fax.id for fax in account.faxes]
    first = await core.download(_download_request(ids[0], 5000), account, None)
    assert first.status_code == 200 and account.downloads_current == 1
    # Another connection is refused: the slot is taken while the body may still be on its way.
    other = await core.download(_download_request(ids[1], 5001), account, None)
    assert other.status_code == 429
    # The same connection asks again: its last response is over, the slot is its own again.
    again = await core.download(_download_request(ids[1], 5000), account, None)
    assert again.status_code == 200 and account.downloads_current == 1
    assert isinstance(first, DocumentResponse) and isinstance(again, DocumentResponse)
    first.release()  # its task finally runs: nothing is given back twice
    assert account.downloads_current == 1
    again.release()
    assert account.downloads_current == 0 and account.downloads_highest == 1
