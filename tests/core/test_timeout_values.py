"""A timeout that is not one is refused where it is given, not when a request is sent."""

from __future__ import annotations

import httpx2
import pytest

from audian_fax_async import ConfigurationError, FaxClient

API_KEY = "sk_test_timeouts_0123456789"


@pytest.mark.parametrize("timeout", ["soon", -1, object(), True])
def test_a_timeout_that_is_not_one_is_refused_by_the_client_and_by_with_options(timeout: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        FaxClient(API_KEY, base_url="https://api.test/v2", timeout=timeout)  # type: ignore[arg-type]
    client = FaxClient(API_KEY, base_url="https://api.test/v2")
    with pytest.raises(ConfigurationError, match="timeout"):
        client.with_options(timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, 2.5, None, httpx2.Timeout(3, read=9)])
def test_numbers_none_and_timeouts_are_taken(timeout: float | httpx2.Timeout | None) -> None:
    client = FaxClient(API_KEY, base_url="https://api.test/v2")
    copy = client.with_options(timeout=timeout)
    request = copy.build_request("GET", "fax/received")
    expected = timeout if isinstance(timeout, httpx2.Timeout) else httpx2.Timeout(timeout)
    assert request.extensions["timeout"] == expected.as_dict()
