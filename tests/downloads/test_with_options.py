"""``client.with_options()``: a copy with other defaults that shares its parent's pool, limiter and slots.

A copy and its parent together never hold more than the account's 10 downloads (proven on the
emulator, whose stats count the downloads it admitted and refused, and on a transport that holds
every document until the test lets it go). Closing a copy leaves the pool to its parent; closing
the parent closes every copy. A copy's timeout, retries, headers and download cap are its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio import wait_all_tasks_blocked

from audian_fax_async import (
    ClientClosedError,
    ConfigurationError,
    FaxClient,
    InternalServerError,
    LocalLimiter,
    OutcomeKind,
    RetryPolicy,
)
from audian_fax_async.emulator import AdminClient

from .conftest import ClientFactory, assert_matches_emulator

API_KEY = "sk_test_with_options_0123456789"
BASE_URL = "https://api.audian.com:8443/v2"
PDF = b"%PDF-1.4\n" + b"0" * 5000 + b"\n%%EOF\n"
FAX = {
    "id": "fax_1",
    "from_number": "+12025551234",
    "to_number": "+15551234567",
    "pages": 1,
    "received_at": "2024-02-04T13:15:00Z",
    "status": "received",
    "format": "pdf",
    "file_size": len(PDF),
}
SDK_DEFAULT = {"connect": 10.0, "read": 60.0, "write": 30.0, "pool": 30.0}


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class SpyTransport(httpx2.AsyncBaseTransport):
    """A transport around another that records every request and counts how often it is closed."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx2.Request] = []
        self.closed = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        self.closed += 1
        await self.inner.aclose()


def api_answers(request: httpx2.Request) -> httpx2.Response:
    """A small API: one fax, its document, and a 503 for the path ``fax/received/busy``."""
    if request.url.path.endswith("/busy"):
        return httpx2.Response(503, json={"error": {"code": "service_unavailable", "message": "busy"}})
    if request.url.path.endswith("/download"):
        return httpx2.Response(200, content=PDF, headers={"Content-Length": str(len(PDF))})
    return httpx2.Response(200, json=FAX)


def mock_client(**kwargs: Any) -> tuple[FaxClient, SpyTransport]:
    spy = SpyTransport(httpx2.MockTransport(api_answers))
    kwargs.setdefault("retry_policy", RetryPolicy(sleep=RecordingSleep()))
    return FaxClient(API_KEY, base_url=BASE_URL, transport=spy, **kwargs), spy


async def calls_of_every_kind(client: FaxClient, tmp_path: Path, **options: Any) -> None:
    """A call, a download (the fax's record, then its document) and a stream: four requests."""
    await client.received.get("fax_1", **options)
    await client.received.download("fax_1", f"{tmp_path}/out/", overwrite=True, **options)
    async with client.received.stream("fax_1", **options) as document:
        assert b"".join([chunk async for chunk in document]) == PDF


# -- one pool ------------------------------------------------------------------------------------


async def test_a_copy_sends_through_its_parents_pool_and_limiter(tmp_path: Path) -> None:
    parent, spy = mock_client(limiter=LocalLimiter(10))
    copy = parent.with_options(timeout=5.0)

    async with parent:
        await calls_of_every_kind(copy, tmp_path)
        await calls_of_every_kind(parent, tmp_path)

    assert len(spy.requests) == 8  # the copy's four requests went through the parent's transport
    assert copy.limiter is parent.limiter and copy.account == parent.account
    assert copy.base_url == parent.base_url
    assert spy.closed == 1


async def test_a_copy_of_a_users_http_client_uses_it_and_never_closes_it(tmp_path: Path) -> None:
    seen: list[str] = []

    async def hook(request: httpx2.Request) -> None:
        seen.append(request.url.path)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(api_answers), event_hooks={"request": [hook]}) as http:
        parent = FaxClient(API_KEY, base_url=BASE_URL, http_client=http)
        async with parent, parent.with_options(max_retries=1) as copy:
            await copy.received.get("fax_1")
        assert seen == ["/v2/fax/received/fax_1"]  # the user's client's hooks saw the copy's request
        assert not http.is_closed


# -- closing -------------------------------------------------------------------------------------


async def test_closing_a_copy_leaves_the_parent_and_its_pool_open(tmp_path: Path) -> None:
    parent, spy = mock_client()
    async with parent:
        async with parent.with_options(timeout=5.0) as copy:
            await copy.received.get("fax_1")

        assert copy.is_closed and not parent.is_closed
        assert spy.closed == 0
        await parent.received.get("fax_1")  # the pool still serves the parent
        with pytest.raises(ClientClosedError):
            await copy.received.get("fax_1")
        with pytest.raises(ClientClosedError):
            await copy.received.download("fax_1", tmp_path / "a.pdf")
        await copy.aclose()  # again: nothing happens

    assert spy.closed == 1 and parent.is_closed


async def test_closing_the_parent_closes_every_copy(tmp_path: Path) -> None:
    parent, spy = mock_client()
    copy = parent.with_options(max_retries=1)
    grandchild = copy.with_options(default_headers={"X-Level": "2"})
    await grandchild.received.get("fax_1")

    await parent.aclose()

    assert spy.closed == 1
    assert parent.is_closed and copy.is_closed and grandchild.is_closed
    for closed in (copy, grandchild):
        with pytest.raises(ClientClosedError):
            await closed.received.list()
        with pytest.raises(ClientClosedError):
            await closed.received.download("fax_1", tmp_path / "a.pdf")
        with pytest.raises(ClientClosedError):
            async with closed.received.stream("fax_1"):
                pass
        with pytest.raises(ClientClosedError):
            async with closed:
                pass
        await closed.aclose()
    assert parent.with_options().is_closed  # a copy of a closed client is closed too
    assert spy.closed == 1


async def test_a_closed_copy_does_not_close_its_siblings(tmp_path: Path) -> None:
    parent, spy = mock_client()
    async with parent:
        first, second = parent.with_options(), parent.with_options()
        await first.aclose()

        assert first.is_closed and not second.is_closed
        await calls_of_every_kind(second, tmp_path)
    assert spy.closed == 1


# -- a copy's own defaults -----------------------------------------------------------------------


async def test_a_copys_default_headers_add_to_its_parents_and_stay_its_own(tmp_path: Path) -> None:
    parent, spy = mock_client(default_headers={"X-Team": "billing"})
    copy = parent.with_options(default_headers={"X-Copy": "1", "X-Team": "archive"})
    grandchild = copy.with_options(default_headers={"X-Level": "2"})

    async with parent:
        await calls_of_every_kind(copy, tmp_path)
        await calls_of_every_kind(parent, tmp_path)
        await grandchild.received.get("fax_1")
        await copy.received.get("fax_1", extra_headers={"X-Copy": "call"})

    copies, parents = spy.requests[:4], spy.requests[4:8]
    for request in copies:
        assert (request.headers["X-Copy"], request.headers["X-Team"]) == ("1", "archive")
        assert request.headers["X-Auth-Token"] == API_KEY
    for request in parents:
        assert "X-Copy" not in request.headers and request.headers["X-Team"] == "billing"
    grand, per_call = spy.requests[8:]
    assert (grand.headers["X-Level"], grand.headers["X-Copy"], grand.headers["X-Team"]) == ("2", "1", "archive")
    assert per_call.headers.get_list("X-Copy") == ["call"]  # a call's extra_headers win over the copy's


@pytest.mark.parametrize(
    ("timeout", "extension"),
    [
        (5.0, {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}),
        (httpx2.Timeout(2.0, read=300.0), {"connect": 2.0, "read": 300.0, "write": 2.0, "pool": 2.0}),
        (None, {"connect": None, "read": None, "write": None, "pool": None}),
    ],
    ids=["seconds", "httpx2-timeout", "none"],
)
async def test_a_copys_timeout_applies_to_each_of_its_requests_and_not_its_parents(
    tmp_path: Path, timeout: Any, extension: dict[str, float | None]
) -> None:
    parent, spy = mock_client()
    copy = parent.with_options(timeout=timeout)

    async with parent:
        await calls_of_every_kind(copy, tmp_path)
        await calls_of_every_kind(parent, tmp_path)
        await copy.received.get("fax_1", timeout=1.5)
        await copy.with_options(max_retries=1).received.get("fax_1")  # a copy of the copy keeps it

    timeouts = [request.extensions["timeout"] for request in spy.requests]
    assert timeouts[:4] == [extension] * 4
    assert timeouts[4:8] == [SDK_DEFAULT] * 4
    assert timeouts[8] == {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5}  # the call's own wins
    assert timeouts[9] == extension


async def test_a_copys_max_retries_and_retry_policy_are_its_own() -> None:
    parent_sleeps, copy_sleeps = RecordingSleep(), RecordingSleep()
    parent, spy = mock_client(retry_policy=RetryPolicy(sleep=parent_sleeps, random=lambda: 0.5))
    impatient = parent.with_options(max_retries=0)
    patient = parent.with_options(retry_policy=RetryPolicy(max_retries=1, sleep=copy_sleeps, random=lambda: 0.5))
    counted = parent.with_options(retry_policy=RetryPolicy(max_retries=9, sleep=copy_sleeps), max_retries=2)

    async with parent:
        for client, attempts in [(impatient, 1), (patient, 2), (counted, 3), (parent, 4), (impatient, 1)]:
            before = len(spy.requests)
            with pytest.raises(InternalServerError):
                await client.received.get("busy")
            assert len(spy.requests) - before == attempts

    assert parent_sleeps.delays == [0.4375, 0.875, 1.75]  # only the parent's own three retries
    assert len(copy_sleeps.delays) == 1 + 2  # the patient copy's retry, then the counted copy's two


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrent_downloads": 0},
        {"max_concurrent_downloads": 11},
        {"max_concurrent_downloads": -1},
        {"max_concurrent_downloads": True},
        {"max_concurrent_downloads": 2.5},
        {"max_concurrent_downloads": "3"},
        {"max_retries": -1},
        {"max_retries": 101},
        {"max_retries": True},
        {"max_retries": 1.5},
        {"max_retries": "2"},
        {"default_headers": {"X-Auth-Token": "sk_other"}},
        {"default_headers": {"x-auth-token": "sk_other"}},
        {"default_headers": {"X-AUTH-TOKEN": "sk_other", "X-Team": "a"}},
    ],
    ids=repr,
)
async def test_invalid_options_raise_configuration_error_and_leave_the_parent_as_it_was(
    options: dict[str, Any], tmp_path: Path
) -> None:
    parent, spy = mock_client()

    with pytest.raises(ConfigurationError):
        parent.with_options(**options)

    async with parent:
        await calls_of_every_kind(parent, tmp_path)
    assert parent.max_concurrent_downloads == 10
    for request in spy.requests:
        assert request.headers.get_list("X-Auth-Token") == [API_KEY]
        assert "X-Team" not in request.headers


async def test_with_options_without_arguments_is_a_copy_with_the_same_defaults() -> None:
    parent, _ = mock_client(max_concurrent_downloads=4, default_headers={"X-Team": "a"})
    copy = parent.with_options()

    assert copy is not parent
    assert copy.max_concurrent_downloads == 4
    assert copy.retry_policy == parent.retry_policy
    assert repr(copy) == repr(parent)
    assert API_KEY not in repr(copy)
    await parent.aclose()


# -- the account's slots, held until the test lets the documents go ------------------------------


class HeldDocuments:
    """A transport whose documents wait for :attr:`gate`; it counts downloads in flight by client."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.active: Counter[str] = Counter()
        self.highest: Counter[str] = Counter()
        self.highest_total = 0
        self.done = 0
        self.transport = httpx2.MockTransport(self.handle)

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        who = request.headers.get("X-Client", "parent")
        self.active[who] += 1
        self.highest[who] = max(self.highest[who], self.active[who])
        self.highest_total = max(self.highest_total, self.total)
        try:
            await self.gate.wait()
        finally:
            self.active[who] -= 1
        self.done += 1
        return httpx2.Response(200, content=streamed(PDF), headers={"Content-Length": str(len(PDF))})

    @property
    def total(self) -> int:
        return sum(self.active.values())


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def until(condition: Callable[[], bool]) -> None:
    """Let every other task run until ``condition`` holds while they all wait (bounded: a broken
    limiter fails the test instead of hanging it)."""
    with anyio.fail_after(10):
        while True:
            await wait_all_tasks_blocked()
            if condition():
                return


async def test_a_copy_and_its_parent_share_the_accounts_ten_slots(tmp_path: Path) -> None:
    server = HeldDocuments()
    limiter = LocalLimiter(10)
    parent = FaxClient(API_KEY, base_url=BASE_URL, transport=server.transport, limiter=limiter)
    copy = parent.with_options(default_headers={"X-Client": "copy"})

    async with parent, anyio.create_task_group() as tg:
        # Ten downloads each: every one holds a slot of its own client; the account has 10 for both.
        for i in range(20):
            tg.start_soon((copy if i % 2 else parent).received.download, f"fax_{i}", tmp_path / f"{i}.pdf")
        await until(lambda: limiter.statistics(parent.account).waiting == 10)
        assert server.total == 10
        server.gate.set()

    assert server.highest_total == 10 and server.done == 20
    assert server.highest["copy"] >= 1 and server.highest["parent"] >= 1
    assert limiter.statistics(parent.account).highest_in_use == 10
    assert all((tmp_path / f"{i}.pdf").read_bytes() == PDF for i in range(20))


async def test_a_copys_max_concurrent_downloads_caps_it_and_leaves_the_parent_its_own(tmp_path: Path) -> None:
    server = HeldDocuments()
    limiter = LocalLimiter(10)
    parent = FaxClient(API_KEY, base_url=BASE_URL, transport=server.transport, limiter=limiter)
    copy = parent.with_options(max_concurrent_downloads=3, default_headers={"X-Client": "copy"})
    assert (copy.max_concurrent_downloads, parent.max_concurrent_downloads) == (3, 10)

    async with parent, anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(copy.received.download, f"copy_{i}", tmp_path / f"copy_{i}.pdf")
        await until(lambda: server.total == 3)
        assert server.active["copy"] == 3  # the other 7 wait for the copy's own slots
        for i in range(10):
            tg.start_soon(parent.received.download, f"parent_{i}", tmp_path / f"parent_{i}.pdf")
        await until(lambda: server.total == 10 and limiter.statistics(parent.account).waiting == 3)
        assert (server.active["copy"], server.active["parent"]) == (3, 7)  # the account's 10, shared
        server.gate.set()

    assert server.highest["copy"] == 3 and server.highest_total == 10 and server.done == 20


async def test_a_copys_stream_holds_a_slot_of_the_account(tmp_path: Path) -> None:
    server = HeldDocuments()
    limiter = LocalLimiter(1)
    parent = FaxClient(API_KEY, base_url=BASE_URL, transport=server.transport, limiter=limiter)
    copy = parent.with_options(default_headers={"X-Client": "copy"})

    async with parent, anyio.create_task_group() as tg, copy.received.stream("held") as held:
        tg.start_soon(parent.received.download, "waiting", tmp_path / "w.pdf")
        await until(lambda: limiter.statistics(parent.account).waiting == 1)
        assert server.total == 0  # the copy's stream holds the one slot: the parent's download waits for it
        server.gate.set()
        assert b"".join([chunk async for chunk in held]) == PDF

    assert (tmp_path / "w.pdf").read_bytes() == PDF and server.highest_total == 1


# -- on the emulator: never more than the account's 10, never a refusal ---------------------------


def downloads_of(admin: AdminClient, key: str) -> dict[str, int]:
    downloads: dict[str, int] = admin.stats(key)["downloads"]
    return downloads


async def test_bulk_runs_on_a_copy_and_its_parent_never_exceed_ten_downloads_together(
    make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.set_faults(bandwidth=4_000_000)  # ~0.1 s a document: the two runs overlap
    limiter = LocalLimiter(10)  # the parent's own: a copy that made another would double the slots
    spy = SpyTransport(httpx2.AsyncHTTPTransport())
    parent = make_client(limiter=limiter, transport=spy)
    copy = parent.with_options(timeout=120.0, max_retries=8, default_headers={"X-Client": "copy"})
    outcomes: dict[str, list[Any]] = {}

    async def run(name: str, client: FaxClient) -> None:
        async with client.received.download_all(tmp_path / name) as results:
            outcomes[name] = [outcome async for outcome in results]

    async with parent:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "parent", parent)
            tg.start_soon(run, "copy", copy)
        assert not parent.is_closed and spy.closed == 0

    downloads = downloads_of(audian_admin, audian_api_key)
    assert downloads["highest"] <= 10, downloads
    assert downloads["refused"] == 0, "a copy and its parent made the API refuse a download"
    assert limiter.statistics(parent.account).highest_in_use == 10  # both runs filled the slots
    for name in ("parent", "copy"):
        assert {o.kind for o in outcomes[name]} == {OutcomeKind.DOWNLOADED}, [o.error for o in outcomes[name]]
        assert len(outcomes[name]) == 20
        for outcome in outcomes[name]:
            assert_matches_emulator(audian_admin, audian_api_key, outcome.fax.id, outcome.path)
    copies = [r for r in spy.requests if r.headers.get("X-Client") == "copy"]
    assert len(copies) >= 21  # the copy's listing and its 20 documents, through the parent's pool
    assert spy.closed == 1


async def test_many_downloads_on_a_parent_and_its_copies_never_exceed_ten(
    make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.set_faults(bandwidth=4_000_000)
    limiter = LocalLimiter(10)
    parent = make_client(limiter=limiter)
    clients = [parent, parent.with_options(max_retries=2), parent.with_options(timeout=90.0).with_options()]
    async with parent:
        page = await parent.received.list(limit=20)

        async def one(i: int) -> None:
            fax = page.faxes[i % 20]
            folder = tmp_path / str(i)
            folder.mkdir()
            await clients[i % 3].received.download(fax.id, folder, fax=fax)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)

    downloads = downloads_of(audian_admin, audian_api_key)
    assert downloads["highest"] <= 10, downloads
    assert downloads["refused"] == 0, "the parent and its copies made the API refuse a download"
    assert limiter.statistics(parent.account).highest_in_use == 10
    assert sum(1 for _ in tmp_path.rglob("*.pdf")) == 40


async def test_a_copys_bulk_run_keeps_to_its_own_max_concurrent_downloads(
    make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.set_faults(bandwidth=4_000_000)
    limiter = LocalLimiter(10)
    parent = make_client(limiter=limiter)
    copy = parent.with_options(max_concurrent_downloads=3)

    async with parent, copy.received.download_all(tmp_path) as results:
        done = [outcome async for outcome in results]

    assert len(done) == 20 and all(o.ok for o in done)
    assert downloads_of(audian_admin, audian_api_key)["highest"] <= 3
    assert limiter.statistics(parent.account).highest_in_use == 3
