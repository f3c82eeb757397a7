"""Every operation sends the documented method, path, query, headers and JSON body."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import respx

from audian_fax_async import FaxClient, FaxNumber, FaxStatus, InvalidRequestError, RoutingRule, Webhook, __version__

from ._fakes import fax_json
from .conftest import API_KEY, BASE_URL, SSL_CONTEXT

EMPTY_PAGE = {"faxes": [], "total": 0, "limit": 20, "offset": 0}


def assert_api_headers(request: httpx.Request) -> None:
    assert request.headers["X-Auth-Token"] == API_KEY
    assert request.headers["User-Agent"] == f"audian-fax-async/{__version__}"
    assert request.headers["Accept"] == "application/json"


def sent_json(request: httpx.Request) -> Any:
    assert request.headers["Content-Type"] == "application/json"
    return json.loads(request.content)


# -- received.list -----------------------------------------------------------------------------


async def test_list_sends_get_with_limit_offset_and_auth_headers(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.get("/fax/received").respond(200, json=EMPTY_PAGE)

    await client.received.list()

    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url.path == "/v2/fax/received"
    assert dict(request.url.params) == {"limit": "20", "offset": "0"}
    assert_api_headers(request)
    assert request.content == b""


async def test_list_sends_every_filter_with_datetimes_as_utc_z(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.get("/fax/received").respond(200, json=EMPTY_PAGE)
    plus_two = timezone(timedelta(hours=2))

    await client.received.list(
        50,
        10,
        from_date=datetime(2024, 1, 28, 2, 0, tzinfo=plus_two),
        to_date=datetime(2024, 2, 4, 13, 15, 0, 250000, tzinfo=UTC),
        status=FaxStatus.RECEIVED,
        from_number="+12025551234",
    )

    assert dict(route.calls.last.request.url.params) == {
        "limit": "50",
        "offset": "10",
        "from_date": "2024-01-28T00:00:00Z",
        "to_date": "2024-02-04T13:15:00.250000Z",
        "status": "received",
        "from_number": "+12025551234",
    }


async def test_list_omits_filters_left_as_none(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.get("/fax/received").respond(200, json=EMPTY_PAGE)

    await client.received.list(5, from_date=None, to_date=None, status="processed", from_number=None)

    assert dict(route.calls.last.request.url.params) == {"limit": "5", "offset": "0", "status": "processed"}


@pytest.mark.parametrize("limit", [1, 100])
async def test_list_accepts_the_limit_bounds(client: FaxClient, api: respx.MockRouter, limit: int) -> None:
    route = api.get("/fax/received").respond(200, json=EMPTY_PAGE)

    await client.received.list(limit)

    assert route.calls.last.request.url.params["limit"] == str(limit)


@pytest.mark.parametrize("limit", [0, 101, -1, True, 2.5, "20"])
async def test_list_refuses_a_limit_outside_1_to_100_without_sending(
    client: FaxClient, api: respx.MockRouter, limit: Any
) -> None:
    route = api.get("/fax/received").respond(200, json=EMPTY_PAGE)

    with pytest.raises(InvalidRequestError, match="limit"):
        await client.received.list(limit)

    assert route.call_count == 0


@pytest.mark.parametrize(
    "dates",
    [
        {"from_date": datetime(2024, 1, 28)},
        {"to_date": datetime(2024, 1, 28)},
        {"from_date": datetime(2024, 1, 28), "to_date": datetime(2024, 2, 1, tzinfo=UTC)},
        {"from_date": datetime(2024, 1, 28, tzinfo=UTC), "to_date": datetime(2024, 2, 1)},
    ],
    ids=["naive-from", "naive-to", "naive-from-aware-to", "aware-from-naive-to"],
)
async def test_list_refuses_a_naive_datetime_without_sending(
    client: FaxClient, api: respx.MockRouter, dates: dict[str, datetime]
) -> None:
    route = api.get("/fax/received").respond(200, json=EMPTY_PAGE)

    with pytest.raises(InvalidRequestError, match="naive"):
        await client.received.list(**dates)  # type: ignore[arg-type]

    assert route.call_count == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"offset": -1},
        {"status": "deleted"},
        {"from_number": ""},
        {"from_date": "2024-01-28T00:00:00Z"},
        {"from_date": datetime(2024, 2, 2, tzinfo=UTC), "to_date": datetime(2024, 2, 1, tzinfo=UTC)},
    ],
    ids=["negative-offset", "unknown-status", "empty-from-number", "string-date", "from-after-to"],
)
async def test_list_refuses_bad_arguments_without_sending(
    client: FaxClient, api: respx.MockRouter, kwargs: dict[str, Any]
) -> None:
    route = api.get("/fax/received").respond(200, json=EMPTY_PAGE)

    with pytest.raises(InvalidRequestError):
        await client.received.list(**kwargs)

    assert route.call_count == 0


# -- received.iter -----------------------------------------------------------------------------


async def test_iter_pages_with_page_size_filters_and_a_to_date_keyset(client: FaxClient, api: respx.MockRouter) -> None:
    newest = datetime(2024, 2, 4, 13, 15, tzinfo=UTC)
    first = [fax_json("fax_3", newest), fax_json("fax_2", newest - timedelta(minutes=1))]
    second = [fax_json("fax_1", newest - timedelta(minutes=2))]
    route = api.get("/fax/received").mock(
        side_effect=[
            httpx.Response(200, json={"faxes": first, "total": 3, "limit": 2, "offset": 0}),
            httpx.Response(200, json={"faxes": second, "total": 2, "limit": 2, "offset": 0}),
        ]
    )

    ids = [fax.id async for fax in client.received.iter(page_size=2, status="received", from_number="+1202")]

    assert ids == ["fax_3", "fax_2", "fax_1"]
    assert [dict(call.request.url.params) for call in route.calls] == [
        {"limit": "2", "offset": "0", "status": "received", "from_number": "+1202"},
        {"limit": "2", "offset": "0", "status": "received", "from_number": "+1202", "to_date": "2024-02-04T13:14:00Z"},
    ]
    for call in route.calls:
        assert_api_headers(call.request)


async def test_iter_refuses_a_page_size_outside_1_to_100_without_sending(
    client: FaxClient, api: respx.MockRouter
) -> None:
    route = api.get("/fax/received").respond(200, json=EMPTY_PAGE)

    with pytest.raises(InvalidRequestError):
        [fax async for fax in client.received.iter(page_size=101)]

    assert route.call_count == 0


# -- one fax -----------------------------------------------------------------------------------


async def test_get_sends_get_to_the_fax_path(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.get("/fax/received/fax_received_123").respond(200, json=fax_json("fax_received_123"))

    fax = await client.received.get("fax_received_123")

    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url.query == b""
    assert_api_headers(request)
    assert fax.id == "fax_received_123"


async def test_update_puts_the_status_as_json(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.put("/fax/received/fax_received_123").respond(200, json=fax_json("fax_received_123", status="archived"))

    fax = await client.received.update("fax_received_123", status="archived")

    request = route.calls.last.request
    assert_api_headers(request)
    assert sent_json(request) == {"status": "archived"}
    assert fax.status is FaxStatus.ARCHIVED


async def test_update_refuses_an_unknown_status_without_sending(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.put("/fax/received/fax_1").respond(200, json=fax_json("fax_1"))

    with pytest.raises(InvalidRequestError, match="status"):
        await client.received.update("fax_1", status="shredded")  # type: ignore[arg-type]

    assert route.call_count == 0


async def test_mark_processed_puts_status_processed(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.put("/fax/received/fax_received_123").respond(
        200, json=fax_json("fax_received_123", status="processed")
    )

    fax = await client.received.mark_processed("fax_received_123")

    request = route.calls.last.request
    assert request.method == "PUT"
    assert_api_headers(request)
    assert sent_json(request) == {"status": "processed"}
    assert fax.status is FaxStatus.PROCESSED
    assert fax.is_processed


async def test_archive_posts_to_the_archive_path_without_a_body(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.post("/fax/received/fax_received_123/archive").respond(
        200, json=fax_json("fax_received_123", status="archived")
    )

    fax = await client.received.archive("fax_received_123")

    request = route.calls.last.request
    assert request.method == "POST"
    assert_api_headers(request)
    assert request.content == b""
    assert fax.status is FaxStatus.ARCHIVED


@pytest.mark.parametrize(
    ("fax_id", "raw_path"),
    [
        ("../../etc/x", b"/v2/fax/received/..%2F..%2Fetc%2Fx"),
        ("a/b", b"/v2/fax/received/a%2Fb"),
        ("%2e%2e", b"/v2/fax/received/%252e%252e"),
        ("a b?c#d", b"/v2/fax/received/a%20b%3Fc%23d"),
    ],
)
async def test_a_hostile_fax_id_is_sent_as_one_encoded_path_segment(
    client: FaxClient, api: respx.MockRouter, fax_id: str, raw_path: bytes
) -> None:
    route = api.route(host="api.audian.com").respond(200, json=fax_json("x"))

    await client.received.get(fax_id)
    await client.received.mark_processed(fax_id)
    await client.received.archive(fax_id)

    sent = [call.request.url for call in route.calls]
    assert [url.raw_path for url in sent] == [raw_path, raw_path, raw_path + b"/archive"]
    assert all(url.host == "api.audian.com" and url.query == b"" for url in sent)


@pytest.mark.parametrize("fax_id", ["..", ".", "", "a\x00b", "a\nb", "x" * 300, 123])
async def test_an_unusable_fax_id_is_refused_without_sending(
    client: FaxClient, api: respx.MockRouter, fax_id: Any
) -> None:
    route = api.route(host="api.audian.com").respond(200, json=fax_json("x"))

    with pytest.raises(InvalidRequestError):
        await client.received.get(fax_id)
    with pytest.raises(InvalidRequestError):
        await client.received.update(fax_id, status="processed")
    with pytest.raises(InvalidRequestError):
        await client.received.archive(fax_id)

    assert route.call_count == 0


# -- creating POSTs ----------------------------------------------------------------------------


async def test_webhooks_create_posts_the_documented_body(client: FaxClient, api: respx.MockRouter) -> None:
    body = {"url": "https://your-domain.com/webhook/fax", "events": ["fax_received"], "enabled": True, "format": "json"}
    route = api.post("/fax/webhooks").respond(201, json={"id": "wh_1", **body})

    hook = await client.webhooks.create(url="https://your-domain.com/webhook/fax", events=["fax_received"])

    request = route.calls.last.request
    assert request.method == "POST"
    assert_api_headers(request)
    assert sent_json(request) == body
    assert hook == Webhook(
        url="https://your-domain.com/webhook/fax", events=["fax_received"], enabled=True, format="json", id="wh_1"
    )


async def test_webhooks_create_sends_explicit_options(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.post("/fax/webhooks").respond(
        201, json={"url": "https://x.example/h", "events": ["fax_received", "fax_processed"]}
    )

    await client.webhooks.create(
        url="https://x.example/h", events=["fax_received", "fax_processed"], enabled=False, format="xml"
    )

    assert sent_json(route.calls.last.request) == {
        "url": "https://x.example/h",
        "events": ["fax_received", "fax_processed"],
        "enabled": False,
        "format": "xml",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "not a url", "events": ["fax_received"]},
        {"url": "ftp://x.example/h", "events": ["fax_received"]},
        {"url": "https://x.example/h", "events": []},
        {"url": "https://x.example/h", "events": "fax_received"},
        {"url": "https://x.example/h", "events": ["fax_sent"]},
        {"url": "https://x.example/h", "events": ["fax_received"], "format": "yaml"},
    ],
)
async def test_webhooks_create_refuses_bad_arguments_without_sending(
    client: FaxClient, api: respx.MockRouter, kwargs: dict[str, Any]
) -> None:
    route = api.post("/fax/webhooks").respond(201, json={})

    with pytest.raises(InvalidRequestError):
        await client.webhooks.create(**kwargs)

    assert route.call_count == 0


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        (
            {"type": "email", "destination": "receiving@company.com", "attach_document": True},
            {"type": "email", "destination": "receiving@company.com", "attach_document": True, "enabled": True},
        ),
        (
            {"type": "webhook", "destination": "https://your-crm.com/api/fax"},
            {
                "type": "webhook",
                "destination": "https://your-crm.com/api/fax",
                "attach_document": False,
                "enabled": True,
            },
        ),
    ],
    ids=["email", "webhook"],
)
async def test_routing_create_posts_the_documented_body(
    client: FaxClient, api: respx.MockRouter, kwargs: dict[str, Any], body: dict[str, Any]
) -> None:
    route = api.post("/fax/routing").respond(201, json={"id": "rt_1", **body})

    rule = await client.routing.create(**kwargs)

    request = route.calls.last.request
    assert request.method == "POST"
    assert_api_headers(request)
    assert sent_json(request) == body
    assert rule == RoutingRule(**body, id="rt_1")


async def test_numbers_request_posts_area_code_and_quantity(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.post("/fax/numbers").respond(
        201, json={"numbers": [{"number": "+12025550100", "id": "num_1", "area_code": "202"}]}
    )

    numbers = await client.numbers.request(area_code="202", quantity=1)

    request = route.calls.last.request
    assert request.method == "POST"
    assert_api_headers(request)
    assert sent_json(request) == {"area_code": "202", "quantity": 1}
    assert numbers == [FaxNumber(number="+12025550100", id="num_1", area_code="202")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"area_code": 202},
        {"area_code": "2O2"},
        {"area_code": "202", "quantity": 0},
        {"area_code": "202", "quantity": 101},
    ],
)
async def test_numbers_request_refuses_bad_arguments_without_sending(
    client: FaxClient, api: respx.MockRouter, kwargs: dict[str, Any]
) -> None:
    route = api.post("/fax/numbers").respond(201, json={"numbers": []})

    with pytest.raises(InvalidRequestError):
        await client.numbers.request(**kwargs)

    assert route.call_count == 0


# -- escape hatch ------------------------------------------------------------------------------


async def test_request_escape_hatch_sends_any_path_with_auth_params_and_json(
    client: FaxClient, api: respx.MockRouter
) -> None:
    route = api.post("/fax/received/fax_1/forward").respond(202, json={"queued": True})

    response = await client.request(
        "post",
        "/fax/received/fax_1/forward",
        params={"notify": "yes", "skip": None},
        json={"to": "+15551234567"},
        headers={"X-Trace": "t-1"},
    )

    request = route.calls.last.request
    assert request.method == "POST"
    assert dict(request.url.params) == {"notify": "yes"}
    assert request.headers["X-Trace"] == "t-1"
    assert_api_headers(request)
    assert sent_json(request) == {"to": "+15551234567"}
    assert response.status_code == 202
    assert response.json() == {"queued": True}


async def test_request_escape_hatch_does_not_send_the_key_to_an_absolute_foreign_url(
    client: FaxClient, api: respx.MockRouter
) -> None:
    route = api.get("https://elsewhere.example/status").respond(200, json={})

    await client.request("GET", "https://elsewhere.example/status")

    assert "X-Auth-Token" not in route.calls.last.request.headers


# -- build_request: the SDK's own client builds requests directly, exactly as httpx2 would ----------

_BUILD_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "fax/received", {}),
    ("GET", "fax/received", {"params": {"limit": 5, "status": None, "offset": 0}}),
    ("GET", "fax/received/fax_1/download", {"headers": {"Accept-Encoding": "identity", "Range": "bytes=10-"}}),
    ("GET", "fax/received", {"headers": {"accept": "text/csv", "X-Extra": "1"}}),
    ("PUT", "fax/received/fax_1", {"json": {"status": "processed"}}),
    ("POST", "fax/received/fax_1/archive", {}),
    ("DELETE", "webhooks/wh_1", {}),
    ("GET", "fax/received/a%2Fb%20c/download", {"headers": {"Accept": "application/pdf"}}),
    ("GET", "https://elsewhere.example/file.pdf", {}),  # another origin: no key
    ("GET", "https://api.example.test/v2/fax/received", {}),  # the API's origin, absolute: the key
]


@pytest.mark.parametrize(("method", "path", "kwargs"), _BUILD_CASES)
@pytest.mark.parametrize("default_headers", [None, {"X-Team": "billing", "user-agent": "mine/1"}])
def test_build_request_matches_what_httpx_builds(
    method: str, path: str, kwargs: dict[str, Any], default_headers: dict[str, str] | None
) -> None:
    client = FaxClient(API_KEY, base_url="https://api.example.test/v2", default_headers=default_headers, timeout=7)
    first = client.build_request(method, path, **kwargs)
    first.headers["X-Changed-After"] = "1"  # a built request's headers are its own, never the kept set's
    fast = client.build_request(method, path, **kwargs)  # the second time from the kept header set

    # What httpx2's own build_request makes of the same call (the path taken for an injected client).
    headers = httpx2.Headers(client._headers)
    headers.update(kwargs.get("headers") or {})
    if client._same_origin(fast.url):
        headers["X-Auth-Token"] = API_KEY
    params = {k: v for k, v in (kwargs.get("params") or {}).items() if v is not None} or None
    slow = client._http.build_request(
        method, client.url_for(path), params=params, json=kwargs.get("json"), headers=headers
    )

    assert fast.method == slow.method
    assert fast.url == slow.url
    assert fast.headers.raw == slow.headers.raw
    assert fast.read() == slow.read()
    assert fast.extensions == slow.extensions
    assert ("X-Auth-Token" in fast.headers) is not path.startswith("https://elsewhere")
    assert len(fast.headers.get_list("Accept")) == 1  # a header given in other case replaces, never doubles


_URL_PATHS = [
    "fax/received",
    "/fax/received/fax_1/download",
    "fax/received/a%2Fb%3F%23%20%25/download",  # fax_path's percent-encoded hostile id
    "fax/received/a%2fb",  # lower-case escapes
    "fax/received/%zz",  # not an escape
    "fax/received/caf\u00e9 x",  # to be quoted
    "fax/received/a?b=1#f",  # a query and a fragment
    "fax/./received/../x",  # dot segments
    "fax/.hidden/..",
    "fax//received",
    "fax/received/~a_b-c.d",
    "",
]
_BASES = [
    "https://api.example.test/v2",
    "http://127.0.0.1:8080/",
    "http://[::1]:81/a%20b/",
    "https://bücher.example/",
]


@pytest.mark.parametrize("base", _BASES)
@pytest.mark.parametrize("path", _URL_PATHS)
def test_url_for_is_the_url_httpx_parses(base: str, path: str) -> None:
    # url_for makes plain paths' URLs from the base's parsed form without parsing again: the result
    # must be exactly what httpx2 makes of the whole string.
    client = FaxClient(API_KEY, base_url=base)
    made = client.url_for(path)
    parsed = httpx2.URL(str(client.base_url) + path.lstrip("/"))
    assert made == parsed
    assert str(made) == str(parsed) and made.raw_path == parsed.raw_path and made.netloc == parsed.netloc
    assert (made.scheme, made.host, made.port, made.query, made.fragment) == (
        parsed.scheme,
        parsed.host,
        parsed.port,
        parsed.query,
        parsed.fragment,
    )


async def test_a_header_given_in_other_case_replaces_the_default_on_an_injected_client_too() -> None:
    async with httpx2.AsyncClient() as injected:
        client = FaxClient(API_KEY, base_url="https://api.example.test/v2", http_client=injected)
        request = client.build_request("GET", "fax/received", headers={"accept": "text/csv"})
    assert request.headers.get_list("Accept") == ["text/csv"]


async def test_an_injected_http_client_keeps_its_own_defaults() -> None:
    injected = httpx2.AsyncClient(headers={"X-Proxy-Auth": "p"}, params={"tenant": "t1"}, timeout=3)
    client = FaxClient(API_KEY, base_url="https://api.example.test/v2", http_client=injected)

    request = client.build_request("GET", "fax/received", params={"limit": 2})

    assert request.headers["X-Proxy-Auth"] == "p"
    assert request.headers["X-Auth-Token"] == API_KEY
    assert dict(request.url.params) == {"tenant": "t1", "limit": "2"}
    assert request.extensions["timeout"]["read"] == 3
    await injected.aclose()


@pytest.mark.parametrize("made_with", ["own-client", "transport", "http-client"])
async def test_every_request_goes_through_httpx2_async_client_send(
    api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, made_with: str, tmp_path: Path
) -> None:
    # One send path: a call, a download and a stream, on the SDK's own client, on a given transport
    # and on a user's httpx2.AsyncClient, all go through AsyncClient.send (redirects, hooks, timeouts).
    sent: list[str] = []
    real_send = httpx2.AsyncClient.send

    async def counting_send(self: httpx2.AsyncClient, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        sent.append(f"{request.method} {request.url.path}")
        return await real_send(self, request, **kwargs)

    monkeypatch.setattr(httpx2.AsyncClient, "send", counting_send)
    pdf = b"%PDF-1.4\n" + b"x" * 2000 + b"\n%%EOF\n"
    api.get("/fax/received/fax_1").respond(200, json=fax_json("fax_1", file_size=len(pdf)))
    api.get("/fax/received/fax_1/download").respond(200, content=pdf, headers={"Content-Length": str(len(pdf))})
    options: dict[str, Any] = {}
    if made_with == "transport":
        options["transport"] = httpx2.AsyncHTTPTransport(verify=SSL_CONTEXT)
    elif made_with == "http-client":
        options["http_client"] = httpx2.AsyncClient(verify=SSL_CONTEXT)

    async with FaxClient(API_KEY, base_url=BASE_URL, **options) as client:
        response = await client.request("GET", "fax/received/fax_1")
        await client.received.download("fax_1", tmp_path)
        async with client.received.stream("fax_1") as document:
            streamed = b"".join([chunk async for chunk in document])
    if "http_client" in options:
        await options["http_client"].aclose()

    record, document_path = "GET /v2/fax/received/fax_1", "GET /v2/fax/received/fax_1/download"
    assert sent == [record, record, document_path, document_path]  # the download asks for the record first
    assert response.request.headers["X-Auth-Token"] == API_KEY
    assert response.elapsed.total_seconds() >= 0
    assert streamed == pdf == (tmp_path / "fax_1.pdf").read_bytes()
