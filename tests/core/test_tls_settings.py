"""The SDK's clients share one set of TLS settings per process: building them loads the trust store
(tens of milliseconds of blocking work), which would otherwise stall the event loop at every
``FaxClient()``. A client given its own TLS settings keeps them."""

from __future__ import annotations

import ssl

import httpx2
import pytest

from audian_fax_async import DefaultAsyncHttpClient, FaxClient
from audian_fax_async import _client as client_module


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Every call of ``httpx2.create_ssl_context``, with none built yet in this process."""
    calls: list[tuple[object, ...]] = []
    real = httpx2.create_ssl_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        calls.append((*args, *kwargs.values()))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx2, "create_ssl_context", counting)
    monkeypatch.setattr(client_module, "_tls_default", None)
    return calls


def test_many_clients_build_the_tls_settings_once(builds: list[tuple[object, ...]]) -> None:
    clients = [FaxClient(api_key="k", base_url="https://api.example.test/v2/") for _ in range(5)]
    assert len(clients) == 5
    # Once for the SDK's shared settings; httpx2 then takes that context as it is.
    assert builds == [()]
    assert client_module.default_ssl_context() is client_module.default_ssl_context()


def test_the_shared_settings_verify_certificates_and_hostnames(builds: list[tuple[object, ...]]) -> None:
    context = client_module.default_ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_a_client_with_its_own_tls_settings_keeps_them(builds: list[tuple[object, ...]]) -> None:
    own = ssl.create_default_context()
    DefaultAsyncHttpClient(verify=own)
    DefaultAsyncHttpClient(verify=False)
    assert client_module._tls_default is None  # the shared settings were never built


def test_trust_env_false_is_not_given_the_shared_settings(builds: list[tuple[object, ...]]) -> None:
    DefaultAsyncHttpClient(trust_env=False)  # httpx2 builds this client's own, without the environment
    assert client_module._tls_default is None and builds == []
