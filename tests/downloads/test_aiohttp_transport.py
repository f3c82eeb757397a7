"""``AiohttpTransport`` over real loopback sockets, on asyncio and on uvloop: alone (through a plain
``httpx2.AsyncClient``) and under ``FaxClient``, every download guarantee holds, per-request timeouts
apply, and a connection error says truthfully whether the request may have reached the server.

The emulator serves the normal and faulty downloads; a bare socket server (:class:`RawServer`) plays the
misbehaviours the emulator cannot: closing after reading a request, never answering, a short body, TLS
with a certificate of its own.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import anyio
import httpx2
import pytest

from audian_fax_async import (
    AiohttpTransport,
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    FaxClient,
    RetryPolicy,
)
from audian_fax_async.emulator import AdminClient

from .conftest import ClientFactory, assert_matches_emulator, no_sleep, partial_files

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("error::ResourceWarning")]

DEFAULT_TIMEOUT = httpx2.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0)
PDF = b"%PDF-1.7\n" + b"x" * 200_000 + b"\n%%EOF\n"


@pytest.fixture(scope="module", params=["asyncio", ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio and uvloop (aiohttp has no trio support; tests/core checks that trio is refused)."""
    return request.param


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a bare socket server ------------------------------------------------------------------------

# What a scripted server does with one request: it gets the request's bytes and the socket, sends
# what it likes, and says whether the connection stays open for another request.
Answer = Callable[[bytes, socket.socket, "RawServer"], bool]


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


class RawServer:
    """HTTP/1.1 by hand on 127.0.0.1 (a free port), one thread per connection, scripted by ``answer``.

    It counts connections and requests, and notices when the client closes a connection. With ``tls``
    it speaks HTTPS (a handshake the client refuses ends that connection before any request).
    """

    def __init__(self, answer: Answer, *, tls: ssl.SSLContext | None = None) -> None:
        self._answer = answer
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.connections = 0
        self.client_closed = threading.Event()
        self.stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> RawServer:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for sock in [self._listener, *self._conns]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept() or recv()
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.settimeout(5)  # a stuck test still ends
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
                self._conns.append(conn)
            while not self.stop.is_set():
                request = _read_request(conn)
                if request is None:
                    if not self.stop.is_set():
                        self.client_closed.set()
                    return
                self.requests.append(request)
                if not self._answer(request, conn, self):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def heads(self) -> list[set[bytes]]:
        """Each request's header lines (request line left out), as sets: order is not compared."""
        return [set(r.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]) for r in self.requests]


def _respond(status: str, body: bytes, headers: dict[str, str] | None = None, *, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body) if length is None else length}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_ok(request: bytes, conn: socket.socket, server: RawServer) -> bool:
    conn.sendall(_respond("200 OK", b"{}", {"Content-Type": "application/json"}))
    return True


def close_without_answering(request: bytes, conn: socket.socket, server: RawServer) -> bool:
    return False


def never_answer(request: bytes, conn: socket.socket, server: RawServer) -> bool:
    server.stop.wait(5)
    return False


def _client(url: str, *, max_retries: int = 3, timeout: httpx2.Timeout = DEFAULT_TIMEOUT) -> FaxClient:
    return FaxClient(
        "secret-key",
        base_url=f"{url}/v2",
        transport=AiohttpTransport(),
        retry_policy=RetryPolicy(max_retries=max_retries, sleep=no_sleep),
        timeout=timeout,
    )


@pytest.fixture
def aiohttp_client(make_client: ClientFactory) -> FaxClient:
    return make_client(transport=AiohttpTransport())


# -- the download guarantees, against the emulator -----------------------------------------------


async def test_list_and_download_all_write_files_identical_to_the_emulators_documents(
    aiohttp_client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    async with aiohttp_client as client:
        listed = [fax.id async for fax in client.received.iter()]
        async with client.received.download_all(tmp_path) as outcomes:
            done = {o.fax.id: o async for o in outcomes}

    assert len(listed) == 20 and set(done) == set(listed)
    for fax_id, outcome in done.items():
        assert outcome.ok and outcome.path is not None
        assert_matches_emulator(audian_admin, audian_api_key, fax_id, outcome.path)
    assert partial_files(tmp_path) == []


async def test_a_dropped_body_resumes_with_range_and_the_file_is_whole(
    aiohttp_client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    [fax] = audian_admin.inject(audian_api_key, count=1, size=600_000)
    audian_admin.script("download", ["drop"], key=audian_api_key)

    async with aiohttp_client as client:
        result = await client.received.download(fax["id"], tmp_path)

    assert result.resumed and result.attempts == 2
    assert result.sha256 == _sha(result.path) == audian_admin.document_sha256(audian_api_key, fax["id"])
    assert result.path.stat().st_size == 600_000


async def test_a_truncated_body_from_the_emulator_is_downloaded_again(
    aiohttp_client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    [fax] = audian_admin.inject(audian_api_key, count=1, size=300_000)
    audian_admin.script("download", ["truncate"], key=audian_api_key)

    async with aiohttp_client as client:
        result = await client.received.download(fax["id"], tmp_path)

    assert result.attempts == 2
    assert _sha(result.path) == audian_admin.document_sha256(audian_api_key, fax["id"])


# -- short bodies, reuse and headers, against a bare socket server -------------------------------


async def test_a_body_shorter_than_its_content_length_is_refused_and_downloaded_again(tmp_path: Path) -> None:
    def short_then_whole(request: bytes, conn: socket.socket, server: RawServer) -> bool:
        if len(server.requests) == 1:  # promise the whole document, send 1,000 bytes, hang up
            conn.sendall(_respond("200 OK", PDF[:1000], {"Content-Type": "application/pdf"}, length=len(PDF)))
            return False
        conn.sendall(_respond("200 OK", PDF, {"Content-Type": "application/pdf"}))
        return True

    with RawServer(short_then_whole) as server:
        async with (
            httpx2.AsyncClient(transport=AiohttpTransport()) as plain,
            plain.stream("GET", f"{server.url}/doc.pdf") as response,
        ):
            with pytest.raises(httpx2.RemoteProtocolError, match="payload is not completed"):
                async for _ in response.aiter_raw():
                    pass
        server.requests.clear()
        async with _client(server.url) as client:
            result = await client.received.download("fax_1", tmp_path / "fax_1.pdf")

    assert result.attempts == 2 and not result.resumed  # no Accept-Ranges: started over
    assert result.path.read_bytes() == PDF


async def test_a_response_read_to_its_end_gives_the_connection_back_for_the_next_request() -> None:
    # aiohttp 3.10 on uvloop drops about half of such connections itself (a fast answer's end cancels
    # the request's writer task, which closes the connection); 3.11 sends a body-less request inline.
    with RawServer(json_ok) as server:
        async with _client(server.url) as client:
            await client.request("GET", "one")
            await client.request("GET", "two")

    assert len(server.requests) == 2 and server.connections == 1


@pytest.fixture
def aiohttp_responses(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientResponse]:
    """Every response of the sessions a transport opens, seen through aiohttp's public request tracing."""
    seen: list[aiohttp.ClientResponse] = []

    async def on_request_end(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        seen.append(params.response)

    real = aiohttp.ClientSession

    def traced_session(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(on_request_end)
        return real(*args, trace_configs=[trace], **kwargs)

    monkeypatch.setattr(aiohttp, "ClientSession", traced_session)
    return seen


@pytest.mark.parametrize(("given", "limits"), [(None, (256 * 1024, 512 * 1024)), (100_000, (100_000, 200_000))])
async def test_each_connection_buffers_read_bufsize_before_it_stops_reading(
    given: int | None, limits: tuple[int, int], aiohttp_responses: list[aiohttp.ClientResponse]
) -> None:
    # aiohttp's default (64 KiB: stop reading at 128 KiB unread) paused and resumed the socket on
    # nearly every read of a fast download; the transport's buffer is 256 KiB unless told otherwise.
    body = bytes(range(256)) * 8192  # 2 MiB

    def big(request: bytes, conn: socket.socket, server: RawServer) -> bool:
        conn.sendall(_respond("200 OK", body))
        return True

    transport = AiohttpTransport() if given is None else AiohttpTransport(read_bufsize=given)
    with RawServer(big) as server:
        async with httpx2.AsyncClient(transport=transport) as client:
            response = await client.get(f"{server.url}/doc")

    assert response.content == body
    [aio_response] = aiohttp_responses
    assert aio_response.content.get_read_buffer_limits() == limits


@pytest.mark.parametrize("size", [0, -1])
def test_a_read_buffer_below_one_byte_is_refused(size: int) -> None:
    with pytest.raises(ConfigurationError):
        AiohttpTransport(read_bufsize=size)


async def test_the_request_headers_reach_the_server_as_httpx_built_them() -> None:
    async def exchange(transport: httpx2.AsyncBaseTransport) -> list[set[bytes]]:
        server.requests.clear()
        async with FaxClient("secret-key", base_url=f"{server.url}/v2", transport=transport) as client:
            await client.request("GET", "fax/received", params={"limit": 5})
            await client.request("POST", "fax/numbers", json={"area_code": "202", "quantity": 1})
            await client.request("DELETE", "fax/webhooks/wh_1")
        return server.heads()

    with RawServer(json_ok) as server:
        get, post, delete = await exchange(httpx2.AsyncHTTPTransport(verify=False))
        ours = await exchange(AiohttpTransport())

    assert ours[0] == get
    assert ours[1] == post
    # The one header aiohttp adds: an explicit empty body on a DELETE that has none.
    assert ours[2] == delete | {b"Content-Length: 0"}
    assert b"X-Auth-Token: secret-key" in ours[0]


# -- the transport alone, under a plain httpx2 client: errors and per-request timeouts ------------


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])  # nobody listens there once the probe is closed


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with httpx2.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx2.ConnectError) as caught:
            await client.post(f"http://127.0.0.1:{_closed_port()}/v2/fax/numbers", json={})

    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


async def test_a_server_that_hangs_up_after_a_post_is_a_protocol_error_and_aiohttp_sends_it_once() -> None:
    with RawServer(close_without_answering) as server:
        async with httpx2.AsyncClient(transport=AiohttpTransport()) as client:
            with pytest.raises(httpx2.RemoteProtocolError):
                await client.post(f"{server.url}/v2/fax/numbers", json={"area_code": "202"})

    assert len(server.requests) == 1


async def test_the_read_timeout_of_one_request_applies_to_that_request() -> None:
    with RawServer(never_answer) as server:
        async with httpx2.AsyncClient(transport=AiohttpTransport(), timeout=60.0) as client:
            with pytest.raises(httpx2.ReadTimeout):
                await client.get(f"{server.url}/slow", timeout=httpx2.Timeout(60.0, read=0.05))

    assert len(server.requests) == 1


async def test_waiting_past_the_pool_timeout_for_a_connection_is_a_connect_timeout_never_sent() -> None:
    def hold(request: bytes, conn: socket.socket, server: RawServer) -> bool:
        conn.sendall(_respond("200 OK", PDF[:100], length=len(PDF)))  # the rest never comes
        server.stop.wait(5)
        return False

    transport = AiohttpTransport(limits=httpx2.Limits(max_connections=1))
    with RawServer(hold) as server:
        async with (
            httpx2.AsyncClient(transport=transport) as client,
            client.stream("GET", f"{server.url}/one"),  # holds the only connection
        ):
            # fail_after only turns a missing pool timeout into a failure instead of a hang.
            with anyio.fail_after(30), pytest.raises(httpx2.ConnectTimeout):
                await client.get(f"{server.url}/two", timeout=httpx2.Timeout(60.0, connect=0.02, pool=0.03))

    assert len(server.requests) == 1


@pytest.fixture(scope="module")
def tls_server_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by the openssl command."""
    openssl = shutil.which("openssl")
    # Debian's openssl is on every machine this runs on; its absence is a failure, never a skip.
    assert openssl is not None, "the TLS tests need the openssl command to make a test certificate"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    options = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1"
    subprocess.run(
        [openssl, *options.split(), "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _tls_server_context(files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*files)
    return context


@pytest.mark.parametrize("trusting", ["context", "no verification"])
async def test_https_with_the_servers_certificate_trusted_or_unverified(
    tls_server_files: tuple[Path, Path], trusting: str
) -> None:
    verify: ssl.SSLContext | bool = False
    if trusting == "context":
        verify = ssl.create_default_context(cafile=str(tls_server_files[0]))
    with RawServer(json_ok, tls=_tls_server_context(tls_server_files)) as server:
        async with httpx2.AsyncClient(transport=AiohttpTransport(verify=verify)) as client:
            response = await client.get(f"{server.url}/v2/fax/received")

    assert response.status_code == 200 and response.json() == {}
    assert len(server.requests) == 1


async def test_an_untrusted_certificate_is_a_connect_error_and_no_request_is_sent(
    tls_server_files: tuple[Path, Path],
) -> None:
    with RawServer(json_ok, tls=_tls_server_context(tls_server_files)) as server:
        async with httpx2.AsyncClient(transport=AiohttpTransport()) as client:  # verify=True: the OS trust store
            with pytest.raises(httpx2.ConnectError, match="certificate"):
                await client.post(f"{server.url}/v2/fax/numbers", json={})

    assert server.requests == []


# -- connection errors: was the request sent? ----------------------------------------------------


async def test_a_refused_connection_is_an_api_connection_error_never_sent() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]  # nobody listens there once the probe is closed

    async with _client(f"http://127.0.0.1:{closed_port}", max_retries=0) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.received.list(limit=1)

    assert not isinstance(caught.value, APITimeoutError)
    assert caught.value.request_sent is False


async def test_a_server_that_hangs_up_after_reading_a_post_means_sent_and_the_post_is_not_repeated() -> None:
    with RawServer(close_without_answering) as server:
        async with _client(server.url, max_retries=3) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.numbers.request(area_code="202", quantity=1)

    assert caught.value.request_sent is True
    assert len(server.requests) == 1  # buying numbers twice is what this prevents
    assert server.requests[0].startswith(b"POST /v2/fax/numbers ")


async def test_no_answer_within_the_read_timeout_is_an_api_timeout_error() -> None:
    with RawServer(never_answer) as server:
        async with _client(server.url, max_retries=0, timeout=httpx2.Timeout(5.0, read=0.05)) as client:
            with pytest.raises(APITimeoutError) as caught:
                await client.received.list(limit=1)

    assert caught.value.request_sent is True


async def test_a_body_that_stalls_past_the_read_timeout_is_an_api_timeout_error(tmp_path: Path) -> None:
    def stall_mid_body(request: bytes, conn: socket.socket, server: RawServer) -> bool:
        conn.sendall(_respond("200 OK", PDF[:1000], {"Content-Type": "application/pdf"}, length=len(PDF)))
        server.stop.wait(5)
        return False

    with RawServer(stall_mid_body) as server:
        async with _client(server.url, max_retries=0, timeout=httpx2.Timeout(5.0, read=0.05)) as client:
            with pytest.raises(APITimeoutError) as caught:
                await client.received.download("fax_1", tmp_path / "fax_1.pdf")

    assert caught.value.request_sent is True
    assert list(tmp_path.iterdir()) == []


# -- cancellation ---------------------------------------------------------------------------------


async def test_cancelling_a_download_mid_body_closes_its_connection_and_leaks_nothing() -> None:
    def endless(request: bytes, conn: socket.socket, server: RawServer) -> bool:
        if b"GET /v2/fax/received/fax_1/download " not in request:
            return json_ok(request, conn, server)
        conn.sendall(_respond("200 OK", PDF[:65536], {"Content-Type": "application/pdf"}, length=10 * len(PDF)))
        return True  # the rest never comes: the client must hang up

    with RawServer(endless) as server:
        async with _client(server.url) as client:
            received = 0
            with anyio.CancelScope() as scope:
                async with client.received.stream("fax_1") as chunks:
                    async for chunk in chunks:
                        received += len(chunk)
                        scope.cancel()
            assert scope.cancelled_caught and received > 0
            assert await anyio.to_thread.run_sync(server.client_closed.wait, 5)
            await client.request("GET", "after")  # the cut connection was not put back in the pool
        gc.collect()  # an unclosed session, connector or response would warn now (an error here)

    assert server.connections == 2


# -- redirects ------------------------------------------------------------------------------------


def _auth_header(request: bytes) -> bytes | None:
    for line in request.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-auth-token":
            return value.strip()
    return None


async def test_a_redirect_to_another_origin_does_not_carry_the_key(tmp_path: Path) -> None:
    def serve_document(request: bytes, conn: socket.socket, server: RawServer) -> bool:
        conn.sendall(_respond("200 OK", PDF, {"Content-Type": "application/pdf"}))
        return True

    with RawServer(serve_document) as cdn:

        def redirect_to_cdn(request: bytes, conn: socket.socket, server: RawServer) -> bool:
            conn.sendall(_respond("302 Found", b"", {"Location": f"{cdn.url}/doc.pdf?sig=1"}))
            return True

        with RawServer(redirect_to_cdn) as api:
            async with _client(api.url) as client:
                result = await client.received.download("fax_1", tmp_path / "x.pdf")

    assert result.path.read_bytes() == PDF
    assert [_auth_header(r) for r in api.requests] == [b"secret-key"]
    assert [_auth_header(r) for r in cdn.requests] == [None]
    assert cdn.requests[0].startswith(b"GET /doc.pdf?sig=1 ")
