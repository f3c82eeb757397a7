"""The account limit in one process: shared slots, per-client caps, waiting outside HTTP timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio import wait_all_tasks_blocked

from audian_fax_async import FaxClient, LocalLimiter

PDF = b"%PDF-1.4\n" + b"0" * 5000 + b"\n%%EOF\n"


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    yield body


class GatedServer:
    """A transport whose documents are held until the test opens the gate."""

    def __init__(self) -> None:
        self.requests = 0
        self.active = 0
        self.highest = 0
        self.gate = anyio.Event()

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        self.active += 1
        self.highest = max(self.highest, self.active)
        try:
            await self.gate.wait()
        finally:
            self.active -= 1
        return httpx2.Response(200, content=streamed(PDF), headers={"Content-Length": str(len(PDF))})


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition`` holds and every task waits (bounded: a broken
    limiter fails the test instead of hanging it)."""
    with anyio.fail_after(10):
        while True:
            await wait_all_tasks_blocked()
            if condition():
                return


def gated_client(server: GatedServer, key: str = "k", **kwargs: object) -> FaxClient:
    return FaxClient(
        key,
        base_url="https://api.test/v2",
        transport=httpx2.MockTransport(server.handle),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_clients_sharing_a_key_share_ten_slots(tmp_path: Path) -> None:
    server = GatedServer()
    limiter = LocalLimiter(10)
    clients = [gated_client(server, limiter=limiter) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(clients[i % 3].received.download, f"fax_{i}", tmp_path / f"{i}.pdf")
        await until(lambda: limiter.statistics(clients[0].account).waiting == 20)
        assert server.active == 10
        server.gate.set()
    assert server.highest == 10 and server.requests == 30
    assert limiter.statistics(clients[0].account).highest_in_use == 10


async def test_other_keys_are_other_accounts(tmp_path: Path) -> None:
    server = GatedServer()
    limiter = LocalLimiter(10)
    a, b = gated_client(server, "key-a", limiter=limiter), gated_client(server, "key-b", limiter=limiter)
    assert a.account != b.account
    async with anyio.create_task_group() as tg:
        for i in range(24):
            tg.start_soon((a if i % 2 else b).received.download, f"fax_{i}", tmp_path / f"{i}.pdf")
        await until(lambda: server.active == 20)
        assert limiter.statistics(a.account).in_use == limiter.statistics(b.account).in_use == 10
        server.gate.set()
    assert server.highest == 20 and server.requests == 24


async def test_max_concurrent_downloads_caps_one_client_lower(tmp_path: Path) -> None:
    server = GatedServer()
    client = gated_client(server, limiter=LocalLimiter(10), max_concurrent_downloads=3)
    async with anyio.create_task_group() as tg:
        for i in range(9):
            tg.start_soon(client.received.download, f"fax_{i}", tmp_path / f"{i}.pdf")
        await until(lambda: server.active == 3)
        server.gate.set()
    assert server.highest == 3


async def test_waiting_for_a_slot_happens_before_the_request_so_no_timeout_runs(tmp_path: Path) -> None:
    server = GatedServer()
    client = gated_client(server, limiter=LocalLimiter(1), timeout=httpx2.Timeout(0.05))
    async with anyio.create_task_group() as tg, client.received.stream("held") as held:
        tg.start_soon(client.received.download, "waiting", tmp_path / "w.pdf")
        await wait_all_tasks_blocked()
        # The stream holds the only slot without having read anything; the download waits for it
        # without any request in flight, so no HTTP timeout can be running against it.
        assert server.requests == 0
        server.gate.set()
        assert b"".join([chunk async for chunk in held]) == PDF
    assert (tmp_path / "w.pdf").read_bytes() == PDF


def test_process_default_limiter_is_shared_by_every_client() -> None:
    a, b = FaxClient("k", base_url="https://api.test/v2"), FaxClient("k", base_url="https://api.test/v2")
    assert a.limiter is b.limiter and a.account == b.account
    assert a.limiter.limit == 10  # type: ignore[attr-defined]


def test_max_concurrent_downloads_cannot_exceed_the_account_limit() -> None:
    from audian_fax_async import ConfigurationError

    with pytest.raises(ConfigurationError):
        FaxClient("k", base_url="https://api.test/v2", max_concurrent_downloads=11)


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"default_headers": {"x-auth-token": "other"}}])
def test_bad_configuration_is_a_configuration_error(kwargs: dict[str, object]) -> None:
    from audian_fax_async import ConfigurationError

    with pytest.raises(ConfigurationError):
        FaxClient("k", base_url="https://api.test/v2", **kwargs)  # type: ignore[arg-type]
