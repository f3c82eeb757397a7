"""Which failures are retried, how often, how long the client waits, and what it logs."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import respx

from audian_fax_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    FaxClient,
    IncompleteDownloadError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
)
from audian_fax_async._retry import (
    backoff_delay,
    call_with_retries,
    parse_retry_after,
    retry_after_of,
    should_retry,
)

from ._fakes import fax_json
from .conftest import API_KEY, BASE_URL, RecordingSleep

OK_FAX = fax_json("fax_1")

# With random() == 0.5 and jitter 0.25 every wait is 0.875 of the exponential base (0.5 s doubling).
BACKOFF = [0.4375, 0.875, 1.75]


def failures_then_ok(*failures: httpx.Response | Exception, ok: Any = OK_FAX) -> list[Any]:
    return [*failures, httpx.Response(200, json=ok)]


# -- counts ------------------------------------------------------------------------------------


async def test_a_get_is_retried_max_retries_times_with_growing_backoff(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    route = api.get("/fax/received/fax_1").respond(503)

    with pytest.raises(InternalServerError):
        await client.received.get("fax_1")

    assert route.call_count == 4
    assert sleeps.delays == BACKOFF


async def test_a_get_succeeds_after_transient_failures(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    route = api.get("/fax/received/fax_1").mock(
        side_effect=failures_then_ok(httpx.Response(502), httpx2.ReadTimeout("slow"))
    )

    fax = await client.received.get("fax_1")

    assert fax.id == "fax_1"
    assert route.call_count == 3
    assert sleeps.delays == BACKOFF[:2]


async def test_max_retries_on_the_client_sets_the_count(
    api: respx.MockRouter, policy: RetryPolicy, sleeps: RecordingSleep
) -> None:
    route = api.get("/fax/received/fax_1").respond(500)

    async with FaxClient(API_KEY, base_url=BASE_URL, max_retries=1, retry_policy=policy) as client:
        with pytest.raises(InternalServerError):
            await client.received.get("fax_1")

    assert route.call_count == 2
    assert sleeps.delays == BACKOFF[:1]


async def test_max_retries_zero_on_the_client_sends_once(api: respx.MockRouter, policy: RetryPolicy) -> None:
    route = api.get("/fax/received/fax_1").respond(500)

    async with FaxClient(API_KEY, base_url=BASE_URL, max_retries=0, retry_policy=policy) as client:
        with pytest.raises(InternalServerError):
            await client.received.get("fax_1")

    assert route.call_count == 1


async def test_the_retry_policy_count_is_used_when_max_retries_is_not_passed(api: respx.MockRouter) -> None:
    sleeps = RecordingSleep()
    route = api.get("/fax/received/fax_1").respond(500)

    async with FaxClient(API_KEY, base_url=BASE_URL, retry_policy=RetryPolicy(max_retries=5, sleep=sleeps)) as client:
        with pytest.raises(InternalServerError):
            await client.received.get("fax_1")

    assert route.call_count == 6
    assert len(sleeps.delays) == 5


@pytest.mark.parametrize("max_retries", [0, 1, 5])
async def test_max_retries_per_call_overrides_the_client(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep, max_retries: int
) -> None:
    route = api.get("/fax/received").respond(504)

    with pytest.raises(InternalServerError):
        await client.received.list(max_retries=max_retries)

    assert route.call_count == max_retries + 1
    assert len(sleeps.delays) == max_retries


async def test_max_retries_per_call_on_the_escape_hatch(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    route = api.get("/fax/anything").respond(503)

    with pytest.raises(InternalServerError):
        await client.request("GET", "fax/anything", max_retries=1)

    assert route.call_count == 2


async def test_backoff_is_capped_at_max_delay(api: respx.MockRouter) -> None:
    sleeps = RecordingSleep()
    policy = RetryPolicy(max_retries=6, initial_delay=1.0, max_delay=4.0, jitter=0.0, sleep=sleeps)
    api.get("/fax/received/fax_1").respond(500)

    async with FaxClient(API_KEY, base_url=BASE_URL, retry_policy=policy) as client:
        with pytest.raises(InternalServerError):
            await client.received.get("fax_1")

    assert sleeps.delays == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


# -- which statuses ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_a_retryable_status_is_retried(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep, status: int
) -> None:
    route = api.get("/fax/received/fax_1").mock(side_effect=failures_then_ok(httpx.Response(status)))

    await client.received.get("fax_1")

    assert route.call_count == 2
    assert sleeps.delays == BACKOFF[:1]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
async def test_a_final_status_is_raised_at_once(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep, status: int
) -> None:
    route = api.get("/fax/received/fax_1").respond(status)

    with pytest.raises(APIStatusError):
        await client.received.get("fax_1")

    assert route.call_count == 1
    assert sleeps.delays == []


# -- Retry-After -------------------------------------------------------------------------------


async def test_retry_after_seconds_is_honoured_when_longer_than_the_backoff(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    api.get("/fax/received/fax_1").mock(
        side_effect=failures_then_ok(
            httpx.Response(429, headers={"Retry-After": "12"}), httpx.Response(429, headers={"Retry-After": "0"})
        )
    )

    await client.received.get("fax_1")

    assert sleeps.delays == [12.0, BACKOFF[1]]


async def test_retry_after_http_date_is_honoured(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    api.get("/fax/received/fax_1").mock(
        side_effect=failures_then_ok(httpx.Response(429, headers={"Retry-After": when}))
    )

    await client.received.get("fax_1")

    assert len(sleeps.delays) == 1
    assert 35.0 <= sleeps.delays[0] <= 40.0


@pytest.mark.parametrize("retry_after", ["3600", "Wed, 21 Oct 2099 07:28:00 GMT"], ids=["seconds", "http-date"])
async def test_a_retry_after_beyond_the_cap_raises_at_once_without_sleeping(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep, retry_after: str
) -> None:
    route = api.get("/fax/received/fax_1").respond(429, headers={"Retry-After": retry_after})

    with pytest.raises(RateLimitError) as caught:
        await client.received.get("fax_1")

    assert route.call_count == 1
    assert sleeps.delays == []
    assert caught.value.retry_after is not None and caught.value.retry_after > client.retry_policy.max_retry_after


async def test_retry_after_on_a_503_is_honoured_too(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    api.get("/fax/received/fax_1").mock(side_effect=failures_then_ok(httpx.Response(503, headers={"Retry-After": "9"})))

    await client.received.get("fax_1")

    assert sleeps.delays == [9.0]


async def test_a_503_asking_for_an_hour_raises_at_once_without_sleeping(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    route = api.get("/fax/received/fax_1").respond(503, headers={"Retry-After": "3600"})

    with pytest.raises(InternalServerError):
        await client.received.get("fax_1")

    assert route.call_count == 1
    assert sleeps.delays == []


# -- which operations --------------------------------------------------------------------------

Call = Callable[[FaxClient], Awaitable[object]]

IDEMPOTENT_CALLS: list[tuple[str, str, Call]] = [
    ("GET", "/fax/received", lambda c: c.received.list()),
    ("GET", "/fax/received/fax_1", lambda c: c.received.get("fax_1")),
    ("PUT", "/fax/received/fax_1", lambda c: c.received.update("fax_1", status="processed")),
    ("PUT", "/fax/received/fax_1", lambda c: c.received.mark_processed("fax_1")),
    ("POST", "/fax/received/fax_1/archive", lambda c: c.received.archive("fax_1")),
]
CREATING_CALLS: list[tuple[str, str, Call, Any]] = [
    (
        "POST",
        "/fax/webhooks",
        lambda c: c.webhooks.create(url="https://example.com/h", events=["fax_received"]),
        {"url": "https://example.com/h", "events": ["fax_received"]},
    ),
    (
        "POST",
        "/fax/routing",
        lambda c: c.routing.create(type="email", destination="faxes@example.com"),
        {"type": "email", "destination": "faxes@example.com"},
    ),
    ("POST", "/fax/numbers", lambda c: c.numbers.request(area_code="202"), {"numbers": [{"number": "+12025550100"}]}),
]
IDEMPOTENT_IDS = ["list", "get", "update", "mark_processed", "archive"]
CREATING_IDS = ["webhooks", "routing", "numbers"]
SENT_FAILURES = [
    httpx.Response(500),
    httpx.Response(503),
    httpx2.ReadTimeout("no answer"),
    httpx2.RemoteProtocolError("peer closed"),
    httpx2.ReadError("reset"),
]
SENT_IDS = ["500", "503", "read-timeout", "protocol-error", "read-error"]
PAGE = {"faxes": [], "total": 0, "limit": 20, "offset": 0}


@pytest.mark.parametrize("failure", SENT_FAILURES, ids=SENT_IDS)
@pytest.mark.parametrize(("method", "path", "call"), IDEMPOTENT_CALLS, ids=IDEMPOTENT_IDS)
async def test_get_put_and_archive_are_retried_after_any_transient_failure(
    client: FaxClient,
    api: respx.MockRouter,
    method: str,
    path: str,
    call: Call,
    failure: httpx.Response | Exception,
) -> None:
    ok = PAGE if path == "/fax/received" else OK_FAX
    route = api.route(method=method, path=path).mock(side_effect=failures_then_ok(failure, ok=ok))

    await call(client)

    assert route.call_count == 2


@pytest.mark.parametrize("failure", SENT_FAILURES, ids=SENT_IDS)
@pytest.mark.parametrize(("method", "path", "call", "ok"), CREATING_CALLS, ids=CREATING_IDS)
async def test_a_creating_post_is_not_retried_once_it_may_have_reached_the_server(
    client: FaxClient,
    api: respx.MockRouter,
    sleeps: RecordingSleep,
    method: str,
    path: str,
    call: Call,
    ok: Any,
    failure: httpx.Response | Exception,
) -> None:
    route = api.route(method=method, path=path).mock(side_effect=failures_then_ok(failure, ok=ok))

    with pytest.raises((APIConnectionError, InternalServerError)):
        await call(client)

    assert route.call_count == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    "failure",
    [httpx2.ConnectError("refused"), httpx2.ConnectTimeout("no route")],
    ids=["connect-error", "connect-timeout"],
)
@pytest.mark.parametrize(("method", "path", "call", "ok"), CREATING_CALLS, ids=CREATING_IDS)
async def test_a_creating_post_is_retried_when_the_connection_was_never_made(
    client: FaxClient,
    api: respx.MockRouter,
    sleeps: RecordingSleep,
    method: str,
    path: str,
    call: Call,
    ok: Any,
    failure: Exception,
) -> None:
    route = api.route(method=method, path=path).mock(side_effect=failures_then_ok(failure, failure, ok=ok))

    await call(client)

    assert route.call_count == 3
    assert sleeps.delays == BACKOFF[:2]


async def test_a_creating_post_is_not_retried_after_a_429(
    client: FaxClient, api: respx.MockRouter, sleeps: RecordingSleep
) -> None:
    route = api.post("/fax/numbers").respond(429, headers={"Retry-After": "1"})

    with pytest.raises(RateLimitError):
        await client.numbers.request(area_code="202")

    assert route.call_count == 1
    assert sleeps.delays == []


async def test_the_escape_hatch_retries_a_post_only_when_told_it_is_idempotent(
    client: FaxClient, api: respx.MockRouter
) -> None:
    route = api.post("/fax/thing").mock(side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200)])

    with pytest.raises(InternalServerError):
        await client.request("POST", "fax/thing")
    assert route.call_count == 1

    response = await client.request("POST", "fax/thing", idempotent=True)
    assert response.status_code == 200
    assert route.call_count == 3


# -- logging -----------------------------------------------------------------------------------


async def test_each_retry_is_logged_at_info_without_the_key(
    client: FaxClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.get("/fax/received/fax_1").mock(
        side_effect=failures_then_ok(httpx.Response(503), httpx2.ConnectError(f"refused {API_KEY[:3]}"))
    )

    await client.received.get("fax_1")

    retries = [r for r in caplog.records if r.name == "audian_fax_async" and r.getMessage().startswith("retrying")]
    assert len(retries) == 2
    assert all(r.levelno == logging.INFO for r in retries)
    assert "GET fax/received/fax_1" in retries[0].getMessage()
    assert "InternalServerError" in retries[0].getMessage()
    assert "APIConnectionError" in retries[1].getMessage()
    assert not [r for r in caplog.records if r.name == "audian_fax_async" and r.levelno >= logging.WARNING]
    assert API_KEY not in caplog.text


async def test_the_final_failure_of_a_retried_call_is_logged_once_at_warning(
    client: FaxClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.get("/fax/received/fax_1").respond(503, text=f"down, key {API_KEY}")

    with pytest.raises(InternalServerError):
        await client.received.get("fax_1", max_retries=2)

    ours = [r for r in caplog.records if r.name == "audian_fax_async" and r.levelno >= logging.INFO]
    assert [r.levelno for r in ours] == [logging.INFO, logging.INFO, logging.WARNING]
    assert "after 3 attempts" in ours[-1].getMessage()
    assert API_KEY not in caplog.text


async def test_a_call_that_fails_once_without_retries_logs_only_its_debug_line(
    client: FaxClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.get("/fax/received/fax_1").respond(404, headers={"X-Request-Id": "req_404"})

    with pytest.raises(NotFoundError):
        await client.received.get("fax_1")

    ours = [r for r in caplog.records if r.name == "audian_fax_async"]
    assert [r.levelno for r in ours] == [logging.DEBUG]
    assert ours[0].getMessage() == (
        "GET /v2/fax/received/fax_1 -> 404 Not Found in "
        + ours[0].getMessage().split(" in ", 1)[1].split(" ms", 1)[0]
        + " ms (request id req_404, attempt 1)"
    )
    assert API_KEY not in caplog.text


# -- the pure pieces ---------------------------------------------------------------------------

POLICY = RetryPolicy(max_retry_after=60.0)


def _status_error(status: int, cls: type[APIStatusError] = APIStatusError) -> APIStatusError:
    return cls("x", status_code=status, method="GET", url="u")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_should_retry_a_retryable_status_only_when_idempotent(status: int) -> None:
    err = _status_error(status)

    assert should_retry(err, idempotent=True, policy=POLICY)
    assert not should_retry(err, idempotent=False, policy=POLICY)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501, 505])
def test_should_not_retry_a_final_status(status: int) -> None:
    assert not should_retry(_status_error(status), idempotent=True, policy=POLICY)


def test_should_retry_a_connection_error_that_never_reached_the_server_even_for_a_post() -> None:
    never_sent = APIConnectionError("refused", request_sent=False)
    sent = APIConnectionError("reset", request_sent=True)
    timeout = APITimeoutError("read", request_sent=True)

    assert should_retry(never_sent, idempotent=False, policy=POLICY)
    assert should_retry(never_sent, idempotent=True, policy=POLICY)
    assert not should_retry(sent, idempotent=False, policy=POLICY)
    assert should_retry(sent, idempotent=True, policy=POLICY)
    assert not should_retry(timeout, idempotent=False, policy=POLICY)
    assert should_retry(timeout, idempotent=True, policy=POLICY)


def test_should_retry_a_429_only_within_the_retry_after_cap() -> None:
    def rate_limited(retry_after: float | None) -> RateLimitError:
        return RateLimitError("x", retry_after=retry_after, status_code=429, method="GET", url="u")

    assert should_retry(rate_limited(None), idempotent=True, policy=POLICY)
    assert should_retry(rate_limited(60.0), idempotent=True, policy=POLICY)
    assert not should_retry(rate_limited(60.5), idempotent=True, policy=POLICY)


def test_should_retry_an_incomplete_download_only_when_idempotent_and_never_other_errors() -> None:
    assert should_retry(IncompleteDownloadError("short"), idempotent=True, policy=POLICY)
    assert not should_retry(IncompleteDownloadError("short"), idempotent=False, policy=POLICY)
    assert not should_retry(ValueError("bug"), idempotent=True, policy=POLICY)
    assert not should_retry(_status_error(404, NotFoundError), idempotent=True, policy=POLICY)


NOW = datetime(2024, 2, 4, 13, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Sun, 04 Feb 2024 13:15:30 GMT", 30.0),
        ("Sun, 04 Feb 2024 13:14:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_of_reads_a_429_attribute_or_any_status_header() -> None:
    request = httpx2.Request("GET", "https://api.audian.com:8443/v2/fax/received")
    unavailable = InternalServerError(
        "x",
        status_code=503,
        method="GET",
        url="u",
        response=httpx2.Response(503, headers={"Retry-After": "4"}, request=request),
    )
    limited = RateLimitError("x", retry_after=2.0, status_code=429, method="GET", url="u")

    assert retry_after_of(unavailable) == 4.0
    assert retry_after_of(limited) == 2.0
    assert retry_after_of(_status_error(500)) is None
    assert retry_after_of(APIConnectionError("reset")) is None
    assert retry_after_of(None) is None


def test_backoff_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=0.25, random=lambda: 0.0)
    assert [backoff_delay(n, policy) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]

    most_jitter = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=0.25, random=lambda: 1.0)
    assert [backoff_delay(n, most_jitter) for n in range(1, 4)] == [0.375, 0.75, 1.5]


def test_backoff_delay_honours_a_longer_retry_after_only() -> None:
    policy = RetryPolicy(random=lambda: 0.0)

    assert backoff_delay(1, policy, retry_after=10.0) == 10.0
    assert backoff_delay(3, policy, retry_after=0.1) == 2.0


def test_retry_policy_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


# -- call_with_retries: the one retry engine ------------------------------------------------------


def _connection_error(number: int) -> APIConnectionError:
    return APIConnectionError(f"drop {number}", method="GET", url="u", request_sent=True)


class _Calls:
    """An operation that fails with the given errors, then returns ``"ok"``; it counts its calls."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def test_call_with_retries_numbers_the_attempts_from_one_and_reports_each_retry(
    sleeps: RecordingSleep, policy: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first, second = _connection_error(1), _connection_error(2)
    calls = _Calls(first, second)
    seen: list[BaseException] = []

    result = await call_with_retries(calls, policy, idempotent=True, operation="op", on_retry=seen.append)

    assert result == "ok"
    assert calls.count == 3
    assert seen == [first, second]
    assert sleeps.delays == [backoff_delay(1, policy), backoff_delay(2, policy)]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying op")]
    assert [m.split("(attempt ")[1].split(" ")[0] for m in logged] == ["1", "2"]


async def test_call_with_retries_keeps_no_state_between_calls(sleeps: RecordingSleep, policy: RetryPolicy) -> None:
    # A fresh AsyncRetrying per call: concurrent calls each get their own attempts and waits.
    results: list[str] = []

    async def one() -> None:
        results.append(await call_with_retries(_Calls(_connection_error(1)), policy, idempotent=True, operation="op"))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)

    assert results == ["ok"] * 5
    assert sleeps.delays == [backoff_delay(1, policy)] * 5


async def test_call_with_retries_raises_the_last_error_once_the_retries_are_spent(
    sleeps: RecordingSleep, policy: RetryPolicy
) -> None:
    errors = [_connection_error(n) for n in range(4)]
    calls = _Calls(*errors)

    with pytest.raises(APIConnectionError) as raised:
        await call_with_retries(calls, policy.with_max_retries(2), idempotent=True, operation="op")

    assert raised.value is errors[2]
    assert calls.count == 3
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize("max_retries", [0, 3])
async def test_call_with_retries_raises_an_error_not_worth_retrying_at_once(
    sleeps: RecordingSleep, policy: RetryPolicy, max_retries: int
) -> None:
    final = _status_error(404)
    calls = _Calls(final)

    with pytest.raises(APIStatusError) as raised:
        await call_with_retries(calls, policy.with_max_retries(max_retries), idempotent=True, operation="op")

    assert raised.value is final
    assert calls.count == 1
    assert sleeps.delays == []


async def test_call_with_retries_never_retries_a_sent_post(sleeps: RecordingSleep, policy: RetryPolicy) -> None:
    sent = _connection_error(1)
    calls = _Calls(sent)

    with pytest.raises(APIConnectionError):
        await call_with_retries(calls, policy, idempotent=False, operation="POST numbers")

    assert calls.count == 1
    assert sleeps.delays == []
