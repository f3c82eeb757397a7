"""Every error status, transport failure and bad body maps to its typed error, exported from the root."""

from __future__ import annotations

import email.utils
import importlib
import inspect
import re
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
import respx

import audian_fax_async
from audian_fax_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AudianError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FaxClient,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)

ERROR_BODY = {"error": {"code": "fax_not_found", "message": "No fax with this id"}}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (504, InternalServerError),
    ],
)
async def test_an_error_status_raises_its_class_with_the_response_details(
    client: FaxClient, api: respx.MockRouter, status: int, cls: type[APIStatusError]
) -> None:
    api.get("/fax/received/fax_1").respond(status, json=ERROR_BODY, headers={"X-Request-Id": "req_abc123"})

    with pytest.raises(cls) as caught:
        await client.received.get("fax_1", max_retries=0)

    err = caught.value
    assert type(err) is cls
    assert isinstance(err, APIStatusError) and isinstance(err, AudianError)
    assert err.status_code == status
    assert err.method == "GET"
    assert err.url == "https://api.audian.com:8443/v2/fax/received/fax_1"
    assert err.code == "fax_not_found"
    assert err.api_message == "No fax with this id"
    assert err.request_id == "req_abc123"
    assert '"fax_not_found"' in err.body
    assert err.response is not None and err.response.status_code == status
    assert str(err).startswith(f"{status} ")
    assert "GET https://api.audian.com:8443/v2/fax/received/fax_1" in str(err)
    assert "No fax with this id" in str(err)


async def test_an_unmapped_4xx_raises_the_base_status_error(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received/fax_1").respond(418, text="teapot")

    with pytest.raises(APIStatusError) as caught:
        await client.received.get("fax_1")

    assert type(caught.value) is APIStatusError
    assert caught.value.status_code == 418
    assert caught.value.body == "teapot"
    assert caught.value.code is None and caught.value.api_message is None and caught.value.request_id is None


async def test_an_error_body_is_cut_to_a_short_excerpt(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received/fax_1").respond(400, text="x" * 100_000)

    with pytest.raises(BadRequestError) as caught:
        await client.received.get("fax_1")

    assert 0 < len(caught.value.body) <= 501
    assert len(str(caught.value)) < 400


async def test_an_error_body_that_is_not_json_still_raises_the_status_error(
    client: FaxClient, api: respx.MockRouter
) -> None:
    api.get("/fax/received/fax_1").respond(403, content=b"\xff\xfe<html>", content_type="text/html")

    with pytest.raises(PermissionDeniedError) as caught:
        await client.received.get("fax_1")

    assert caught.value.code is None


async def test_a_429_carries_retry_after_in_seconds(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received/fax_1").respond(429, json=ERROR_BODY, headers={"Retry-After": "7"})

    with pytest.raises(RateLimitError) as caught:
        await client.received.get("fax_1", max_retries=0)

    assert caught.value.retry_after == 7.0


async def test_a_429_carries_retry_after_from_an_http_date(client: FaxClient, api: respx.MockRouter) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    api.get("/fax/received/fax_1").respond(
        429, json=ERROR_BODY, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}
    )

    with pytest.raises(RateLimitError) as caught:
        await client.received.get("fax_1", max_retries=0)

    assert caught.value.retry_after is not None
    assert 25.0 <= caught.value.retry_after <= 30.0


async def test_a_429_without_retry_after_has_none(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received/fax_1").respond(429)

    with pytest.raises(RateLimitError) as caught:
        await client.received.get("fax_1", max_retries=0)

    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    "exc",
    [httpx2.ConnectError("refused"), httpx2.ReadError("reset"), httpx2.RemoteProtocolError("peer closed")],
    ids=["connect", "read", "protocol"],
)
async def test_a_network_failure_raises_api_connection_error(
    client: FaxClient, api: respx.MockRouter, exc: httpx2.HTTPError
) -> None:
    api.get("/fax/received/fax_1").mock(side_effect=exc)

    with pytest.raises(APIConnectionError) as caught:
        await client.received.get("fax_1", max_retries=0)

    assert type(caught.value) is APIConnectionError
    assert caught.value.method == "GET"
    assert caught.value.url == "https://api.audian.com:8443/v2/fax/received/fax_1"
    assert caught.value.request_sent is not isinstance(exc, httpx2.ConnectError)
    assert isinstance(caught.value.__cause__, type(exc))


@pytest.mark.parametrize(
    "exc",
    [httpx2.ConnectTimeout("c"), httpx2.ReadTimeout("r"), httpx2.WriteTimeout("w"), httpx2.PoolTimeout("p")],
    ids=["connect", "read", "write", "pool"],
)
async def test_a_timeout_raises_api_timeout_error(
    client: FaxClient, api: respx.MockRouter, exc: httpx2.TimeoutException
) -> None:
    api.get("/fax/received/fax_1").mock(side_effect=exc)

    with pytest.raises(APITimeoutError) as caught:
        await client.received.get("fax_1", max_retries=0)

    assert isinstance(caught.value, APIConnectionError)
    assert caught.value.request_sent is not isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout)


# -- the public surface ------------------------------------------------------------------------


def test_every_error_class_is_exported_from_the_package_root() -> None:
    exceptions = importlib.import_module("audian_fax_async._exceptions")
    errors = {
        name
        for name, value in vars(exceptions).items()
        if inspect.isclass(value) and issubclass(value, AudianError) and not name.startswith("_")
    }

    assert errors <= set(audian_fax_async.__all__)
    for name in errors:
        assert getattr(audian_fax_async, name) is getattr(exceptions, name)


def test_the_exception_tree_in_the_docstring_lists_every_error() -> None:
    exceptions = importlib.import_module("audian_fax_async._exceptions")
    drawn = set(re.findall(r"[─└├]+ (\w+)", exceptions.__doc__ or ""))
    errors = {
        name
        for name, value in vars(exceptions).items()
        if inspect.isclass(value) and issubclass(value, AudianError) and name != "AudianError"
    }

    assert drawn == errors
