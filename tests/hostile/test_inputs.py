"""Defects 10 and 16: a listing that goes round in circles, and inputs that used to escape as raw
Python errors.

* 10: a listing that ignores ``to_date`` or ``offset`` (so every page repeats) raises
  ``PaginationError`` after a few pages, from ``iter()`` and from ``download_all``.
* 16: ``WebhookReceiver`` answers 400 for a ``Content-Length`` of non-ASCII digits or 5,000 digits;
  ``max_concurrent_downloads`` that is not an int from 1 to 10 (``"5"``, ``True``) is a
  ``ConfigurationError``; a 206 whose range ends before it starts is reported as such.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from audian_fax_async import (
    BulkDownload,
    ConfigurationError,
    FaxClient,
    IncompleteDownloadError,
    OutcomeKind,
    PaginationError,
    WebhookEvent,
    parse_datetime,
)
from audian_fax_async.webhooks import DeliveryOutcome, WebhookReceiver

from .api import EPOCH, Fax, Inbox, document_reply, pdf
from .conftest import ClientFactory
from .helpers import BOUND
from .server import HostileServer, Reply, Request, json_reply

# -- 10: listings that make no progress ----------------------------------------------------------


#: After this many pages a stubborn listing gives up itself (an empty page), so that a walk that
#: would go round forever fails the test quickly instead of hanging it.
PAGE_BUDGET = 40


def _stubborn_listing(inbox: Inbox, *, ignore: tuple[str, ...]) -> None:
    """The listing answers as if the parameters in ``ignore`` (to_date, offset) were never sent."""

    def answer(request: Request) -> Reply:
        if len(stubborn.requests) > PAGE_BUDGET:
            return json_reply({"faxes": [], "total": 0, "limit": 10, "offset": 0})
        query = {k: v for k, v in request.query.items() if k not in ignore}
        return honest_page(inbox, query)

    stubborn = inbox.server.route("/v2/fax/received", answer)


def honest_page(inbox: Inbox, query: dict[str, str]) -> Reply:
    faxes = sorted(inbox.faxes.values(), key=lambda f: (f.received_at, f.id), reverse=True)
    if "to_date" in query:
        upper = parse_datetime(query["to_date"])
        faxes = [f for f in faxes if f.received_at <= upper]
    limit, offset = int(query.get("limit", "20")), int(query.get("offset", "0"))
    page = faxes[offset : offset + limit]
    return json_reply(
        {"faxes": [f.record(inbox.server.origin) for f in page], "total": len(faxes), "limit": limit, "offset": offset}
    )


def _same_second(inbox: Inbox, count: int) -> None:
    for number in range(count):
        fax = Fax(f"fax_same_{number:04d}", EPOCH, pdf(64))
        inbox.faxes[fax.id] = fax


IGNORED = {"to_date-and-offset": ("to_date", "offset"), "to_date": ("to_date",), "offset": ("offset",)}


async def walk_into(seen: list[str], client: FaxClient) -> None:
    async for fax in client.received.iter(page_size=10):
        seen.append(fax.id)


@pytest.mark.parametrize("ignore", list(IGNORED))
async def test_a_listing_that_ignores_its_paging_raises_pagination_error(
    make_client: ClientFactory, inbox: Inbox, ignore: str
) -> None:
    if ignore == "offset":
        _same_second(inbox, 50)  # one timestamp for all: the walk pages by offset inside it
    else:
        inbox.add(50)  # distinct timestamps: the walk pages by to_date
    _stubborn_listing(inbox, ignore=IGNORED[ignore])
    seen: list[str] = []
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(PaginationError):
                await walk_into(seen, client)
    pages = [r for r in inbox.server.requests if r.path == "/v2/fax/received"]
    assert len(pages) <= 6, f"{len(pages)} pages before giving up"
    assert len(seen) == len(set(seen)), f"{len(seen) - len(set(seen))} faxes yielded more than once"


async def collect_kinds(kinds: list[OutcomeKind], run: BulkDownload) -> None:
    async with run as outcomes:
        async for outcome in outcomes:
            kinds.append(outcome.kind)


async def test_download_all_raises_pagination_error_after_the_faxes_it_saw(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    inbox.add(50)
    _stubborn_listing(inbox, ignore=("to_date", "offset"))
    kinds: list[OutcomeKind] = []
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(PaginationError):
                await collect_kinds(kinds, client.received.download_all(tmp_path, page_size=10))
    assert kinds == [OutcomeKind.DOWNLOADED] * 10, "the first page's faxes, once each"


@pytest.mark.parametrize("same_second", [False, True], ids=["distinct-times", "one-timestamp"])
async def test_an_honest_listing_is_walked_to_its_end(
    make_client: ClientFactory, inbox: Inbox, same_second: bool
) -> None:
    """The control: the same walk over an honest listing yields every fax once."""
    if same_second:
        _same_second(inbox, 45)
    else:
        inbox.add(45)
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            seen = [fax.id async for fax in client.received.iter(page_size=10)]
    assert sorted(seen) == sorted(inbox.faxes)


# -- 16: inputs that used to be raw Python errors ----------------------------------------------

EVENT = json.dumps(
    {
        "event": "fax_received",
        "id": "fax_1",
        "from_number": "+12025550100",
        "to_number": "+15555550100",
        "pages": 1,
        "received_at": "2026-01-01T00:00:00Z",
    }
).encode()


@pytest.mark.parametrize("length", ["²", "٣", "9" * 5000, "-1", "1e3", ""], ids=repr)
async def test_the_receiver_answers_400_for_a_content_length_that_is_no_number(length: str) -> None:
    handled: list[WebhookEvent] = []

    async def handler(event: WebhookEvent) -> None:
        handled.append(event)

    receiver = WebhookReceiver(handler)
    result = await receiver.handle(EVENT, {"Content-Type": "application/json", "Content-Length": length})
    assert result.outcome is DeliveryOutcome.INVALID
    assert result.status_code == 400
    assert handled == []


async def test_the_receiver_answers_400_through_asgi_too() -> None:
    async def handler(event: WebhookEvent) -> None:
        raise AssertionError("never called")

    receiver = WebhookReceiver(handler)
    sent: list[dict[str, Any]] = []
    body = [{"type": "http.request", "body": EVENT, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return body.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/json"), (b"content-length", "²".encode())],
    }
    await receiver(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400


@pytest.mark.parametrize("value", ["5", True, False, 0, 11, 5.0, None], ids=repr)
def test_max_concurrent_downloads_must_be_an_int_from_1_to_10(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrent_downloads"):
        FaxClient("k" * 20, base_url="http://127.0.0.1:1/v2", max_concurrent_downloads=value)  # type: ignore[arg-type]


def test_max_concurrent_downloads_takes_1_to_10() -> None:
    for value in (1, 10):
        assert FaxClient("k" * 20, base_url="http://127.0.0.1:1/v2", max_concurrent_downloads=value)


async def test_a_206_ending_before_its_start_is_reported_as_such(
    make_client: ClientFactory, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    fax = inbox.put("fax_backwards", pdf(20_000))
    inbox.script(
        fax.id,
        document_reply(fax.document, etag=fax.etag, drop_after=8000),
        document_reply(b"", etag=fax.etag, status=206, content_range="bytes 8000-7999/20000"),
    )
    caplog.set_level(logging.INFO, logger="audian_fax_async")
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=1) as client, client.received.stream(fax.id) as chunks:
            with pytest.raises(IncompleteDownloadError) as caught:
                async for _ in chunks:
                    pass
    message = str(caught.value)
    assert "8000-7999" in message and "ends before it starts" in message, message
    assert "not at" not in message


async def test_a_server_that_never_pages_cannot_make_iter_spin(
    make_client: ClientFactory, server: HostileServer
) -> None:
    """An empty page that claims more is coming ends the walk (nothing to step past)."""
    listing = server.route("/v2/fax/received", json_reply({"faxes": [], "total": 10**9, "limit": 10, "offset": 0}))
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            assert [fax async for fax in client.received.iter(page_size=10)] == []
    assert listing.hits == 1
