"""Defect 6: the default limiter is one set of 10 slots per account for the whole process.

Six threads, each running its own event loop (asyncio, uvloop, trio, twice each) with its own
``FaxClient`` of the same account, want 60 documents at once (downloads and streams). The server
counts the downloads it is answering; it answers 429 beyond 10 (as the API does) and holds each
answer until every other download is either sent or queued on the account's limiter (its public
statistics say so), so that every slot the process may use is used: exactly 10 at the peak, never
more, and no refusal.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio

from audian_fax_async import FaxClient, RetryPolicy

from .api import Fax, Inbox, honest_download
from .conftest import make_transport, no_sleep
from .helpers import BOUND
from .server import HostileServer, Reply, Request, json_reply

LIMIT = 10
LOOPS: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}
PER_THREAD = 10


def test_threads_with_their_own_loops_share_one_accounts_10_slots(
    server: HostileServer, inbox: Inbox, api_key: str, tmp_path: Path
) -> None:
    plan = [(loop, kind) for kind in ("download", "stream") for loop in LOOPS]
    faxes = inbox.add(len(plan) * PER_THREAD, size=4096)
    total = len(faxes)
    refused = 0
    waited_too_long = False
    lock = threading.Lock()

    probe = _client(api_key, server.base_url)  # the same account: its limiter's statistics

    async def gate(request: Request) -> Reply:
        """Refuse an 11th download; hold each answer until every other download of the run is either
        sent or waiting for one of the account's slots, so the slots in use are all the process has."""
        nonlocal refused, waited_too_long
        route = inbox.downloads
        if route.active > LIMIT:
            with lock:
                refused += 1
            return json_reply({"error": {"code": "too_many_concurrent_downloads"}}, 429, [("Retry-After", "0")])
        for _ in range(500):
            if route.hits + probe.limiter.statistics(probe.account).waiting >= total:
                break
            await asyncio.sleep(0.01)
        else:  # 5 s: downloads neither sent nor waiting for the account's slots
            waited_too_long = True
        return honest_download(request, inbox.faxes[request.match["id"]])

    for fax in faxes:
        inbox.script(fax.id, lambda request, _fax: gate(request))
    errors: list[BaseException] = []
    threads = []
    for index, (loop, kind) in enumerate(plan):
        mine = faxes[index * PER_THREAD : (index + 1) * PER_THREAD]
        main = _downloads(api_key, server.base_url, mine, tmp_path / f"t{index}") if kind == "download" else None
        main = main or _streams(api_key, server.base_url, mine)
        threads.append(threading.Thread(target=_run, args=(main, loop, errors), name=f"{loop}-{kind}"))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    assert errors == []
    assert refused == 0, "the server refused downloads over the account's limit"
    assert inbox.downloads.peak == LIMIT, f"{inbox.downloads.peak} downloads at once"
    assert not waited_too_long
    assert len(inbox.downloads.requests) == total
    anyio.run(probe.aclose)


def _run(main: Callable[[], Coroutine[Any, Any, None]], loop: str, errors: list[BaseException]) -> None:
    backend, options = LOOPS[loop]
    try:
        anyio.run(main, backend=backend, backend_options=options)
    except BaseException as exc:  # reported by the test's thread
        errors.append(exc)


def _client(key: str, base_url: str) -> FaxClient:
    return FaxClient(
        key, base_url=base_url, transport=make_transport("httpx2"), retry_policy=RetryPolicy(sleep=no_sleep)
    )


def _downloads(key: str, base_url: str, faxes: list[Fax], folder: Path) -> Callable[[], Coroutine[Any, Any, None]]:
    async def main() -> None:
        folder.mkdir()
        async with _client(key, base_url) as client, anyio.create_task_group() as tg:
            for fax in faxes:
                tg.start_soon(client.received.download, fax.id, folder / f"{fax.id}.pdf")
        for fax in faxes:
            assert (folder / f"{fax.id}.pdf").read_bytes() == fax.document

    return main


def _streams(key: str, base_url: str, faxes: list[Fax]) -> Callable[[], Coroutine[Any, Any, None]]:
    async def one(client: FaxClient, fax: Fax) -> None:
        async with client.received.stream(fax.id) as chunks:
            data = b"".join([chunk async for chunk in chunks])
        assert data == fax.document

    async def main() -> None:
        async with _client(key, base_url) as client, anyio.create_task_group() as tg:
            for fax in faxes:
                tg.start_soon(one, client, fax)

    return main


def test_two_accounts_do_not_share_slots(server: HostileServer, inbox: Inbox, tmp_path: Path) -> None:
    """The slots are per account: a second key's downloads are not held back by the first's ten."""
    faxes = inbox.add(2 * LIMIT, size=1024)
    both_full = threading.Event()

    async def hold(request: Request) -> Reply:
        # Answer only once 20 downloads (10 per account) are in flight at once, or after 5 s.
        for _ in range(500):
            if inbox.downloads.active >= 2 * LIMIT:
                both_full.set()
            if both_full.is_set():
                break
            await asyncio.sleep(0.01)
        return honest_download(request, inbox.faxes[request.match["id"]])

    for fax in faxes:
        inbox.script(fax.id, lambda request, _fax: hold(request))
    errors: list[BaseException] = []
    first, second = ("hk_live_" + secrets.token_hex(16) for _ in range(2))
    threads = [
        threading.Thread(
            target=_run, args=(_downloads(first, server.base_url, faxes[:LIMIT], tmp_path / "a"), "asyncio", errors)
        ),
        threading.Thread(target=_run, args=(_streams(second, server.base_url, faxes[LIMIT:]), "trio", errors)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert errors == []
    assert both_full.is_set(), "the second account waited for the first one's slots"
