"""Per-call options (``timeout``, ``extra_headers``, ``extra_query``, ``max_retries``) on every method.

Each option reaches every request of its call (a download's record and document, a bulk run's
listing, documents and marks), its retries included, and no request of the next call. The key is
the client's: ``extra_headers`` can neither replace it nor carry it to another origin. The timeout
of a client given ``http_client=`` is applied per request; without it the user's client decides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import respx

from audian_fax_async import (
    AudianError,
    CallOptions,
    DefaultAsyncHttpClient,
    FaxClient,
    RetryPolicy,
)

from ._every_call import CALLS, FAX, GET, PDF, Endpoints, name_of
from .conftest import API_KEY, BASE_URL, RecordingSleep

OPTIONS: CallOptions = {"timeout": 7.5, "extra_headers": {"X-Trace": "t-1"}, "extra_query": {"trace": "q-1"}}
#: httpx2's form of a timeout in ``request.extensions["timeout"]``.
SEVEN_AND_A_HALF: dict[str, float | None] = {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}
#: The SDK's own client's timeouts (``DefaultAsyncHttpClient``).
SDK_DEFAULT: dict[str, float | None] = {"connect": 10.0, "read": 60.0, "write": 30.0, "pool": 30.0}

every_call = pytest.mark.parametrize("call", list(CALLS), ids=list(CALLS))


@pytest.fixture
def endpoints(api: respx.MockRouter) -> Endpoints:
    return Endpoints(api)


@pytest.fixture(autouse=True)
def _folders_for_two_calls(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()


def assert_options_on(request: httpx.Request, *, timeout: dict[str, float | None] = SEVEN_AND_A_HALF) -> None:
    where = name_of(request)
    assert request.headers.get_list("X-Trace") == ["t-1"], where
    assert request.url.params.get_list("trace") == ["q-1"], where
    assert request.extensions["timeout"] == timeout, where
    assert request.headers.get_list("X-Auth-Token") == [API_KEY], where


def assert_no_options_on(request: httpx.Request) -> None:
    where = name_of(request)
    assert "X-Trace" not in request.headers, where
    assert "trace" not in request.url.params, where
    assert request.extensions["timeout"] == SDK_DEFAULT, where


# -- every option on every method ----------------------------------------------------------------


@every_call
async def test_every_option_reaches_every_request_of_the_call(
    client: FaxClient, endpoints: Endpoints, tmp_path: Path, call: str
) -> None:
    run, reached = CALLS[call]

    await run(client, tmp_path, OPTIONS)

    assert set(endpoints.hits()) == reached
    for request in endpoints.requests():
        assert_options_on(request)


@every_call
async def test_every_option_reaches_every_retry(
    client: FaxClient, endpoints: Endpoints, sleeps: RecordingSleep, tmp_path: Path, call: str
) -> None:
    run, reached = CALLS[call]
    endpoints.fail(1)  # each endpoint fails once (503, or a refused connection for creates), then answers

    await run(client, tmp_path, OPTIONS)

    assert endpoints.hits() == dict.fromkeys(reached, 2)
    assert len(sleeps.delays) == len(reached)  # one retry per endpoint, each after the injected sleep
    for request in endpoints.requests():
        assert_options_on(request)


@every_call
@pytest.mark.parametrize("max_retries", [0, 2])
async def test_max_retries_sets_the_attempts_of_the_call(
    client: FaxClient, endpoints: Endpoints, tmp_path: Path, call: str, max_retries: int
) -> None:
    run, _ = CALLS[call]
    endpoints.fail(-1)  # every request fails: the call gives up after 1 + max_retries attempts

    with pytest.raises(AudianError):
        await run(client, tmp_path, {**OPTIONS, "max_retries": max_retries})

    hits = endpoints.hits()
    assert len(hits) == 1, hits  # the call's first endpoint failed it
    assert list(hits.values()) == [1 + max_retries]
    for request in endpoints.requests():
        assert_options_on(request)


@every_call
async def test_options_do_not_leak_into_the_next_call(
    client: FaxClient, endpoints: Endpoints, tmp_path: Path, call: str
) -> None:
    run, reached = CALLS[call]
    await run(client, tmp_path / "first", {**OPTIONS, "max_retries": 0})
    endpoints.reset()
    endpoints.fail(1)

    # The client's own 3 retries are back: one failure per endpoint is survived.
    await run(client, tmp_path / "second", {})

    assert endpoints.hits() == dict.fromkeys(reached, 2)
    for request in endpoints.requests():
        assert_no_options_on(request)


@pytest.mark.parametrize(
    ("timeout", "extension"),
    [
        (
            httpx2.Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0),
            {"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 4.0},
        ),
        (httpx2.Timeout(5.0, read=None), {"connect": 5.0, "read": None, "write": 5.0, "pool": 5.0}),
        (None, {"connect": None, "read": None, "write": None, "pool": None}),
        (3, {"connect": 3, "read": 3, "write": 3, "pool": 3}),
    ],
    ids=["phases", "no-read-timeout", "none", "int"],
)
@pytest.mark.parametrize("call", ["received.get", "received.download-folder", "received.stream", "webhooks.create"])
async def test_a_timeout_is_a_number_an_httpx2_timeout_or_none(
    client: FaxClient, endpoints: Endpoints, tmp_path: Path, call: str, timeout: Any, extension: dict[str, Any]
) -> None:
    run, _ = CALLS[call]

    await run(client, tmp_path, {"timeout": timeout})

    assert endpoints.requests()
    for request in endpoints.requests():
        assert request.extensions["timeout"] == extension, name_of(request)


async def test_extra_headers_override_the_clients_default_headers_for_that_call(
    client: FaxClient, endpoints: Endpoints
) -> None:
    await client.received.get("fax_1", extra_headers={"User-Agent": "my-app/2", "accept": "application/xml"})
    await client.received.get("fax_1")

    first, second = endpoints.requests()
    assert first.headers.get_list("User-Agent") == ["my-app/2"]
    assert first.headers.get_list("Accept") == ["application/xml"]
    assert second.headers["User-Agent"].startswith("audian-fax-async/")
    assert second.headers["Accept"] == "application/json"


async def test_extra_query_is_added_to_the_methods_own_parameters(client: FaxClient, endpoints: Endpoints) -> None:
    await client.received.list(5, status="received", extra_query={"tenant": "t1", "empty": None})

    (request,) = endpoints.requests()
    assert dict(request.url.params) == {"limit": "5", "offset": "0", "status": "received", "tenant": "t1"}


async def test_client_request_takes_the_options_beside_its_own_headers_and_params(
    client: FaxClient, endpoints: Endpoints
) -> None:
    await client.request("GET", "fax/received", params={"limit": 3}, headers={"X-Own": "h"}, **OPTIONS)

    (request,) = endpoints.requests()
    assert_options_on(request)
    assert request.headers["X-Own"] == "h"
    assert request.url.params["limit"] == "3"


# -- the key stays the client's -----------------------------------------------------------------

AUTH_SPELLINGS = ["X-Auth-Token", "x-auth-token", "X-AUTH-TOKEN"]
ELSEWHERE = "https://storage.example.net/documents/fax_1.pdf"


@pytest.mark.parametrize("header", AUTH_SPELLINGS)
@pytest.mark.parametrize("call", ["received.get", "received.download-file", "received.stream", "routing.create"])
async def test_extra_headers_cannot_replace_or_double_the_key(
    client: FaxClient, endpoints: Endpoints, tmp_path: Path, call: str, header: str
) -> None:
    run, _ = CALLS[call]

    await run(client, tmp_path, {"extra_headers": {header: "sk_smuggled", "X-Trace": "t-1"}})

    assert endpoints.requests()
    for request in endpoints.requests():
        assert request.headers.get_list("X-Auth-Token") == [API_KEY], name_of(request)
        assert request.headers["X-Trace"] == "t-1"


@pytest.fixture
def redirected_document(api: respx.MockRouter) -> respx.Route:
    api.get("/fax/received/fax_1").respond(200, json=FAX)
    api.get("/fax/received/fax_1/download").respond(302, headers={"Location": ELSEWHERE})
    return api.get(ELSEWHERE).respond(200, content=PDF, headers={"Content-Length": str(len(PDF))})


@pytest.mark.parametrize("header", AUTH_SPELLINGS)
async def test_extra_headers_cannot_carry_a_key_to_the_origin_a_download_is_redirected_to(
    client: FaxClient, redirected_document: respx.Route, tmp_path: Path, header: str
) -> None:
    await client.received.download("fax_1", tmp_path / "a.pdf", extra_headers={header: API_KEY})
    async with client.received.stream("fax_1", extra_headers={header: "sk_smuggled"}) as document:
        assert b"".join([chunk async for chunk in document]) == PDF

    assert redirected_document.call_count == 2
    for call in redirected_document.calls:
        assert "X-Auth-Token" not in call.request.headers
    assert (tmp_path / "a.pdf").read_bytes() == PDF


@pytest.mark.parametrize("header", AUTH_SPELLINGS)
async def test_extra_headers_cannot_carry_a_key_to_an_absolute_url_elsewhere(
    client: FaxClient, api: respx.MockRouter, header: str
) -> None:
    route = api.get(ELSEWHERE).respond(200, content=b"elsewhere")

    await client.request("GET", ELSEWHERE, extra_headers={header: API_KEY}, headers={header: API_KEY})

    assert "X-Auth-Token" not in route.calls.last.request.headers


# -- where the timeouts come from ----------------------------------------------------------------


class Recorder:
    """A transport answering every endpoint the calls below reach, recording httpx2's requests."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self.transport = httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if request.url.path.endswith("/download"):
            return httpx2.Response(200, content=PDF, headers={"Content-Length": str(len(PDF))})
        return httpx2.Response(200, json=FAX, headers={"Set-Cookie": "session=abc; Path=/"})

    def timeouts(self) -> list[dict[str, float | None]]:
        return [request.extensions["timeout"] for request in self.requests]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def users_client(recorder: Recorder) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=1.0, transport=recorder.transport) as http:
        yield http


async def three_calls(client: FaxClient, tmp_path: Path, **options: Any) -> None:
    """A call, a download (its record and its document) and a stream: four requests."""
    await client.received.get("fax_1", **options)
    await client.received.download("fax_1", f"{tmp_path}/out/", **options)
    async with client.received.stream("fax_1", **options) as document:
        assert b"".join([chunk async for chunk in document]) == PDF


def as_extension(seconds: float | None) -> dict[str, float | None]:
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}


async def test_a_timeout_given_with_http_client_is_applied_to_every_request(
    users_client: httpx2.AsyncClient, recorder: Recorder, tmp_path: Path
) -> None:
    async with FaxClient(API_KEY, base_url=BASE_URL, http_client=users_client, timeout=4.0) as client:
        await three_calls(client, tmp_path)
        await three_calls(client, tmp_path / "again", timeout=9.0)  # a call's own timeout wins

    assert recorder.timeouts() == [as_extension(4.0)] * 4 + [as_extension(9.0)] * 4


async def test_no_timeout_given_with_http_client_is_applied_as_none(
    users_client: httpx2.AsyncClient, recorder: Recorder, tmp_path: Path
) -> None:
    async with FaxClient(API_KEY, base_url=BASE_URL, http_client=users_client, timeout=None) as client:
        await three_calls(client, tmp_path)

    assert recorder.timeouts() == [as_extension(None)] * 4


async def test_without_a_timeout_the_users_client_keeps_its_own_timeouts(
    users_client: httpx2.AsyncClient, recorder: Recorder, tmp_path: Path
) -> None:
    async with FaxClient(API_KEY, base_url=BASE_URL, http_client=users_client) as client:
        await three_calls(client, tmp_path)
        await three_calls(client, tmp_path / "again", timeout=2.5)

    assert recorder.timeouts() == [as_extension(1.0)] * 4 + [as_extension(2.5)] * 4
    assert not users_client.is_closed  # the user's client is never closed by the SDK


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [(None, as_extension(None)), (4.0, as_extension(4.0)), ("default", SDK_DEFAULT)],
    ids=["none", "seconds", "default"],
)
async def test_the_sdks_own_client_uses_the_timeout_given(
    recorder: Recorder, tmp_path: Path, timeout: Any, expected: dict[str, float | None]
) -> None:
    kwargs: dict[str, Any] = {} if timeout == "default" else {"timeout": timeout}
    async with FaxClient(API_KEY, base_url=BASE_URL, transport=recorder.transport, **kwargs) as client:
        await three_calls(client, tmp_path)

    assert recorder.timeouts() == [expected] * 4


async def test_default_async_http_client_has_the_sdks_defaults(recorder: Recorder) -> None:
    async with DefaultAsyncHttpClient(transport=recorder.transport) as http:
        assert isinstance(http, httpx2.AsyncClient)
        assert http.timeout == httpx2.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0)
        assert http.follow_redirects is False
        await http.get(f"{BASE_URL}/fax/received/fax_1")  # answered with a Set-Cookie
        await http.get(f"{BASE_URL}/fax/received/fax_1")

        assert len(http.cookies) == 0  # no cookies kept
        assert "Cookie" not in recorder.requests[1].headers


async def test_default_async_http_client_takes_every_keyword_and_the_given_ones_win(recorder: Recorder) -> None:
    async with DefaultAsyncHttpClient(
        transport=recorder.transport, timeout=5.0, follow_redirects=True, headers={"X-Proxy-Auth": "p"}
    ) as http:
        assert http.timeout == httpx2.Timeout(5.0)
        assert http.follow_redirects is True
        await http.get(f"{BASE_URL}/fax/received/fax_1")

    assert recorder.requests[0].headers["X-Proxy-Auth"] == "p"


async def test_a_fax_client_on_default_async_http_client_sends_with_its_defaults(
    recorder: Recorder, tmp_path: Path
) -> None:
    http = DefaultAsyncHttpClient(transport=recorder.transport)
    async with FaxClient(API_KEY, base_url=BASE_URL, http_client=http) as client:
        await three_calls(client, tmp_path)

    assert recorder.timeouts() == [SDK_DEFAULT] * 4
    assert not http.is_closed  # given by the user: the user closes it
    await http.aclose()


# -- the policy's own sleep and count with per-call max_retries --------------------------------------


async def test_a_calls_max_retries_keeps_the_clients_waits(endpoints: Endpoints) -> None:
    sleeps = RecordingSleep()
    policy = RetryPolicy(max_retries=1, sleep=sleeps, random=lambda: 0.5)
    endpoints.fail(3)
    async with FaxClient(API_KEY, base_url=BASE_URL, retry_policy=policy) as client:
        await client.received.get("fax_1", max_retries=3)

    assert endpoints.hits() == {GET: 4}
    assert sleeps.delays == [0.4375, 0.875, 1.75]  # the policy's backoff, with the call's count


async def broken_off(body: bytes) -> AsyncIterator[bytes]:
    yield body
    raise httpx2.ReadError("connection reset")


async def test_a_resumed_download_carries_the_options_on_its_range_request(tmp_path: Path) -> None:
    # The document breaks off halfway; the retry asks for the rest with Range, still with the options.
    half = len(PDF) // 2
    requests: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        if len(requests) == 1:
            headers = {"Content-Length": str(len(PDF)), "ETag": '"v1"', "Accept-Ranges": "bytes"}
            return httpx2.Response(200, content=broken_off(PDF[:half]), headers=headers)
        span = f"bytes {half}-{len(PDF) - 1}/{len(PDF)}"
        headers = {"Content-Length": str(len(PDF) - half), "ETag": '"v1"', "Content-Range": span}
        return httpx2.Response(206, content=PDF[half:], headers=headers)

    policy = RetryPolicy(sleep=RecordingSleep())
    async with FaxClient(
        API_KEY, base_url=BASE_URL, transport=httpx2.MockTransport(handler), retry_policy=policy
    ) as client:
        result = await client.received.download("fax_1", tmp_path / "a.pdf", **OPTIONS)

    assert result.path.read_bytes() == PDF and result.resumed
    assert [request.headers.get("Range") for request in requests] == [None, f"bytes={half}-"]
    for request in requests:
        assert request.headers["X-Trace"] == "t-1"
        assert request.url.params["trace"] == "q-1"
        assert request.extensions["timeout"] == SEVEN_AND_A_HALF
