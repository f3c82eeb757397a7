"""Defects 7, 8 and 11: a hostile server cannot make a call hang or grow without bound.

* 7: a redirected request keeps the timeouts of the request it replaces, so a document host that
  answers the headers and then goes silent trips the read timeout.
* 8: a non-document answer is read up to ``max_response_bytes`` (8 MiB by default), then refused with
  ``ResponseTooLargeError``; an error page is read up to a small cap.
* 11: ``request_deadline`` bounds one attempt of a non-document call end to end (a server dripping a
  byte at a time never trips the read timeout); ``download_deadline`` bounds a whole download, its
  retries included. Both raise ``APITimeoutError``.

The server drips every 0.04 s and the deadlines are 0.2 s, so no test waits long; each is bounded by
``fail_after`` and fails (instead of hanging) if the bound it checks is missing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from audian_fax_async import (
    APITimeoutError,
    AudianError,
    CallOptions,
    FaxClient,
    NotFoundError,
    OutcomeKind,
    ResponseTooLargeError,
    ValidationError,
)

from .api import Inbox, document_reply, pdf
from .conftest import ClientFactory, Net
from .helpers import BOUND, partial_files
from .server import HostileServer, Reply, Request, endless

DRIP = 0.04
DEADLINE = 0.2
SHORT = httpx2.Timeout(0.2)


@pytest.fixture(scope="module")
def anyio_backend(net: Net) -> object:
    return net.backend


@pytest.fixture
def elsewhere() -> Iterator[HostileServer]:
    """A second origin (a document host a redirect points to)."""
    with HostileServer() as other:
        yield other


# -- 7: redirects keep their timeouts -------------------------------------------------------


# The timeout given to the client, or to the one call.
WHERE = ["client", "call"]


def _timeouts(where: str) -> tuple[dict[str, object], CallOptions]:
    """The client's keyword arguments and the call's options."""
    return ({"timeout": SHORT}, {}) if where == "client" else ({}, {"timeout": SHORT})


@pytest.mark.parametrize("where", WHERE)
async def test_a_redirected_download_keeps_the_read_timeout(
    make_client: ClientFactory, inbox: Inbox, elsewhere: HostileServer, tmp_path: Path, where: str
) -> None:
    fax = inbox.put("fax_redirect", pdf(4096))
    host = elsewhere.route("/documents/fax_redirect.pdf", document_reply(fax.document, stall_after=100))
    inbox.script(fax.id, Reply(status=302, headers=[("Location", f"{elsewhere.origin}/documents/fax_redirect.pdf")]))
    for_client, for_call = _timeouts(where)
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=0, **for_client) as client:
            with pytest.raises(APITimeoutError):
                await client.received.download(fax.id, tmp_path / "fax.pdf", **for_call)
    assert host.hits == 1, "the redirect was followed"
    assert "x-auth-token" not in host.requests[0].headers, "the key never goes to another origin"
    assert not (tmp_path / "fax.pdf").exists()
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize("where", WHERE)
async def test_a_redirected_call_keeps_the_read_timeout(
    make_client: ClientFactory, server: HostileServer, elsewhere: HostileServer, where: str
) -> None:
    async def never_answer(_: Request) -> Reply:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    moved = elsewhere.route("/v2/fax/received/fax_1", never_answer)
    server.route(
        "/v2/fax/received/fax_1", Reply(status=307, headers=[("Location", f"{elsewhere.base_url}fax/received/fax_1")])
    )
    for_client, for_call = _timeouts(where)
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=0, **for_client) as client:
            with pytest.raises(APITimeoutError):
                await client.received.get("fax_1", **for_call)
    assert moved.hits == 1


@pytest.mark.parametrize("where", WHERE)
async def test_a_redirected_stream_keeps_the_read_timeout(
    make_client: ClientFactory, inbox: Inbox, elsewhere: HostileServer, where: str
) -> None:
    fax = inbox.put("fax_redirect", pdf(4096))
    elsewhere.route("/documents/fax_redirect.pdf", document_reply(fax.document, stall_after=100))
    inbox.script(fax.id, Reply(status=307, headers=[("Location", f"{elsewhere.origin}/documents/fax_redirect.pdf")]))
    for_client, for_call = _timeouts(where)
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=0, **for_client) as client:
            with pytest.raises(APITimeoutError):
                await drain_stream(client, fax.id, for_call)


async def drain_stream(client: FaxClient, fax_id: str, options: CallOptions) -> None:
    async with client.received.stream(fax_id, **options) as chunks:
        async for _ in chunks:
            pass


# -- 8: bodies are capped -------------------------------------------------------------------

JSON = [("Content-Type", "application/json")]
BIG_BODIES = {
    "no-length": Reply(headers=JSON, body=endless(b"[" * 65536)),
    "chunked": Reply(headers=JSON, body=endless(b" " * 65536), chunked=True),
    "lying-length": Reply(headers=JSON, body=endless(b" " * 65536), length=10**12),
}


async def test_a_listing_that_never_ends_raises_response_too_large_at_the_default_cap(
    make_client: ClientFactory, server: HostileServer
) -> None:
    listing = server.route("/v2/fax/received", BIG_BODIES["no-length"])
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            assert client.max_response_bytes == 8 * 1024 * 1024
            with pytest.raises(ResponseTooLargeError) as caught:
                await client.received.list()
    assert isinstance(caught.value, ValidationError)
    assert listing.hits == 1, "a body too large is not retried"


@pytest.mark.parametrize("shape", list(BIG_BODIES))
async def test_an_endless_answer_stops_at_max_response_bytes(
    make_client: ClientFactory, server: HostileServer, shape: str
) -> None:
    server.route("/v2/fax/received/fax_1", BIG_BODIES[shape])
    with anyio.fail_after(BOUND):
        async with make_client(max_response_bytes=256 * 1024) as client:
            with pytest.raises(ResponseTooLargeError, match="max_response_bytes=262144"):
                await client.received.get("fax_1")


async def test_max_response_bytes_is_the_largest_answer_read(make_client: ClientFactory, server: HostileServer) -> None:
    record = {
        "id": "fax_1",
        "from_number": "+12025550100",
        "to_number": "+15555550100",
        "pages": 1,
        "received_at": "2026-01-01T00:00:00Z",
        "status": "received",
    }
    body = json.dumps(record).encode()
    server.route("/v2/fax/received/fax_1", Reply(headers=[("Content-Type", "application/json")], body=body))
    with anyio.fail_after(BOUND):
        async with make_client(max_response_bytes=len(body)) as client:
            assert (await client.received.get("fax_1")).id == "fax_1"
        async with make_client(max_response_bytes=len(body) - 1) as client:
            with pytest.raises(ResponseTooLargeError):
                await client.received.get("fax_1")


async def test_an_endless_error_page_is_read_only_in_part(make_client: ClientFactory, server: HostileServer) -> None:
    server.route("/v2/fax/received/fax_1", Reply(status=404, body=endless(b"<p>not found</p>" * 4096)))
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(NotFoundError) as caught:
                await client.received.get("fax_1")
    assert len(caught.value.body) <= 1000


PAGE = b'{"faxes": [], "total": 0, "limit": 20, "offset": 0}'


@pytest.mark.parametrize(
    "cut",
    [
        Reply(headers=JSON, body=PAGE, length=len(PAGE) + 100, close=True),
        Reply(headers=JSON, body=PAGE, drop_after=20),
    ],
    ids=["whole-json-short-of-its-length", "dropped-mid-body"],
)
async def test_a_listing_cut_short_is_retried_never_parsed(
    make_client: ClientFactory, server: HostileServer, cut: Reply
) -> None:
    """A body that ends before its Content-Length is a broken connection (retried), not an answer."""
    listing = server.route("/v2/fax/received", cut, Reply(headers=JSON, body=PAGE))
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            page = await client.received.list()
    assert page.total == 0
    assert listing.hits == 2, "the cut answer was retried"


# -- 11: deadlines ----------------------------------------------------------------------------


def _dripping_listing() -> Reply:
    # Valid JSON so far, then one space every DRIP seconds, forever: no read ever waits long.
    return Reply(headers=[("Content-Type", "application/json")], body=endless(b" "), drip=1, interval=DRIP, length=None)


async def test_request_deadline_bounds_one_attempt_of_a_dripping_listing(
    make_client: ClientFactory, server: HostileServer
) -> None:
    listing = server.route("/v2/fax/received", _dripping_listing())
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=1, request_deadline=DEADLINE) as client:
            with pytest.raises(APITimeoutError) as caught:
                await client.received.list()
    assert "request_deadline" in str(caught.value)
    assert listing.hits == 2, "each attempt has its own deadline; the timeout is retried once"


async def test_request_deadline_is_on_by_default(make_client: ClientFactory) -> None:
    async with make_client() as client:
        assert client.request_deadline == 120.0
        assert client.download_deadline is None
    with pytest.raises(AudianError):
        FaxClient("k" * 20, request_deadline=0)


async def test_download_deadline_bounds_a_whole_download_retries_included(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    fax = inbox.put("fax_drip", pdf(4096))
    # A drop at once (so a retry follows), then the document one byte every DRIP seconds.
    inbox.script(
        fax.id,
        document_reply(fax.document, drop_after=0),
        document_reply(fax.document, etag=fax.etag, drip=1, interval=DRIP),
    )
    target = tmp_path / "fax.pdf"
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=50, download_deadline=DEADLINE) as client:
            with pytest.raises(APITimeoutError) as caught:
                await client.received.download(fax.id, target)
    assert "download_deadline" in str(caught.value)
    assert len(inbox.downloads_of(fax.id)) == 2, "the retry ran inside the same deadline"
    assert not target.exists()
    assert partial_files(tmp_path) == []


async def test_download_deadline_fails_one_fax_of_a_bulk_run(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    others = inbox.add(3)
    fax = inbox.put("fax_drip", pdf(4096))
    inbox.script(fax.id, document_reply(fax.document, drip=1, interval=DRIP))
    with anyio.fail_after(BOUND):
        async with make_client(download_deadline=DEADLINE) as client, client.received.download_all(tmp_path) as run:
            done = {o.fax.id: o async for o in run}
    assert isinstance(done[fax.id].error, APITimeoutError)
    assert all(done[o.id].kind is OutcomeKind.DOWNLOADED for o in others)
    assert partial_files(tmp_path) == []


async def test_downloads_are_outside_the_request_deadline(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    """A document slower than request_deadline but steadily flowing is not cut (only download_deadline
    bounds a download)."""
    fax = inbox.put("fax_slow", pdf(300))
    inbox.script(fax.id, document_reply(fax.document, etag=fax.etag, drip=60, interval=DRIP))
    with anyio.fail_after(BOUND):
        async with make_client(request_deadline=DRIP) as client:
            result = await client.received.download(fax.id, tmp_path / "fax.pdf")
    assert result.bytes == 300
