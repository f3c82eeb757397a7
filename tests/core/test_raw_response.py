"""Response metadata: ``with_raw_response`` on every namespace, ``retry-after-ms``, and paging by hand.

A raw call answers an :class:`APIResponse` (status, headers, request id, timing, the answer itself)
whose ``parse()`` is what the plain call returns; a call that fetched again (an update answered 204)
keeps its own answer. A server's ``retry-after-ms`` is the wait before a retry, preferred over
``Retry-After``. ``FaxPage.get_next_page()`` walks the pages of ``received.list`` with its filters
and options.
"""

from __future__ import annotations

import datetime
import inspect
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import respx

from audian_fax_async import (
    APIResponse,
    FaxClient,
    FaxPage,
    FaxStatus,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
)
from audian_fax_async._retry import retry_after_from

from ._every_call import FAX, GET, NUMBERS, PAGE, PDF, RULE, WEBHOOK, Endpoints, name_of
from ._fakes import T0, FakeInbox, fax_json
from .conftest import API_KEY, RecordingSleep


@pytest.fixture
def endpoints(api: respx.MockRouter) -> Endpoints:
    return Endpoints(api)


Raw = Callable[[FaxClient], Awaitable[APIResponse[Any]]]
Plain = Callable[[FaxClient], Awaitable[Any]]

PROCESSED = {**FAX, "status": "processed", "processed": True}
ARCHIVED = {**FAX, "status": "archived", "processed": True}

#: Each method with a raw form: the raw call, the plain call, the answer's status and body.
RAW_CALLS: dict[str, tuple[Raw, Plain, int, Any]] = {
    "received.list": (
        lambda c: c.received.with_raw_response.list(limit=5, status="received"),
        lambda c: c.received.list(limit=5, status="received"),
        200,
        PAGE,
    ),
    "received.get": (
        lambda c: c.received.with_raw_response.get("fax_1"),
        lambda c: c.received.get("fax_1"),
        200,
        FAX,
    ),
    "received.update": (
        lambda c: c.received.with_raw_response.update("fax_1", status=FaxStatus.PROCESSED),
        lambda c: c.received.update("fax_1", status=FaxStatus.PROCESSED),
        200,
        PROCESSED,
    ),
    "received.mark_processed": (
        lambda c: c.received.with_raw_response.mark_processed("fax_1"),
        lambda c: c.received.mark_processed("fax_1"),
        200,
        PROCESSED,
    ),
    "received.archive": (
        lambda c: c.received.with_raw_response.archive("fax_1"),
        lambda c: c.received.archive("fax_1"),
        200,
        ARCHIVED,
    ),
    "webhooks.create": (
        lambda c: c.webhooks.with_raw_response.create(url="https://example.com/fax", events=["fax_received"]),
        lambda c: c.webhooks.create(url="https://example.com/fax", events=["fax_received"]),
        201,
        WEBHOOK,
    ),
    "routing.create": (
        lambda c: c.routing.with_raw_response.create(type="email", destination="faxes@example.com"),
        lambda c: c.routing.create(type="email", destination="faxes@example.com"),
        201,
        RULE,
    ),
    "numbers.request": (
        lambda c: c.numbers.with_raw_response.request(area_code="202"),
        lambda c: c.numbers.request(area_code="202"),
        201,
        NUMBERS,
    ),
}
every_raw_call = pytest.mark.parametrize("call", list(RAW_CALLS), ids=list(RAW_CALLS))


# -- with_raw_response -------------------------------------------------------------------------


@every_raw_call
async def test_a_raw_call_answers_the_status_headers_request_id_timing_and_body(
    client: FaxClient, endpoints: Endpoints, call: str
) -> None:
    raw_call, _, status, body = RAW_CALLS[call]

    raw = await raw_call(client)

    assert isinstance(raw, APIResponse)
    assert raw.status_code == status
    assert raw.request_id == "req_1"
    assert raw.headers["x-request-id"] == "req_1"
    assert raw.headers["content-type"] == "application/json"
    assert isinstance(raw.elapsed, datetime.timedelta) and raw.elapsed >= datetime.timedelta(0)
    assert isinstance(raw.http_response, httpx2.Response)
    assert raw.http_response.status_code == status
    assert json.loads(raw.content) == body
    assert raw.http_response.request.headers["X-Auth-Token"] == API_KEY
    assert repr(raw) == f"<APIResponse [{status}] request_id='req_1'>"


@every_raw_call
async def test_parse_gives_what_the_plain_call_returns(client: FaxClient, endpoints: Endpoints, call: str) -> None:
    raw_call, plain_call, _, _ = RAW_CALLS[call]

    parsed = (await raw_call(client)).parse()
    plain = await plain_call(client)

    assert parsed == plain
    assert type(parsed) is type(plain)
    assert endpoints.answered == 2  # one request each


@every_raw_call
async def test_a_retried_raw_call_answers_with_the_answer_that_succeeded(
    client: FaxClient, endpoints: Endpoints, sleeps: RecordingSleep, call: str
) -> None:
    raw_call, _, status, _ = RAW_CALLS[call]
    endpoints.fail(1)  # 503 (req_1), or a refused connection for creates (no answer at all)

    raw = await raw_call(client)

    assert raw.status_code == status
    assert raw.request_id == f"req_{endpoints.answered}"
    assert len(sleeps.delays) == 1


async def test_every_namespace_has_its_raw_calls(client: FaxClient) -> None:
    namespaces = {
        "received": ["archive", "get", "list", "mark_processed", "update"],
        "webhooks": ["create"],
        "routing": ["create"],
        "numbers": ["request"],
    }
    for namespace, methods in namespaces.items():
        resource = getattr(client, namespace)
        raw = resource.with_raw_response
        assert raw is resource.with_raw_response  # made once per namespace
        assert sorted(name for name in vars(raw) if not name.startswith("_")) == methods
        for method in methods:
            # The same arguments as the plain method, its documentation too.
            assert inspect.signature(getattr(raw, method)) == inspect.signature(getattr(resource, method))
            assert getattr(raw, method).__doc__ == getattr(resource, method).__doc__


@pytest.mark.parametrize("call", ["received.update", "received.mark_processed", "received.archive"])
async def test_a_change_answered_204_keeps_the_204_and_parses_the_fax_fetched_again(
    client: FaxClient, api: respx.MockRouter, call: str
) -> None:
    method, path = (
        ("POST", "/fax/received/fax_1/archive") if call == "received.archive" else ("PUT", "/fax/received/fax_1")
    )
    changed = api.route(method=method, path=path).respond(204, headers={"X-Request-Id": "req_change"})
    after = ARCHIVED if call == "received.archive" else PROCESSED
    refetch = api.get("/fax/received/fax_1").respond(200, json=after, headers={"X-Request-Id": "req_refetch"})
    raw_call, plain_call, _, _ = RAW_CALLS[call]

    raw = await raw_call(client)

    assert raw.status_code == 204
    assert raw.request_id == "req_change"
    assert raw.content == b""
    assert raw.http_response.request.method == method
    assert raw.parse() == await plain_call(client)
    assert raw.parse().status == after["status"]
    assert changed.call_count == refetch.call_count == 2


async def test_the_fetch_after_a_204_carries_the_calls_options(client: FaxClient, api: respx.MockRouter) -> None:
    api.put("/fax/received/fax_1").respond(204)
    refetch = api.get("/fax/received/fax_1").respond(200, json=PROCESSED)

    await client.received.with_raw_response.mark_processed(
        "fax_1", timeout=7.5, extra_headers={"X-Trace": "t-1"}, extra_query={"trace": "q-1"}
    )

    request = refetch.calls.last.request
    assert request.headers["X-Trace"] == "t-1"
    assert request.url.params["trace"] == "q-1"
    assert request.extensions["timeout"] == {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}


@pytest.mark.parametrize("header", ["X-Request-Id", "Request-Id", "X-Amzn-RequestId", "X-Correlation-Id"])
async def test_the_request_id_is_read_from_the_headers_apis_use(
    client: FaxClient, api: respx.MockRouter, header: str
) -> None:
    api.get("/fax/received/fax_1").respond(200, json=FAX, headers={header: "id-42"})

    raw = await client.received.with_raw_response.get("fax_1")

    assert raw.request_id == "id-42"


async def test_an_answer_without_a_request_id_has_none(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received/fax_1").respond(200, json=FAX)

    raw = await client.received.with_raw_response.get("fax_1")

    assert raw.request_id is None
    assert repr(raw) == "<APIResponse [200] request_id=None>"


async def test_an_error_status_raises_as_the_plain_call_does(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received/fax_1").respond(
        404, json={"error": {"code": "fax_not_found", "message": "no such fax"}}, headers={"X-Request-Id": "req_404"}
    )

    with pytest.raises(NotFoundError) as caught:
        await client.received.with_raw_response.get("fax_1")

    assert caught.value.request_id == "req_404"


async def test_concurrent_raw_calls_each_answer_their_own_response(client: FaxClient, api: respx.MockRouter) -> None:
    ids = [f"fax_{i}" for i in range(8)]
    for fax_id in ids:
        api.get(f"/fax/received/{fax_id}").respond(
            200, json=fax_json(fax_id), headers={"X-Request-Id": f"req_{fax_id}"}
        )
    raws: dict[str, APIResponse[Any]] = {}

    async def one(fax_id: str) -> None:
        raws[fax_id] = await client.received.with_raw_response.get(fax_id)
        await client.received.get(fax_id)  # a plain call in between records nothing of its own

    async with anyio.create_task_group() as tg:
        for fax_id in ids:
            tg.start_soon(one, fax_id)

    assert {fax_id: raw.request_id for fax_id, raw in raws.items()} == {fax_id: f"req_{fax_id}" for fax_id in ids}
    assert {fax_id: raw.parse().id for fax_id, raw in raws.items()} == {fax_id: fax_id for fax_id in ids}


async def test_a_raw_call_on_a_copy_uses_the_copys_defaults(client: FaxClient, endpoints: Endpoints) -> None:
    copy = client.with_options(default_headers={"X-Copy": "1"})

    raw = await copy.received.with_raw_response.get("fax_1")

    assert raw.http_response.request.headers["X-Copy"] == "1"
    assert name_of(endpoints.requests()[0]) == GET
    assert "X-Copy" not in (await client.received.with_raw_response.get("fax_1")).http_response.request.headers


# -- retry-after-ms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250.5"}, 0.2505),
        ({"retry-after-ms": "0"}, 0.0),
        ({"retry-after-ms": "250", "Retry-After": "7"}, 0.25),  # the finer one wins
        ({"retry-after-ms": "soon", "Retry-After": "7"}, 7.0),  # a bogus value falls back
        ({"retry-after-ms": "-5", "Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "nan", "Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "inf", "Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "", "Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "soon"}, None),
        ({"Retry-After": "3"}, 3.0),
        ({}, None),
    ],
)
def test_retry_after_from_prefers_retry_after_ms(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_from(httpx2.Headers(headers)) == seconds


def busy(**headers: str) -> httpx.Response:
    return httpx.Response(503, json={"error": {"code": "service_unavailable", "message": "busy"}}, headers=headers)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after-ms": "2500"}, 2.5),
        ({"retry-after-ms": "3000", "Retry-After": "9"}, 3.0),
        ({"retry-after-ms": "soon", "Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "-1"}, 0.4375),  # neither usable: the policy's own backoff
        ({"retry-after-ms": "100"}, 0.4375),  # shorter than the backoff: the backoff stands
    ],
    ids=["ms", "ms-over-retry-after", "bogus-ms-falls-back", "bogus-ms-alone", "shorter-than-backoff"],
)
async def test_the_wait_before_a_retry_is_the_servers_retry_after_ms(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep, headers: dict[str, str], wait: float
) -> None:
    api.get("/fax/received/fax_1").mock(side_effect=[busy(**headers), httpx.Response(200, json=FAX)])

    fax = await client.received.get("fax_1")

    assert fax.id == "fax_1"
    assert sleeps.delays == [wait]


async def test_a_download_waits_the_retry_after_ms_of_its_503(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep, tmp_path: Path
) -> None:
    api.get("/fax/received/fax_1/download").mock(
        side_effect=[
            busy(**{"retry-after-ms": "1500"}),
            httpx.Response(200, content=PDF, headers={"Content-Length": str(len(PDF))}),
        ]
    )

    await client.received.download("fax_1", tmp_path / "a.pdf")

    assert sleeps.delays == [1.5]
    assert (tmp_path / "a.pdf").read_bytes() == PDF


async def test_a_429s_retry_after_comes_from_retry_after_ms(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received/fax_1").respond(429, headers={"retry-after-ms": "1500", "Retry-After": "30"})

    with pytest.raises(RateLimitError) as caught:
        await client.received.get("fax_1", max_retries=0)

    assert caught.value.retry_after == 1.5


async def test_a_retry_after_ms_beyond_the_policys_cap_is_raised_not_slept(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    route = api.get("/fax/received/fax_1").respond(503, headers={"retry-after-ms": "120000"})  # 2 minutes

    with pytest.raises(InternalServerError, match="not retried"):
        await client.received.get("fax_1")

    assert route.call_count == 1
    assert sleeps.delays == []


# -- FaxPage.has_next_page / get_next_page -------------------------------------------------------

WALK_OPTIONS: dict[str, Any] = {"timeout": 7.5, "extra_headers": {"X-Trace": "t-1"}, "extra_query": {"trace": "q-1"}}


@pytest.fixture
def inbox(api: respx.MockRouter) -> FakeInbox:
    inbox = FakeInbox()
    inbox.add_many(7)
    inbox.add("fax_other", T0, status="processed")  # left out by the status filter
    inbox.mount(api)
    return inbox


async def test_get_next_page_walks_every_page_with_the_same_filters_and_options(
    client: FaxClient, inbox: FakeInbox, api: respx.MockRouter
) -> None:
    since = T0 - datetime.timedelta(days=1)
    page = await client.received.list(3, status="received", from_date=since, **WALK_OPTIONS)
    pages = [page]
    while page.has_next_page():
        page = await page.get_next_page()
        pages.append(page)

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [p.offset for p in pages] == [0, 3, 6]
    walked = [fax.id for p in pages for fax in p.faxes]
    assert walked == [f"fax_{i:04d}" for i in range(6, -1, -1)]  # newest first, each once
    assert not pages[-1].has_next_page() and not pages[-1].has_more
    assert [dict(params) for params in inbox.list_requests] == [
        {
            "limit": "3",
            "offset": str(offset),
            "from_date": "2024-02-03T13:15:00Z",
            "status": "received",
            "trace": "q-1",
        }
        for offset in (0, 3, 6)
    ]
    for call in api.calls:
        assert call.request.headers["X-Trace"] == "t-1"
        assert call.request.extensions["timeout"] == {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}


async def test_get_next_page_past_the_end_raises_without_sending(client: FaxClient, inbox: FakeInbox) -> None:
    page = await client.received.list(10, status="received")
    assert len(page) == 7 and not page.has_next_page()

    with pytest.raises(InvalidRequestError, match="no next page"):
        await page.get_next_page()

    assert len(inbox.list_requests) == 1


async def test_a_page_built_by_hand_has_no_next_page_to_fetch() -> None:
    page = FaxPage(faxes=[], total=10, limit=3, offset=0)
    assert page.has_more  # the numbers say more lie beyond ...
    assert not page.has_next_page()  # ... but nothing knows how to fetch them

    with pytest.raises(InvalidRequestError, match=r"not fetched by received\.list"):
        await page.get_next_page()


async def test_an_empty_page_that_claims_more_ends_the_walk(client: FaxClient, api: respx.MockRouter) -> None:
    # A server that says 5 faxes lie beyond but sends none would make a by-hand loop run forever.
    route = api.get("/fax/received").respond(200, json={"faxes": [], "total": 5, "limit": 3, "offset": 0})

    page = await client.received.list(3)

    assert page.has_more and not page.has_next_page()
    with pytest.raises(InvalidRequestError):
        await page.get_next_page()
    assert route.call_count == 1


async def test_get_next_page_keeps_the_calls_max_retries(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    first = {"faxes": [fax_json("fax_2"), fax_json("fax_1")], "total": 4, "limit": 2, "offset": 0}
    route = api.get("/fax/received").mock(side_effect=[httpx.Response(200, json=first), busy(), busy(), busy()])
    page = await client.received.list(2, max_retries=1)

    with pytest.raises(InternalServerError):
        await page.get_next_page()

    assert route.call_count == 3  # the first page, then the next one tried twice (not the client's 4 times)
    assert route.calls.last.request.url.params["offset"] == "2"
    assert len(sleeps.delays) == 1
