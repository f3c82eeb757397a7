"""Shared fixtures of the core suite: a client that never sleeps, and respx mounted on the API.

respx answers with its own models, httpx's ``Response``; the SDK sees them through httpx2's transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
import respx

from audian_fax_async import FaxClient, RetryPolicy

API_KEY = "sk_test_SECRET_0123456789abcdef"
BASE_URL = "https://api.audian.com:8443/v2"

# Building an SSL context costs tens of milliseconds; one shared context keeps the suite fast.
SSL_CONTEXT = httpx2.create_ssl_context()


class RecordingSleep:
    """An injected ``sleep`` that returns at once and remembers every delay it was asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own settings must not leak into the tests.
    monkeypatch.delenv("AUDIAN_API_KEY", raising=False)
    monkeypatch.delenv("AUDIAN_BASE_URL", raising=False)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def policy(sleeps: RecordingSleep) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps, random=lambda: 0.5)


@pytest.fixture
async def client(policy: RetryPolicy) -> AsyncIterator[FaxClient]:
    transport = httpx2.AsyncHTTPTransport(verify=SSL_CONTEXT)
    async with FaxClient(API_KEY, base_url=BASE_URL, retry_policy=policy, transport=transport) as fax_client:
        yield fax_client


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    # respx patches httpcore2's connection pool (the mocker pytest-httpx2 registers): the SDK's
    # httpx2 client and its transport run as they do in production, only the network is replaced.
    with respx.mock(using="httpcore2", base_url=BASE_URL, assert_all_called=False, assert_all_mocked=True) as router:
        yield router
