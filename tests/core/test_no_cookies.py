"""The SDK's own HTTP client keeps no cookies; an injected client keeps its own behaviour."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
import respx

from audian_fax_async import FaxClient

BASE = "https://api.example.test/v2"


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(using="httpcore2", base_url=BASE) as router:
        yield router


async def test_a_set_cookie_from_the_api_is_not_sent_back(api: respx.MockRouter) -> None:
    first = api.get("/fax/received/a").respond(200, json={"id": "a"}, headers={"Set-Cookie": "session=abc; Path=/"})
    second = api.get("/fax/received/b").respond(200, json={"id": "b"})
    async with FaxClient("key-123456", base_url=BASE) as client:
        await client.request("GET", "fax/received/a")
        await client.request("GET", "fax/received/b")
    assert first.called
    assert "cookie" not in second.calls.last.request.headers


async def test_an_injected_http_client_keeps_its_cookies(api: respx.MockRouter) -> None:
    api.get("/fax/received/a").respond(200, json={"id": "a"}, headers={"Set-Cookie": "session=abc; Path=/"})
    second = api.get("/fax/received/b").respond(200, json={"id": "b"})
    async with httpx2.AsyncClient() as http, FaxClient("key-123456", base_url=BASE, http_client=http) as client:
        await client.request("GET", "fax/received/a")
        await client.request("GET", "fax/received/b")
    assert second.calls.last.request.headers["cookie"] == "session=abc"
