"""``AiohttpTransport`` without sockets: the error table, the timeout mapping, what goes to and comes back
from aiohttp (a fake session stands in for ``aiohttp.ClientSession``), and trio refused clearly.

The error table is what keeps a creating POST from being sent twice: only errors aiohttp raises before
it writes the request may read as "never sent" once ``FaxClient.map_transport_error`` has seen them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import httpx2
import pytest
import trio
import uvloop
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

import audian_fax_async
from audian_fax_async import (
    AiohttpTransport,
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    FaxClient,
)
from audian_fax_async._aiohttp import client_timeout, map_error


@pytest.fixture(scope="module", params=["asyncio", ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """The transport's async tests run on asyncio and on uvloop (aiohttp has no trio support)."""
    return request.param


# What aiohttp's connector errors read from their connection key (its class is not exported).
_KEY: Any = SimpleNamespace(host="api.example", port=443, ssl=True, is_ssl=True)
_URL = URL("https://api.example/v2/fax/numbers")
_INFO = aiohttp.RequestInfo(_URL, "POST", CIMultiDictProxy(CIMultiDict()), _URL)  # real_url: required in 3.11.0
_REQUEST = httpx2.Request("POST", "https://api.example/v2/fax/numbers")

# Raised by aiohttp before a byte of the request is written: connect, DNS, TLS, proxy, pool, URL.
NEVER_SENT: list[tuple[Exception, type[httpx2.TransportError]]] = [
    (aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "Connection refused")), httpx2.ConnectError),
    (
        aiohttp.ClientConnectorCertificateError(_KEY, ssl.SSLCertVerificationError(1, "certificate verify failed")),
        httpx2.ConnectError,
    ),
    (aiohttp.ClientConnectorSSLError(_KEY, ssl.SSLError(1, "wrong version number")), httpx2.ConnectError),
    (aiohttp.ClientProxyConnectionError(_KEY, OSError(113, "No route to host")), httpx2.ConnectError),
    (aiohttp.ClientHttpProxyError(_INFO, (), status=407, message="Proxy Authentication Required"), httpx2.ConnectError),
    (aiohttp.ServerFingerprintMismatch(b"a" * 32, b"b" * 32, "api.example", 443), httpx2.ConnectError),
    (aiohttp.ConnectionTimeoutError("Connection timeout to host https://api.example/v2"), httpx2.ConnectTimeout),
    (aiohttp.NonHttpUrlClientError("ftp://api.example/v2"), httpx2.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError("http:///v2"), httpx2.UnsupportedProtocol),
    (aiohttp.InvalidURL("http://[/v2"), httpx2.UnsupportedProtocol),
]
if hasattr(aiohttp, "ClientConnectorDNSError"):  # aiohttp >= 3.11; older ones raise its base class
    NEVER_SENT.append(
        (aiohttp.ClientConnectorDNSError(_KEY, socket.gaierror(-2, "Name or service not known")), httpx2.ConnectError)
    )

# Raised once a connection is open: the request may have been written, so it may have been acted on.
MAYBE_SENT: list[tuple[Exception, type[httpx2.TransportError]]] = [
    (aiohttp.ServerDisconnectedError(), httpx2.RemoteProtocolError),
    (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx2.ReadError),
    (
        aiohttp.ClientPayloadError("Response payload is not completed: <ContentLengthError: 400>"),
        httpx2.RemoteProtocolError,
    ),
    (aiohttp.ClientResponseError(_INFO, (), status=400, message="Invalid response status"), httpx2.RemoteProtocolError),
    (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), httpx2.ReadTimeout),
    (aiohttp.ServerTimeoutError("Timeout"), httpx2.ReadTimeout),
    (aiohttp.ClientConnectionError("Connection closed"), httpx2.ReadError),
    (aiohttp.ClientError("something new"), httpx2.ReadError),
    (TimeoutError(), httpx2.ReadTimeout),
    (ConnectionResetError(104, "Connection reset by peer"), httpx2.ReadError),
    (OSError(32, "Broken pipe"), httpx2.ReadError),
]
if hasattr(aiohttp, "ClientConnectionResetError"):  # aiohttp >= 3.10.6: writing to a closing transport
    MAYBE_SENT.append((aiohttp.ClientConnectionResetError("Cannot write to closing transport"), httpx2.ReadError))


def _sdk_error(exc: httpx2.TransportError) -> APIConnectionError:
    error = FaxClient.map_transport_error(exc, _REQUEST)
    assert isinstance(error, APIConnectionError)
    return error


def _name(value: object) -> str:
    return type(value).__name__


@pytest.mark.parametrize(("exc", "expected"), NEVER_SENT, ids=_name)
def test_errors_raised_before_the_request_is_written_read_as_never_sent(
    exc: Exception, expected: type[httpx2.TransportError]
) -> None:
    mapped = map_error(exc, sent=False)

    assert type(mapped) is expected
    if expected is not httpx2.UnsupportedProtocol:  # that one is a ConfigurationError in the SDK
        assert _sdk_error(mapped).request_sent is False


@pytest.mark.parametrize(("exc", "expected"), MAYBE_SENT, ids=_name)
def test_errors_raised_once_connected_read_as_sent_so_a_post_is_not_repeated(
    exc: Exception, expected: type[httpx2.TransportError]
) -> None:
    mapped = map_error(exc, sent=False)

    assert type(mapped) is expected
    assert _sdk_error(mapped).request_sent is True


@pytest.mark.parametrize("exc", [e for e, _ in NEVER_SENT + MAYBE_SENT], ids=_name)
def test_every_error_while_the_body_is_read_reads_as_sent(exc: Exception) -> None:
    mapped = map_error(exc, sent=True)

    assert not isinstance(mapped, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout)
    assert not isinstance(mapped, httpx2.UnsupportedProtocol)
    assert _sdk_error(mapped).request_sent is True


def test_a_server_that_disconnects_is_not_a_connect_timeout_as_httpx_aiohttp_has_it() -> None:
    # httpx-aiohttp 0.2.0 maps both to ConnectTimeout: a creating POST would then be sent again.
    for exc in (aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(104, "Connection reset by peer")):
        mapped = map_error(exc, sent=False)
        assert not isinstance(mapped, httpx2.TimeoutException)
        assert not isinstance(_sdk_error(mapped), APITimeoutError)


def test_timeouts_are_api_timeout_errors_and_a_short_body_names_itself() -> None:
    assert isinstance(_sdk_error(map_error(aiohttp.SocketTimeoutError("slow"), sent=True)), APITimeoutError)
    assert isinstance(_sdk_error(map_error(aiohttp.ConnectionTimeoutError("slow"), sent=False)), APITimeoutError)
    short = aiohttp.ClientPayloadError("Response payload is not completed")
    assert "Response payload is not completed" in str(_sdk_error(map_error(short, sent=True)))


def test_httpx_timeouts_become_aiohttp_timeouts_with_pool_and_connect_together() -> None:
    timeouts = httpx2.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0).as_dict()

    assert client_timeout(timeouts) == aiohttp.ClientTimeout(
        total=None, connect=40.0, sock_connect=10.0, sock_read=60.0
    )
    # An unbounded pool wait leaves aiohttp's whole "connect" unbounded; opening a socket stays bounded.
    unbounded = httpx2.Timeout(5.0, pool=None).as_dict()
    assert client_timeout(unbounded) == aiohttp.ClientTimeout(total=None, connect=None, sock_connect=5.0, sock_read=5.0)
    assert client_timeout(httpx2.Timeout(None).as_dict()) == aiohttp.ClientTimeout(total=None)
    assert client_timeout(None) == aiohttp.ClientTimeout(total=None)


# -- the transport around a fake session ---------------------------------------------------------


class FakeContent:
    """Hands out chunks as aiohttp's StreamReader.readany does (b"" at the end), or raises."""

    def __init__(self, chunks: list[bytes | BaseException]) -> None:
        self._chunks = list(chunks)
        self._eof = False

    async def readany(self) -> bytes:
        if not self._chunks:
            self._eof = True
            return b""
        chunk = self._chunks.pop(0)
        if isinstance(chunk, BaseException):
            raise chunk
        return chunk

    def is_eof(self) -> bool:
        return self._eof

    def exception(self) -> BaseException | None:
        return None


class FakeResponse:
    def __init__(self, chunks: list[bytes | BaseException], *, status: int = 200, reason: str = "OK") -> None:
        self.status = status
        self.reason = reason
        self.version = aiohttp.HttpVersion11
        self.raw_headers = ((b"Content-Type", b"application/pdf"), (b"X-Request-Id", b"req_1"))
        self.content = FakeContent(chunks)
        self.ended: list[str] = []

    def release(self) -> None:
        self.ended.append("release")

    def close(self) -> None:
        self.ended.append("close")


class FakeSession:
    """Records what the transport asks aiohttp for; answers with a response or raises."""

    def __init__(self, outcome: FakeResponse | BaseException) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, URL, dict[str, Any]]] = []
        self.closed = False

    async def request(self, method: str, url: URL, **kwargs: Any) -> FakeResponse:
        self.calls.append((method, url, kwargs))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    async def close(self) -> None:
        self.closed = True


def _transport(session: FakeSession) -> AiohttpTransport:
    return AiohttpTransport(session=cast(aiohttp.ClientSession, session))


@pytest.mark.anyio
async def test_the_request_goes_to_aiohttp_as_httpx_built_it() -> None:
    session = FakeSession(FakeResponse([]))
    request = httpx2.Request(
        "POST",
        "https://api.example/v2/fax/numbers?tag=a%2Fb",
        headers={"X-Auth-Token": "key", "Accept": "application/json"},
        json={"area_code": "202"},
        extensions={"timeout": httpx2.Timeout(1.0, pool=2.0).as_dict(), "sni_hostname": "sni.example"},
    )

    await _transport(session).handle_async_request(request)

    [(method, url, kwargs)] = session.calls
    assert method == "POST"
    assert str(url) == "https://api.example/v2/fax/numbers?tag=a%2Fb"  # not re-quoted
    assert kwargs["headers"] == [(k.decode(), v.decode()) for k, v in request.headers.raw]  # names keep their case
    assert kwargs["data"] == b'{"area_code":"202"}'
    assert kwargs["allow_redirects"] is False
    assert kwargs["auto_decompress"] is False
    assert kwargs["timeout"] == aiohttp.ClientTimeout(total=None, connect=3.0, sock_connect=1.0, sock_read=1.0)
    assert kwargs["server_hostname"] == "sni.example"


@pytest.mark.anyio
async def test_each_request_carries_its_own_timeouts() -> None:
    session = FakeSession(FakeResponse([]))
    transport = _transport(session)

    for timeout in (httpx2.Timeout(2.0, read=30.0, pool=None), httpx2.Timeout(None)):
        request = httpx2.Request("GET", "http://h/x", extensions={"timeout": timeout.as_dict()})
        await transport.handle_async_request(request)

    assert [kwargs["timeout"] for _, _, kwargs in session.calls] == [
        aiohttp.ClientTimeout(total=None, connect=None, sock_connect=2.0, sock_read=30.0),
        aiohttp.ClientTimeout(total=None),
    ]


@pytest.mark.anyio
async def test_a_streamed_request_body_is_handed_to_aiohttp_which_does_the_chunking() -> None:
    session = FakeSession(FakeResponse([]))

    async def body() -> AsyncIterator[bytes]:
        yield b"part"

    request = httpx2.Request("PUT", "https://api.example/v2/upload", content=body())

    await _transport(session).handle_async_request(request)

    [(_, _, kwargs)] = session.calls
    assert kwargs["data"] is request.stream
    assert [name for name, _ in kwargs["headers"] if name.lower() == "transfer-encoding"] == []


@pytest.mark.anyio
async def test_the_response_carries_status_headers_reason_and_aiohttps_chunks_unchanged() -> None:
    aio_response = FakeResponse([b"%PDF-1.7 first", b"second " * 5000, b"%%EOF"], status=206, reason="Partial Content")
    request = httpx2.Request("GET", "https://api.example/v2/fax/received/fax_1/download")

    response = await _transport(FakeSession(aio_response)).handle_async_request(request)
    chunks = [chunk async for chunk in response.aiter_raw()]
    await response.aclose()

    assert response.status_code == 206
    assert response.reason_phrase == "Partial Content"
    assert response.http_version == "HTTP/1.1"
    assert response.headers.raw == [(b"Content-Type", b"application/pdf"), (b"X-Request-Id", b"req_1")]
    assert chunks == [b"%PDF-1.7 first", b"second " * 5000, b"%%EOF"]
    assert aio_response.ended == ["release"]  # read to the end: the connection goes back to the pool


@pytest.mark.anyio
async def test_a_response_closed_before_its_end_drops_the_connection() -> None:
    aio_response = FakeResponse([b"%PDF-1.7", b"more"])
    response = await _transport(FakeSession(aio_response)).handle_async_request(httpx2.Request("GET", "http://h/x"))

    async for _ in response.aiter_raw():
        break
    await response.aclose()

    assert aio_response.ended == ["close"]


@pytest.mark.anyio
async def test_an_error_while_reading_the_body_is_an_httpx_error_that_reads_as_sent() -> None:
    cut = aiohttp.ClientPayloadError("Response payload is not completed")
    aio_response = FakeResponse([b"%PDF-1.7", cut])
    request = httpx2.Request("POST", "http://h/v2/fax/numbers")
    response = await _transport(FakeSession(aio_response)).handle_async_request(request)

    with pytest.raises(httpx2.RemoteProtocolError) as caught:
        await response.aread()
    await response.aclose()

    assert caught.value.__cause__ is cut
    assert _sdk_error(caught.value).request_sent is True
    assert aio_response.ended == ["close"]


@pytest.mark.anyio
async def test_an_error_before_the_response_is_mapped_with_its_cause_kept() -> None:
    refused = aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(httpx2.ConnectError) as caught:
        await _transport(FakeSession(refused)).handle_async_request(_REQUEST)

    assert caught.value.__cause__ is refused


@pytest.mark.anyio
async def test_a_disconnect_before_the_answer_reads_as_sent() -> None:
    dropped = aiohttp.ServerDisconnectedError()

    with pytest.raises(httpx2.RemoteProtocolError) as caught:
        await _transport(FakeSession(dropped)).handle_async_request(_REQUEST)

    assert caught.value.__cause__ is dropped
    assert _sdk_error(caught.value).request_sent is True


@pytest.mark.anyio
@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt(), RuntimeError("Session is closed")])
async def test_cancellation_and_other_exceptions_pass_through_untouched(exc: BaseException) -> None:
    with pytest.raises(type(exc)) as caught:
        await _transport(FakeSession(exc)).handle_async_request(_REQUEST)
    assert caught.value is exc

    response = await _transport(FakeSession(FakeResponse([b"%PDF", exc]))).handle_async_request(_REQUEST)
    with pytest.raises(type(exc)) as caught:
        await response.aread()
    assert caught.value is exc


@pytest.mark.anyio
async def test_a_url_that_is_not_http_is_refused_before_aiohttp_sees_it() -> None:
    session = FakeSession(FakeResponse([]))

    with pytest.raises(httpx2.UnsupportedProtocol):
        await _transport(session).handle_async_request(httpx2.Request("GET", "ftp://api.example/v2"))

    assert session.calls == []


@pytest.mark.anyio
async def test_an_injected_session_is_never_closed_by_the_transport() -> None:
    session = FakeSession(FakeResponse([]))
    transport = _transport(session)

    await transport.aclose()

    assert session.closed is False


@pytest.mark.anyio
async def test_a_closed_transport_opens_no_new_session() -> None:
    transport = AiohttpTransport()
    await transport.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx2.Request("GET", "http://127.0.0.1:9/x"))


@pytest.mark.anyio
async def test_each_backend_runs_on_the_loop_it_names(anyio_backend: Any) -> None:
    # If another plugin (pytest-asyncio in auto mode) runs these tests on its own loop, every
    # "uvloop" test above would pass on plain asyncio: this one says so.
    on_uvloop = isinstance(asyncio.get_running_loop(), uvloop.Loop)
    assert on_uvloop is (anyio_backend != "asyncio"), f"{anyio_backend!r} ran on {asyncio.get_running_loop()!r}"


# -- trio: refused with a clear error ------------------------------------------------------------


def test_constructing_the_transport_on_trio_says_it_needs_asyncio() -> None:
    async def main() -> None:
        AiohttpTransport()

    with pytest.raises(ConfigurationError, match="asyncio"):
        trio.run(main)


def test_a_transport_made_outside_any_loop_refuses_to_run_on_trio() -> None:
    transport = AiohttpTransport()

    async def main() -> None:
        async with httpx2.AsyncClient(transport=transport) as client:
            await client.get("http://127.0.0.1:9/x")

    with pytest.raises(ConfigurationError, match="asyncio"):
        trio.run(main)


def test_on_trio_the_sdk_says_the_transport_needs_asyncio() -> None:
    transport = AiohttpTransport()

    async def main() -> None:
        async with FaxClient("key", base_url="http://127.0.0.1:9/v2", transport=transport) as client:
            await client.received.list(limit=1)

    with pytest.raises(ConfigurationError, match="asyncio"):
        trio.run(main)


# -- the optional dependency ----------------------------------------------------------------------


def test_importing_the_package_or_naming_the_transport_does_not_import_aiohttp() -> None:
    code = (
        "import sys, audian_fax_async; "
        "assert 'aiohttp' not in sys.modules, 'package'; "
        "audian_fax_async.AiohttpTransport; "
        "assert 'aiohttp' not in sys.modules, 'attribute'; "
        "audian_fax_async.AiohttpTransport(); "
        "assert 'aiohttp' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_aiohttp_constructing_the_transport_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # "import aiohttp" now fails as if not installed

    with pytest.raises(ConfigurationError, match=r'pip install "audian-fax-async\[aiohttp\]"'):
        AiohttpTransport()


def test_the_transport_is_exported_from_the_package_root() -> None:
    assert "AiohttpTransport" in audian_fax_async.__all__
    assert audian_fax_async.AiohttpTransport is AiohttpTransport
