"""Requests enter httpx2's own pool so that none is handed a connection another one takes.

On asyncio the SDK's own pool makes that so by itself (its locks never pass round the loop), and
requests go straight to httpx2's transport; elsewhere (trio, simulated here) they pass a gate.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpcore2._async.connection_pool as connection_pool
import httpx2
import pytest

import audian_fax_async._client as client_module
from audian_fax_async import APIConnectionError, APITimeoutError, FaxClient, OutcomeKind
from audian_fax_async._client import _HTTPClient
from audian_fax_async.emulator import AdminClient

from .conftest import ClientFactory, assert_matches_emulator


@pytest.fixture
def pool_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts httpcore2's passes over the pool (each one scans every connection)."""
    passes = [0]
    original = connection_pool.AsyncConnectionPool._assign_requests_to_connections

    def counting(self: connection_pool.AsyncConnectionPool) -> object:
        passes[0] += 1
        return original(self)

    monkeypatch.setattr(connection_pool.AsyncConnectionPool, "_assign_requests_to_connections", counting)
    return passes


@pytest.fixture(params=["straight", "gated"])
def entry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways into the pool: straight to the transport (asyncio), or through the gate (as on trio)."""
    if request.param == "gated":
        monkeypatch.setattr(client_module, "on_asyncio", lambda: False)
    return str(request.param)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "on_asyncio", lambda: False)


async def _downloads(client: FaxClient, dest: Path) -> int:
    count = 0
    async with client.received.download_all(dest, concurrency=10) as outcomes:
        async for outcome in outcomes:
            assert outcome.kind is OutcomeKind.DOWNLOADED, outcome.error
            count += 1
    return count


async def test_each_request_takes_one_pass_into_the_pool(
    entry: str,
    make_client: ClientFactory,
    pool_passes: list[int],
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
) -> None:
    async with make_client() as client:
        downloads = await _downloads(client, tmp_path)
        assert (client._pool_gate is not False) == (entry == "gated")  # the gate was made on first use
    # One pass when a request enters and one when its response closes, per request: the downloads
    # and one or two listing requests (42 here for 20 downloads). On httpcore2's own locks without the
    # gate, requests starting together are handed the same idle connection and go round again (48 in
    # a run of this test; 1,590 against 810 for 400 downloads from nginx).
    assert pool_passes[0] <= 2 * (downloads + 2)
    for path in tmp_path.glob("*.pdf"):
        assert_matches_emulator(audian_admin, audian_api_key, path.stem, path)


async def test_an_injected_client_or_transport_is_not_gated(make_client: ClientFactory) -> None:
    async with httpx2.AsyncClient() as http, make_client(http_client=http) as injected:
        assert injected._pool_gate is None
    async with make_client(transport=httpx2.AsyncHTTPTransport()) as with_transport:
        assert with_transport._pool_gate is None
    async with make_client() as own:
        assert own._pool_gate is not None


async def test_waiting_to_enter_the_pool_is_bounded_by_the_pool_timeout(
    entry: str, make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str
) -> None:
    [fax] = audian_admin.inject(audian_api_key, count=1, size=300_000)
    async with make_client(max_retries=0) as client:
        # One connection only, and a short pool timeout: a held download keeps the others waiting.
        await client._http.aclose()
        client._http = _HTTPClient(
            limits=httpx2.Limits(max_connections=1), timeout=httpx2.Timeout(10.0, pool=0.05), follow_redirects=False
        )
        async with client.received.stream(fax["id"]) as document:
            chunks = aiter(document)
            first = await anext(chunks)
            assert first.startswith(b"%PDF")
            results: list[APITimeoutError] = []

            async def one() -> None:
                try:
                    await client.received.get(fax["id"])
                except APITimeoutError as exc:
                    results.append(exc)

            with anyio.fail_after(5):  # both give up on their own, one in the pool, one at its door
                async with anyio.create_task_group() as tg:
                    tg.start_soon(one)
                    tg.start_soon(one)
            assert len(results) == 2
            assert all(not exc.request_sent for exc in results)


async def test_the_gate_opens_before_the_response_is_awaited(gated: None, make_client: ClientFactory) -> None:
    # If httpcore2 renamed its trace events, the lock would stay shut until the response's headers
    # arrived and requests would queue for a whole round trip each: this test fails first.
    seen: list[tuple[str, bool]] = []
    async with make_client() as client:

        async def outer(name: str, info: dict[str, object]) -> None:
            seen.append((name, bool(client._pool_gate.locked())))

        for _ in range(2):  # a new connection, then a reused one
            request = client.build_request("GET", "fax/received", params={"limit": 1})
            request.extensions["trace"] = outer
            response = await client.send(request)
            assert response.status_code == 200
    waiting = [locked for name, locked in seen if name.endswith("receive_response_headers.started")]
    assert waiting == [False, False]
    assert any(name.endswith("connect_tcp.started") for name, _ in seen)


async def test_on_asyncio_the_sdks_own_client_sends_straight_to_its_transport(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sent_by_httpx: list[httpx2.Request] = []
    real_send = httpx2.AsyncClient.send

    async def spy(self: httpx2.AsyncClient, request: httpx2.Request, **kwargs: object) -> httpx2.Response:
        sent_by_httpx.append(request)
        return await real_send(self, request, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx2.AsyncClient, "send", spy)
    caplog.set_level("INFO", logger="httpx2")
    async with make_client() as client:
        page = await client.received.list(limit=1)
        assert client._pool_gate is False  # never needed
    assert page.faxes is not None
    assert sent_by_httpx == []
    # httpx2's own INFO line per request is still written, as httpx2 words it.
    [line] = [r.getMessage() for r in caplog.records if r.name == "httpx2"]
    assert line.startswith("HTTP Request: GET http://127.0.0.1:") and line.endswith('"HTTP/1.1 200 OK"')


async def test_a_proxy_from_the_environment_is_honoured(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy mount means httpx2's send must route the request: nothing goes straight to the pool.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with make_client(max_retries=0) as direct:
        assert not direct._http._mounts
        await direct.received.list(limit=1)  # the emulator answers
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: nothing listens there
    async with make_client(max_retries=0) as proxied:
        assert proxied._http._mounts
        with pytest.raises(APIConnectionError):  # the request went to the proxy, not the emulator
            await proxied.received.list(limit=1)
