"""The key stays secret and at home; configuration and lifecycle errors are clear."""

from __future__ import annotations

import logging

import httpx
import httpx2
import pytest
import respx

from audian_fax_async import (
    DEFAULT_BASE_URL,
    APIConnectionError,
    AudianError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    FaxClient,
    InternalServerError,
    RetryPolicy,
)

from ._fakes import fax_json
from .conftest import API_KEY, BASE_URL, RecordingSleep

# -- the key never shows -----------------------------------------------------------------------


async def test_repr_of_the_client_shows_the_base_url_but_not_the_key(client: FaxClient) -> None:
    text = repr(client)

    assert API_KEY not in text
    assert API_KEY[:8] not in text
    assert BASE_URL in text
    assert API_KEY not in client.account


async def test_an_error_message_never_contains_the_key_even_when_the_api_echoes_it(
    client: FaxClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"code": "invalid_token", "message": f"token {API_KEY} is not valid"}}
    api.get("/fax/received/fax_1").respond(401, json=echo)
    api.get("/fax/received/fax_2").mock(side_effect=[httpx.Response(503, text=f"upstream said {API_KEY}")] * 2)

    with pytest.raises(AuthenticationError) as unauthorized:
        await client.received.get("fax_1")
    with pytest.raises(InternalServerError) as failed:
        await client.received.get("fax_2", max_retries=1)

    for err in (unauthorized.value, failed.value):
        assert API_KEY not in str(err)
        assert API_KEY not in repr(err)
        assert API_KEY not in err.body
        assert API_KEY not in (err.api_message or "")
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    "failure",
    [httpx2.ConnectError("refused"), httpx2.ReadTimeout("slow"), httpx.Response(500), httpx.Response(404)],
    ids=["connect", "timeout", "500", "404"],
)
async def test_no_failure_puts_the_key_in_a_message_or_log(
    client: FaxClient,
    api: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
    failure: httpx.Response | Exception,
) -> None:
    caplog.set_level(logging.DEBUG)
    api.get("/fax/received/fax_1").mock(side_effect=[failure] * 4)

    with pytest.raises(AudianError) as caught:
        await client.received.get("fax_1")

    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    "base_url", ["https://user:hunter2@api.audian.com:8443/v2", "https://:hunter2@api.audian.com/v2"]
)
def test_credentials_in_the_base_url_are_refused_without_showing_them(base_url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        FaxClient(API_KEY, base_url=base_url)

    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value)


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "https://files.example.net/fax_1.json",
        "http://api.audian.com:8443/v2/fax/received/fax_1",  # same host, other scheme
        "https://api.audian.com/v2/fax/received/fax_1",  # same host, other port
    ],
    ids=["other-host", "other-scheme", "other-port"],
)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_does_not_get_the_key(
    client: FaxClient, api: respx.MockRouter, status: int, location: str
) -> None:
    api.get("/fax/received/fax_1").respond(status, headers={"Location": location})
    elsewhere = api.get(location).respond(200, json=fax_json("fax_1"))

    fax = await client.received.get("fax_1")

    assert fax.id == "fax_1"
    request = elsewhere.calls.last.request
    assert "X-Auth-Token" not in request.headers
    assert API_KEY not in str(request.headers.raw)
    assert request.headers["User-Agent"].startswith("audian-fax-async/")


async def test_a_same_origin_redirect_keeps_the_key(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received/old_id").respond(301, headers={"Location": "/v2/fax/received/new_id"})
    moved = api.get("/fax/received/new_id").respond(200, json=fax_json("new_id"))

    fax = await client.received.get("old_id")

    assert fax.id == "new_id"
    assert moved.calls.last.request.headers["X-Auth-Token"] == API_KEY


async def test_a_redirect_back_from_another_origin_does_not_carry_the_key_through_it(
    client: FaxClient, api: respx.MockRouter
) -> None:
    api.get("/fax/received/fax_1").respond(302, headers={"Location": "https://cdn.example.net/hop"})
    hop = api.get("https://cdn.example.net/hop").respond(
        302, headers={"Location": "https://api.audian.com:8443/v2/fax/received/fax_2"}
    )
    home = api.get("/fax/received/fax_2").respond(200, json=fax_json("fax_2"))

    await client.received.get("fax_1")

    assert "X-Auth-Token" not in hop.calls.last.request.headers
    assert home.calls.last.request.headers["X-Auth-Token"] == API_KEY


async def test_a_cross_origin_307_keeps_method_and_body_but_drops_the_key(
    client: FaxClient, api: respx.MockRouter
) -> None:
    api.put("/fax/received/fax_1").respond(307, headers={"Location": "https://eu.example.net/fax/received/fax_1"})
    moved = api.put("https://eu.example.net/fax/received/fax_1").respond(
        200, json=fax_json("fax_1", status="processed")
    )

    await client.received.mark_processed("fax_1")

    request = moved.calls.last.request
    assert request.method == "PUT"
    assert request.content == b'{"status":"processed"}'
    assert "X-Auth-Token" not in request.headers


async def test_an_injected_client_that_follows_redirects_still_drops_the_key(
    api: respx.MockRouter, policy: RetryPolicy
) -> None:
    api.get("/fax/received/fax_1").respond(302, headers={"Location": "https://files.example.net/x"})
    elsewhere = api.get("https://files.example.net/x").respond(200, json=fax_json("fax_1"))

    async with (
        httpx2.AsyncClient(follow_redirects=True) as http,
        FaxClient(API_KEY, base_url=BASE_URL, http_client=http, retry_policy=policy) as client,
    ):
        await client.received.get("fax_1")

    assert "X-Auth-Token" not in elsewhere.calls.last.request.headers


async def test_a_redirect_loop_ends_with_an_error(client: FaxClient, api: respx.MockRouter) -> None:
    route = api.get("/fax/received/fax_1").respond(302, headers={"Location": "/v2/fax/received/fax_1"})

    with pytest.raises(APIConnectionError, match="redirects"):
        await client.received.get("fax_1", max_retries=0)

    assert route.call_count == 6


# -- configuration -----------------------------------------------------------------------------


def test_a_missing_key_is_a_configuration_error_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="AUDIAN_API_KEY"):
        FaxClient()


@pytest.mark.parametrize("key", ["", "   ", "abc\ndef", "abc\x00"], ids=["empty", "blank", "newline", "nul"])
def test_an_unusable_key_is_a_configuration_error(key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        FaxClient(key)

    if key.strip():
        assert key not in str(caught.value)


async def test_the_key_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, api: respx.MockRouter, policy: RetryPolicy
) -> None:
    monkeypatch.setenv("AUDIAN_API_KEY", "env-key-0123456789")
    route = api.get("/fax/received/fax_1").respond(200, json=fax_json("fax_1"))

    async with FaxClient(retry_policy=policy) as client:
        await client.received.get("fax_1")

    assert route.calls.last.request.headers["X-Auth-Token"] == "env-key-0123456789"


async def test_an_explicit_key_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, api: respx.MockRouter, policy: RetryPolicy
) -> None:
    monkeypatch.setenv("AUDIAN_API_KEY", "env-key-0123456789")
    route = api.get("/fax/received/fax_1").respond(200, json=fax_json("fax_1"))

    async with FaxClient(API_KEY, retry_policy=policy) as client:
        await client.received.get("fax_1")

    assert route.calls.last.request.headers["X-Auth-Token"] == API_KEY


async def test_the_base_url_comes_from_audian_base_url(monkeypatch: pytest.MonkeyPatch, policy: RetryPolicy) -> None:
    monkeypatch.setenv("AUDIAN_BASE_URL", "http://localhost:8099/api/v2")

    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        route = router.get("http://localhost:8099/api/v2/fax/received/fax_1").respond(200, json=fax_json("fax_1"))
        async with FaxClient(API_KEY, retry_policy=policy) as client:
            await client.received.get("fax_1")

    assert str(client.base_url) == "http://localhost:8099/api/v2/"
    assert route.calls.last.request.headers["X-Auth-Token"] == API_KEY


def test_the_default_base_url_is_the_documented_one() -> None:
    client = FaxClient(API_KEY)

    assert DEFAULT_BASE_URL == "https://api.audian.com:8443/v2"
    assert str(client.base_url) == "https://api.audian.com:8443/v2/"


def test_an_explicit_base_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIAN_BASE_URL", "http://localhost:8099/v2")

    assert str(FaxClient(API_KEY, base_url="https://eu.audian.example/v2").base_url) == "https://eu.audian.example/v2/"


@pytest.mark.parametrize("base_url", ["ftp://api.audian.com/v2", "api.audian.com/v2", "https://"])
def test_an_unusable_base_url_is_a_configuration_error(base_url: str) -> None:
    with pytest.raises(ConfigurationError):
        FaxClient(API_KEY, base_url=base_url)


# -- lifecycle ---------------------------------------------------------------------------------


async def test_using_a_closed_client_raises_client_closed_error(api: respx.MockRouter, policy: RetryPolicy) -> None:
    route = api.get("/fax/received/fax_1").respond(200, json=fax_json("fax_1"))
    client = FaxClient(API_KEY, base_url=BASE_URL, retry_policy=policy)
    await client.aclose()

    assert client.is_closed
    with pytest.raises(ClientClosedError):
        await client.received.get("fax_1")
    with pytest.raises(ClientClosedError):
        await client.request("GET", "fax/received")
    with pytest.raises(ClientClosedError):
        [fax async for fax in client.received.iter()]
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert route.call_count == 0


async def test_a_closed_client_is_not_retried(api: respx.MockRouter) -> None:
    sleeps = RecordingSleep()
    client = FaxClient(API_KEY, base_url=BASE_URL, retry_policy=RetryPolicy(sleep=sleeps))
    await client.aclose()

    with pytest.raises(ClientClosedError):
        await client.received.get("fax_1")

    assert sleeps.delays == []


async def test_aclose_is_idempotent_and_closes_the_clients_own_pool(policy: RetryPolicy) -> None:
    client = FaxClient(API_KEY, retry_policy=policy)
    pool = client._http

    await client.aclose()
    await client.aclose()

    assert pool.is_closed


async def test_an_injected_http_client_is_not_closed(api: respx.MockRouter, policy: RetryPolicy) -> None:
    api.get("/fax/received/fax_1").respond(200, json=fax_json("fax_1"))
    async with httpx2.AsyncClient() as http:
        async with FaxClient(API_KEY, base_url=BASE_URL, http_client=http, retry_policy=policy) as client:
            await client.received.get("fax_1")

        assert client.is_closed
        assert not http.is_closed
        response = await http.get(f"{BASE_URL}/fax/received/fax_1")
        assert response.status_code == 200
