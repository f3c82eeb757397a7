"""The SDK's asyncio network backend and its pool, against real loopback servers.

``AsyncioStream`` is driven directly against ``asyncio.start_server`` peers whose bytes the test
controls (a peer is parked until the test takes it from ``server.peers``), and through httpcore2's
pool and the SDK's own ``FaxClient``. Nothing sleeps: waits are on events, ``timeout=0`` triggers, or
bounded loops of ``asyncio.sleep(0)``; ``BOUND`` only caps a step that would otherwise hang.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import contextvars
import fcntl
import hashlib
import inspect
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
import pytest
import trio

from audian_fax_async import FaxClient
from audian_fax_async._client import _shared_ssl_context
from audian_fax_async._config import DEFAULT_LIMITS
from audian_fax_async._netbackend import (
    _POOL_SETTINGS,
    HIGH_WATER,
    LOW_WATER,
    WHOLE_CHUNK_READS,
    AsyncioBackend,
    AsyncioStream,
    SDKConnectionPool,
    ZeroCopyReceiveBuffer,
    _expire,
    _SDKHTTPConnection,
    use_asyncio_backend,
)

from ._fakes import fax_json
from .conftest import API_KEY, SSL_CONTEXT

#: The longest any single step may take before the test fails (never waited for on success).
BOUND = 5.0
#: asyncio's selector transports take at most this much from the socket per read.
MAX_SOCKET_READ = 256 * 1024

Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


def bounded(pool: float = BOUND, **extensions: Any) -> dict[str, Any]:
    """httpcore2 request extensions: every timeout ``BOUND`` (httpcore2 has none by default)."""
    return {"timeout": {"connect": BOUND, "read": BOUND, "write": BOUND, "pool": pool}, **extensions}


async def until(condition: Callable[[], object], what: str, spins: int = 100_000) -> None:
    """Let the loop run (no real-time sleep) until ``condition()`` holds; fail after ``spins`` turns."""
    for _ in range(spins):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def spin(turns: int = 200) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unread_in_kernel(stream: AsyncioStream) -> int:
    """Bytes the kernel holds for the stream's socket that asyncio has not received yet."""
    available = array.array("i", [0])
    fcntl.ioctl(stream.get_extra_info("socket").fileno(), termios.FIONREAD, available, True)
    return available[0]


async def receive_as_one_chunk(stream: AsyncioStream, peer: Peer, data: bytes) -> None:
    """Have the peer send ``data`` and asyncio receive it in one ``data_received`` call.

    The transport is paused until the kernel holds all of it (its receive buffer is made large
    enough first), so the next socket read takes it whole.
    """
    stream.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
    stream._transport.pause_reading()
    peer.writer.write(data)
    await until(lambda: unread_in_kernel(stream) == len(data), "the kernel holding every byte")
    stream._transport.resume_reading()
    await until(lambda: stream._protocol.buffered == len(data), "the bytes received")
    assert [len(chunk) for chunk in stream._protocol.chunks] == [len(data)]


# -- loopback servers ----------------------------------------------------------------------------


@dataclass
class Peer:
    """The server's side of one connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    heads: list[bytes] = field(default_factory=list)  # request heads an HTTP handler read
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the handler returned

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0), not a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Peer], Awaitable[None]]


class LoopbackServer:
    """``asyncio.start_server`` on 127.0.0.1 port 0 (or a unix socket).

    Each connection goes to ``handler``; without one it is parked in ``peers`` for the test to drive.
    """

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.seen: list[Peer] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self, ssl_context: ssl.SSLContext | None = None, unix_path: Path | None = None) -> None:
        if unix_path is not None:
            self._server = await asyncio.start_unix_server(self._on_client, str(unix_path))
        else:
            self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0, ssl=ssl_context)
            self.port = self._server.sockets[0].getsockname()[1]

    async def accept(self) -> Peer:
        async with asyncio.timeout(BOUND):
            return await self.peers.get()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        self.seen.append(peer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        try:
            if self.handler is None:
                await self.peers.put(peer)
                await self._closing.wait()
            else:
                await self.handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            writer.transport.abort()
            peer.ended.set()

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
        async with asyncio.timeout(BOUND):
            while pending := [task for task in self._tasks if not task.done()]:
                for peer in self.seen:
                    peer.writer.transport.abort()  # a handler blocked on a read ends at once
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def serve(
    handler: Handler | None = None, *, ssl_context: ssl.SSLContext | None = None, unix_path: Path | None = None
) -> AsyncIterator[LoopbackServer]:
    server = LoopbackServer(handler)
    await server.start(ssl_context, unix_path)
    try:
        yield server
    finally:
        await server.close()
    assert server.errors == []


def http_response(body: bytes, content_type: str = "text/plain") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def responder(body: bytes, content_type: str = "text/plain") -> Handler:
    """An HTTP/1.1 keep-alive server answering every (bodiless) request with ``body``."""

    async def handle(peer: Peer) -> None:
        while True:
            head = await peer.reader.readuntil(b"\r\n\r\n")
            peer.heads.append(head)
            peer.writer.write(http_response(body, content_type))
            await peer.writer.drain()

    return handle


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    async with serve() as parked:
        yield parked


OpenStream = Callable[[], Awaitable[tuple[AsyncioStream, Peer]]]


@pytest.fixture
async def open_stream(server: LoopbackServer) -> AsyncIterator[OpenStream]:
    """Connect an ``AsyncioStream`` to ``server``; every stream is closed at the end."""
    opened: list[AsyncioStream] = []

    async def open_() -> tuple[AsyncioStream, Peer]:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=BOUND)
        assert isinstance(stream, AsyncioStream)
        opened.append(stream)
        return stream, await server.accept()

    yield open_
    for stream in opened:
        await stream.aclose()


@pytest.fixture
async def read_timers(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.TimerHandle]:
    """Every timer the backend arms for a read or drain wait (``_expire``) on this test's loop."""
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    real = loop.call_later

    def call_later(
        delay: float, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.TimerHandle:
        handle = real(delay, callback, *args, context=context)
        if callback is _expire:
            timers.append(handle)
        return handle

    monkeypatch.setattr(loop, "call_later", call_later)
    return timers


def recording_trace(streams: list[httpcore2.AsyncNetworkStream]) -> Trace:
    """An httpcore2 ``trace`` extension keeping every stream the connection opened or upgraded."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            streams.append(info["return_value"])

    return trace


# -- read ----------------------------------------------------------------------------------------


async def test_read_returns_what_is_buffered_without_waiting(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    peer.writer.write(b"hello")
    await until(lambda: stream._protocol.buffered == 5, "the 5 bytes buffered")

    # timeout=0 would raise ReadTimeout if the read waited at all.
    assert await stream.read(100, timeout=0) == b"hello"
    assert stream._protocol.buffered == 0
    assert not stream._protocol.chunks


async def test_a_chunk_larger_than_max_bytes_is_split_in_order(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    peer.writer.write(b"abcdefghij")
    await until(lambda: stream._protocol.buffered == 10, "the 10 bytes buffered")
    assert len(stream._protocol.chunks) == 1  # one chunk, so the reads below split it

    pieces = [await stream.read(3, timeout=0) for _ in range(4)]

    assert pieces == [b"abc", b"def", b"ghi", b"j"]
    assert stream._protocol.buffered == 0
    assert stream._protocol.offset == 0
    assert not stream._protocol.chunks

    # Pieces that end exactly on the chunk's end.
    peer.writer.write(b"0123456789")
    await until(lambda: stream._protocol.buffered == 10, "the next 10 bytes buffered")
    assert [await stream.read(5, timeout=0) for _ in range(2)] == [b"01234", b"56789"]
    assert (stream._protocol.buffered, stream._protocol.offset, len(stream._protocol.chunks)) == (0, 0, 0)


async def test_a_read_of_64_kib_or_more_gets_a_received_chunk_whole(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    first, second = os.urandom(100_000), os.urandom(100_000)

    await receive_as_one_chunk(stream, peer, first)
    # httpcore2's 64 KiB body reads get the whole chunk, more than they asked for.
    assert await stream.read(WHOLE_CHUNK_READS, timeout=0) == first
    assert not stream._protocol.chunks

    await receive_as_one_chunk(stream, peer, second)
    # A smaller read keeps its limit.
    assert await stream.read(WHOLE_CHUNK_READS - 1, timeout=0) == second[: WHOLE_CHUNK_READS - 1]
    assert await stream.read(WHOLE_CHUNK_READS, timeout=0) == second[WHOLE_CHUNK_READS - 1 :]
    assert stream._protocol.buffered == 0


async def test_a_large_body_read_in_small_pieces_arrives_whole(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    payload = os.urandom(300_000)
    peer.writer.write(payload)
    peer.writer.write_eof()

    pieces: list[bytes] = []
    async with asyncio.timeout(BOUND):
        while piece := await stream.read(4096):
            pieces.append(piece)

    assert all(0 < len(piece) <= 4096 for piece in pieces)
    assert sha256(b"".join(pieces)) == sha256(payload)


async def test_eof_after_data_gives_the_data_then_empty_reads(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    peer.writer.write(b"tail")
    peer.writer.write_eof()
    await until(lambda: stream._protocol.eof, "the end of the stream")

    assert await stream.read(100, timeout=0) == b"tail"
    assert await stream.read(100, timeout=0) == b""
    assert await stream.read(100, timeout=0) == b""  # the end stays the end


async def test_a_reset_connection_gives_its_buffered_bytes_then_read_error(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    peer.writer.write(b"hello")
    assert await stream.read(2, timeout=BOUND) == b"he"

    peer.reset()
    await until(lambda: stream._protocol.lost, "the reset noticed")
    assert stream._protocol.chunks  # "llo" is still buffered when the connection is already gone

    assert await stream.read(100, timeout=0) == b"llo"
    with pytest.raises(httpcore2.ReadError) as raised:
        await stream.read(100, timeout=0)
    assert isinstance(raised.value.__cause__, ConnectionResetError)
    with pytest.raises(httpcore2.ReadError):  # and again: a broken stream does not turn into a clean end
        await stream.read(100, timeout=0)


async def test_a_reset_while_a_read_waits_wakes_it_with_read_error(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    reading = asyncio.create_task(stream.read(100, timeout=BOUND))
    await until(lambda: stream._protocol.read_waiter is not None, "the read waiting")

    peer.reset()

    with pytest.raises(httpcore2.ReadError):
        await reading


async def test_read_timeout_is_raised_and_the_stream_still_reads_later(
    open_stream: OpenStream, read_timers: list[asyncio.TimerHandle]
) -> None:
    stream, peer = await open_stream()

    with pytest.raises(httpcore2.ReadTimeout):
        await stream.read(100, timeout=0)
    assert stream._protocol.read_waiter is None

    late = asyncio.create_task(stream.read(100, timeout=BOUND))
    await until(lambda: stream._protocol.read_waiter is not None, "the second read waiting")
    peer.writer.write(b"late")

    assert await late == b"late"
    assert stream._protocol.read_waiter is None
    assert len(read_timers) == 2
    assert read_timers[1].cancelled()  # the 5 s timer of the read the data ended is not left armed


async def test_a_cancelled_read_raises_cancelled_error_and_leaves_no_waiter_or_timer(
    open_stream: OpenStream, read_timers: list[asyncio.TimerHandle]
) -> None:
    stream, peer = await open_stream()
    reading = asyncio.create_task(stream.read(100, timeout=BOUND))
    await until(lambda: stream._protocol.read_waiter is not None, "the read waiting")
    waiter = stream._protocol.read_waiter
    assert waiter is not None

    reading.cancel()

    with pytest.raises(asyncio.CancelledError):
        await reading
    assert reading.cancelled()  # a CancelledError, not a ReadTimeout or a value
    assert waiter.cancelled()
    assert stream._protocol.read_waiter is None
    assert [timer.cancelled() for timer in read_timers] == [True]
    # The stream is still usable.
    peer.writer.write(b"x")
    assert await stream.read(100, timeout=BOUND) == b"x"


# -- flow control --------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_reading_pauses_above_high_water_and_resumes_at_low_water(tls: bool, tls_contexts: TLSContexts) -> None:
    payload = os.urandom(4 * 1024 * 1024)
    # A TLS chunk is what one pass decrypts: up to the SSL protocol's own incoming buffer plus one read.
    most = HIGH_WATER + (2 if tls else 1) * MAX_SOCKET_READ
    async with serve(ssl_context=tls_contexts.server if tls else None) as server:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=BOUND)
        if tls:
            stream = await stream.start_tls(tls_contexts.client, "127.0.0.1", timeout=BOUND)
        assert isinstance(stream, AsyncioStream)
        protocol, transport = stream._protocol, stream._transport
        try:
            peer = await server.accept()
            peer.writer.write(payload)  # nobody reads on the client side yet

            await until(lambda: protocol.reading_paused, "reading paused")
            assert not transport.is_reading()
            assert HIGH_WATER < protocol.buffered <= most
            held = protocol.buffered
            await spin()
            assert protocol.buffered == held  # nothing more is taken from the socket while paused
            assert not transport.is_reading()

            # Small reads take the buffer down; the socket is read again once it is at LOW_WATER or below.
            received = bytearray()
            while protocol.buffered > LOW_WATER:
                assert not transport.is_reading()
                received += await stream.read(4096, timeout=0)  # buffered: no wait
            assert LOW_WATER - 4096 < protocol.buffered <= LOW_WATER
            assert transport.is_reading()
            assert not protocol.reading_paused

            # The rest arrives in httpcore2's 64 KiB reads, with the same bounds, every byte intact.
            async with asyncio.timeout(BOUND):
                while len(received) < len(payload):
                    received += await stream.read(64 * 1024)
                    assert protocol.buffered <= most
                    assert transport.is_reading() is not protocol.reading_paused
                    assert protocol.buffered <= HIGH_WATER or protocol.reading_paused
        finally:
            await stream.aclose()
    assert sha256(bytes(received)) == sha256(payload)


# -- write ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_write_after_the_peer_closed_raises_write_error(open_stream: OpenStream, how: str) -> None:
    stream, peer = await open_stream()
    if how == "close":
        peer.writer.close()
    else:
        peer.reset()
    await until(lambda: stream._protocol.lost, "the close noticed")

    with pytest.raises(httpcore2.WriteError) as raised:
        await stream.write(b"GET / HTTP/1.1\r\n\r\n", timeout=BOUND)
    if how == "reset":
        assert "reset" in str(raised.value).lower()


async def test_write_after_aclose_raises_write_error(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    await stream.aclose()

    with pytest.raises(httpcore2.WriteError):
        await stream.write(b"x", timeout=BOUND)
    async with asyncio.timeout(BOUND):
        assert await peer.reader.read() == b""  # and the server sees the end, with no byte written


async def test_a_large_write_waits_for_the_peer_and_every_byte_arrives(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    payload = os.urandom(8 * 1024 * 1024)

    writing = asyncio.create_task(stream.write(payload, timeout=BOUND))
    # The peer reads nothing yet: the write is held in the drain wait (the socket buffers are full).
    await until(lambda: stream._protocol.drain_waiter is not None, "the write waiting to drain")
    assert not writing.done()

    async with asyncio.timeout(BOUND):
        received = await peer.reader.readexactly(len(payload))
        await writing
    assert sha256(received) == sha256(payload)
    assert stream._protocol.drain_waiter is None
    assert not stream._protocol.writing_paused


async def test_a_write_that_cannot_drain_in_time_raises_write_timeout(open_stream: OpenStream) -> None:
    stream, _peer = await open_stream()

    with pytest.raises(httpcore2.WriteTimeout):
        await stream.write(b"x" * (16 * 1024 * 1024), timeout=0)  # the peer never reads
    assert stream._protocol.drain_waiter is None


# -- get_extra_info ------------------------------------------------------------------------------


async def test_extra_info_of_a_quiet_idle_connection(open_stream: OpenStream, server: LoopbackServer) -> None:
    stream, peer = await open_stream()
    await spin()

    assert stream.get_extra_info("is_readable") is False
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", server.port)
    assert stream.get_extra_info("client_addr") == peer.writer.get_extra_info("peername")
    sock = stream.get_extra_info("socket")
    assert sock is not None
    assert sock.getsockname() == peer.writer.get_extra_info("peername")
    assert stream.get_extra_info("ssl_object") is None
    assert stream.get_extra_info("no such thing") is None


@pytest.mark.parametrize("event", ["bytes", "close", "reset"])
async def test_an_idle_connection_is_readable_once_the_server_sent_or_closed(
    open_stream: OpenStream, event: str
) -> None:
    stream, peer = await open_stream()
    await spin()
    assert stream.get_extra_info("is_readable") is False

    if event == "bytes":
        peer.writer.write(b"unexpected")
    elif event == "close":
        peer.writer.close()
    else:
        peer.reset()

    await until(lambda: stream.get_extra_info("is_readable"), f"readable after {event}")
    if event == "bytes":
        assert await stream.read(100, timeout=0) == b"unexpected"
    elif event == "close":
        assert await stream.read(100, timeout=0) == b""
    else:
        with pytest.raises(httpcore2.ReadError):
            await stream.read(100, timeout=0)


# -- connect -------------------------------------------------------------------------------------


async def test_a_refused_connection_raises_connect_error() -> None:
    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]

        with pytest.raises(httpcore2.ConnectError) as raised:
            await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=BOUND)

    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


async def test_a_connect_timeout_raises_connect_timeout() -> None:
    with socket.socket() as listening:  # the kernel queues connections; nothing ever accepts them
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)

        with pytest.raises(httpcore2.ConnectTimeout):
            await AsyncioBackend().connect_tcp("127.0.0.1", listening.getsockname()[1], timeout=0)


async def test_socket_options_go_to_httpcore_own_backend_which_still_works(server: LoopbackServer) -> None:
    backend = AsyncioBackend()
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]

    stream = await backend.connect_tcp("127.0.0.1", server.port, timeout=BOUND, socket_options=options)
    try:
        assert not isinstance(stream, AsyncioStream)
        assert isinstance(backend._others["asyncio"], httpcore2.AnyIOBackend)
        assert stream.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        peer = await server.accept()
        await stream.write(b"ping", timeout=BOUND)
        async with asyncio.timeout(BOUND):
            assert await peer.reader.readexactly(4) == b"ping"
        peer.writer.write(b"pong")
        assert await stream.read(100, timeout=BOUND) == b"pong"
    finally:
        await stream.aclose()


async def test_unix_sockets_connect_and_a_missing_path_raises_connect_error(tmp_path: Path) -> None:
    backend = AsyncioBackend()
    with pytest.raises(httpcore2.ConnectError):
        await backend.connect_unix_socket(str(tmp_path / "missing"), timeout=BOUND)

    path = tmp_path / "s"
    async with serve(unix_path=path) as server:
        stream = await backend.connect_unix_socket(str(path), timeout=BOUND)
        try:
            assert isinstance(stream, AsyncioStream)
            peer = await server.accept()
            peer.writer.write(b"over unix")
            assert await stream.read(100, timeout=BOUND) == b"over unix"
        finally:
            await stream.aclose()
        fallback = await backend.connect_unix_socket(
            str(path), timeout=BOUND, socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
        )
        try:
            assert not isinstance(fallback, AsyncioStream)
            peer = await server.accept()
            await fallback.write(b"fallback", timeout=BOUND)
            async with asyncio.timeout(BOUND):
                assert await peer.reader.readexactly(8) == b"fallback"
        finally:
            await fallback.aclose()


# -- TLS -----------------------------------------------------------------------------------------


@dataclass
class TLSContexts:
    server: ssl.SSLContext  # serves the throwaway certificate for 127.0.0.1
    client: ssl.SSLContext  # trusts only that certificate


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "c.pem", folder / "k.pem"
    command = (
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    )
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30
    )
    return cert, key


@pytest.fixture
def tls_contexts(tls_files: tuple[Path, Path]) -> TLSContexts:
    cert, key = tls_files
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return TLSContexts(server=server, client=ssl.create_default_context(cafile=str(cert)))


async def test_https_through_the_pool_on_asyncio_transports(tls_contexts: TLSContexts) -> None:
    streams: list[httpcore2.AsyncNetworkStream] = []
    async with (
        serve(responder(b"secure body"), ssl_context=tls_contexts.server) as server,
        httpcore2.AsyncConnectionPool(ssl_context=tls_contexts.client, network_backend=AsyncioBackend()) as pool,
    ):
        url = f"https://127.0.0.1:{server.port}/secret"
        first = await pool.request("GET", url, extensions=bounded(trace=recording_trace(streams)))
        second = await pool.request("GET", url, extensions=bounded())

        assert (first.status, first.content) == (200, b"secure body")
        assert (second.status, second.content) == (200, b"secure body")
        tcp, tls = streams
        assert isinstance(tcp, AsyncioStream)
        assert isinstance(tls, AsyncioStream)
        assert tcp.get_extra_info("ssl_object") is None
        ssl_object = tls.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
        # The idle TLS connection read as not readable, so the second request reused it.
        assert len(server.seen) == 1
        assert [head.split(b"\r\n")[0] for head in server.seen[0].heads] == [b"GET /secret HTTP/1.1"] * 2


async def test_a_tls_handshake_with_an_untrusted_certificate_raises_connect_error(tls_contexts: TLSContexts) -> None:
    trusts_nothing = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    async with (
        serve(responder(b"never"), ssl_context=tls_contexts.server) as server,
        httpcore2.AsyncConnectionPool(ssl_context=trusts_nothing, network_backend=AsyncioBackend()) as pool,
    ):
        with pytest.raises(httpcore2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await pool.request("GET", f"https://127.0.0.1:{server.port}/", extensions=bounded())
        assert pool.connections == []

        stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=BOUND)
        assert isinstance(stream, AsyncioStream)
        with pytest.raises(httpcore2.ConnectError) as raised:
            await stream.start_tls(trusts_nothing, "127.0.0.1", timeout=BOUND)
        assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)
        assert stream._transport.is_closing()  # the socket is not left open


async def test_a_tls_handshake_that_does_not_finish_in_time_raises_connect_timeout(
    open_stream: OpenStream, tls_contexts: TLSContexts
) -> None:
    stream, _peer = await open_stream()  # a plain server: it never answers the ClientHello

    with pytest.raises(httpcore2.ConnectTimeout):
        await stream.start_tls(tls_contexts.client, "127.0.0.1", timeout=0)
    assert stream._transport.is_closing()


async def test_a_server_closing_during_the_tls_handshake_raises_connect_error(
    open_stream: OpenStream, tls_contexts: TLSContexts
) -> None:
    stream, peer = await open_stream()
    peer.writer.close()

    with pytest.raises(httpcore2.ConnectError):
        await stream.start_tls(tls_contexts.client, "127.0.0.1", timeout=BOUND)
    assert stream._transport.is_closing()


# -- the SDK's own client ------------------------------------------------------------------------


def pool_settings(pool: httpcore2.AsyncConnectionPool) -> dict[str, object]:
    return {name: getattr(pool, attribute) for name, attribute in _POOL_SETTINGS.items()}


def pool_of(client: httpx2.AsyncClient) -> httpcore2.AsyncConnectionPool:
    transport = client._transport
    assert isinstance(transport, httpx2.AsyncHTTPTransport)
    return transport._pool


def test_the_copied_settings_are_every_argument_of_the_stock_pool() -> None:
    parameters = set(inspect.signature(httpcore2.AsyncConnectionPool.__init__).parameters)

    # Everything but the proxy (such pools are left alone) and the backend (the one replaced).
    assert parameters - {"self", "proxy", "network_backend"} == set(_POOL_SETTINGS)
    stock = httpx2.AsyncHTTPTransport(verify=SSL_CONTEXT)._pool
    assert all(hasattr(stock, attribute) for attribute in _POOL_SETTINGS.values())


async def test_the_sdk_client_gets_an_sdk_pool_with_the_stock_pool_settings() -> None:
    async with FaxClient(API_KEY, base_url="http://127.0.0.1:9/v2") as client:
        pool = pool_of(client._http)

        assert type(pool) is SDKConnectionPool
        assert isinstance(pool._network_backend, AsyncioBackend)
        stock = httpx2.AsyncHTTPTransport(verify=_shared_ssl_context(), limits=DEFAULT_LIMITS)._pool
        assert pool_settings(pool) == pool_settings(stock)
        assert pool._ssl_context is _shared_ssl_context()
        assert (pool._max_connections, pool._max_keepalive_connections, pool._keepalive_expiry) == (64, 32, 30.0)
        assert (pool._http1, pool._http2) == (True, False)


async def test_a_given_transport_or_http_client_is_left_as_given() -> None:
    transport = httpx2.AsyncHTTPTransport(verify=SSL_CONTEXT)
    stock_pool = transport._pool
    async with FaxClient(API_KEY, base_url="http://127.0.0.1:9/v2", transport=transport) as client:
        assert transport._pool is stock_pool
        assert type(stock_pool) is httpcore2.AsyncConnectionPool
        assert client._http._transport is transport

    async with httpx2.AsyncClient(verify=SSL_CONTEXT) as http:
        given_pool = pool_of(http)
        async with FaxClient(API_KEY, base_url="http://127.0.0.1:9/v2", http_client=http) as client:
            assert client._http is http
            assert pool_of(http) is given_pool
            assert type(given_pool) is httpcore2.AsyncConnectionPool
            assert not isinstance(given_pool._network_backend, AsyncioBackend)


def test_use_asyncio_backend_keeps_non_default_settings() -> None:
    transport = httpx2.AsyncHTTPTransport(
        verify=SSL_CONTEXT,
        limits=httpx2.Limits(max_connections=3, max_keepalive_connections=2, keepalive_expiry=7.5),
        retries=2,
        local_address="127.0.0.1",
        uds="/nonexistent/socket",
        socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)],
    )
    before = pool_settings(transport._pool)

    assert use_asyncio_backend(transport) is True

    pool = transport._pool
    assert type(pool) is SDKConnectionPool
    assert isinstance(pool._network_backend, AsyncioBackend)
    assert pool_settings(pool) == before
    assert before["max_connections"] == 3
    assert before["retries"] == 2
    # Done once: the SDK pool is not replaced again.
    assert use_asyncio_backend(transport) is False
    assert transport._pool is pool


class _OwnTransport(httpx2.AsyncHTTPTransport):
    pass


def _with_proxy_pool() -> httpx2.AsyncHTTPTransport:
    transport = httpx2.AsyncHTTPTransport(verify=SSL_CONTEXT)
    transport._pool = httpcore2.AsyncConnectionPool(proxy=httpcore2.Proxy("http://127.0.0.1:9"))
    return transport


def _with_unknown_pool_layout() -> httpx2.AsyncHTTPTransport:
    transport = httpx2.AsyncHTTPTransport(verify=SSL_CONTEXT)
    del transport._pool._retries  # as a future httpcore2 that keeps its settings elsewhere
    return transport


@pytest.mark.parametrize(
    "make",
    [
        lambda: httpx2.AsyncHTTPTransport(verify=SSL_CONTEXT, proxy="http://127.0.0.1:9"),
        lambda: _OwnTransport(verify=SSL_CONTEXT),
        _with_proxy_pool,
        _with_unknown_pool_layout,
    ],
    ids=["proxy-transport", "subclass", "pool-with-proxy", "unknown-pool-layout"],
)
def test_use_asyncio_backend_leaves_other_transports_alone(make: Callable[[], httpx2.AsyncHTTPTransport]) -> None:
    transport = make()
    pool = transport._pool

    assert use_asyncio_backend(transport) is False
    assert transport._pool is pool
    assert not isinstance(pool, SDKConnectionPool)


def test_use_asyncio_backend_leaves_a_non_httpx_transport_alone() -> None:
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200))
    assert use_asyncio_backend(transport) is False


async def test_use_asyncio_backend_leaves_a_pool_already_in_use_alone() -> None:
    async with serve(responder(b"ok")) as server, httpx2.AsyncClient(verify=SSL_CONTEXT) as http:
        response = await http.get(f"http://127.0.0.1:{server.port}/")
        assert response.content == b"ok"
        pool = pool_of(http)
        assert len(pool.connections) == 1
        transport = http._transport
        assert isinstance(transport, httpx2.AsyncHTTPTransport)

        assert use_asyncio_backend(transport) is False
        assert transport._pool is pool


def _fax_list_body() -> bytes:
    return json.dumps({"faxes": [fax_json("fax_1")], "total": 1, "limit": 20, "offset": 0}).encode()


async def test_the_sdk_client_talks_to_a_server_through_asyncio_streams() -> None:
    async with (
        serve(responder(_fax_list_body(), "application/json")) as server,
        FaxClient(API_KEY, base_url=f"http://127.0.0.1:{server.port}/v2", max_retries=0) as client,
    ):
        first = await client.received.list()
        second = await client.received.list()

        assert [fax.id for fax in first.faxes] == ["fax_1"]
        assert [fax.id for fax in second.faxes] == ["fax_1"]
        [connection] = pool_of(client._http).connections  # one connection, reused
        assert isinstance(connection, httpcore2.AsyncHTTPConnection)
        inner = connection._connection
        assert isinstance(inner, httpcore2.AsyncHTTP11Connection)
        assert isinstance(inner._network_stream, AsyncioStream)
        [peer] = server.seen
        assert len(peer.heads) == 2
        assert peer.heads[0].startswith(b"GET /v2/fax/received?limit=20&offset=0 HTTP/1.1\r\n")
        assert f"\r\nX-Auth-Token: {API_KEY}\r\n".encode() in peer.heads[0]


# -- SDKConnectionPool ---------------------------------------------------------------------------


class CancelAfterConnect(httpcore2.AsyncNetworkBackend):
    """``AsyncioBackend`` that cancels the calling task as its first connection is returned.

    The CancelledError then lands at the caller's next checkpoint: in httpcore2 1.0.9 that is the
    ``_state_lock`` acquire in ``AsyncHTTP11Connection.handle_async_request``, the window of
    encode/httpcore2#1093, where the new connection is left ``NEW`` by a request that is gone.
    """

    def __init__(self) -> None:
        self.inner = AsyncioBackend()
        self.streams: list[httpcore2.AsyncNetworkStream] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        self.streams.append(stream)
        if len(self.streams) == 1:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return stream

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


async def _cancel_in_the_window(pool: httpcore2.AsyncConnectionPool, url: str) -> None:
    request = asyncio.create_task(pool.request("GET", url, extensions=bounded()))
    with pytest.raises(asyncio.CancelledError):
        await request
    assert request.cancelled()


async def test_a_plain_pool_keeps_the_orphan_of_a_cancelled_request() -> None:
    """The reproduction really hits httpcore2's bug: without the SDK's pool the slot is lost."""
    backend = CancelAfterConnect()
    async with (
        serve(responder(b"ok")) as server,
        httpcore2.AsyncConnectionPool(max_connections=1, network_backend=backend) as pool,
    ):
        url = f"http://127.0.0.1:{server.port}/"
        await _cancel_in_the_window(pool, url)

        [orphan] = pool.connections
        assert orphan.info().endswith("HTTP/1.1, NEW, Request Count: 0")
        assert not orphan.is_idle()
        assert not orphan.is_closed()
        assert not orphan.is_available()
        assert isinstance(backend.streams[0], AsyncioStream)
        assert not backend.streams[0]._transport.is_closing()  # its socket is still open
        await spin()
        assert server.seen[0].heads == []  # no request was ever sent on it
        # With one connection allowed, no other request gets in.
        with pytest.raises(httpcore2.PoolTimeout):
            await pool.request("GET", url, extensions=bounded(pool=0))
        assert len(backend.streams) == 1


def closing_responder(body: bytes) -> Handler:
    """Answers one request with ``body`` and ``Connection: close``, then ends the connection."""

    async def handle(peer: Peer) -> None:
        head = await peer.reader.readuntil(b"\r\n\r\n")
        peer.heads.append(head)
        peer.writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await peer.writer.drain()
        peer.writer.close()

    return handle


async def _cancel_a_queued_request_as_it_gets_a_new_connection(pool: httpcore2.AsyncConnectionPool, url: str) -> None:
    """The window of encode/httpcore2#1093 as a busy pool opens it, with no help from the backend.

    With one connection allowed, request B queues behind A. A's server closes its connection, so
    when A's response closes the pool gives B a *new* connection and wakes it; B is cancelled before
    it runs (a timeout expiring at that moment), so the new connection never gets its request.
    """
    async with pool.stream("GET", url, extensions=bounded()) as first:
        queued = asyncio.create_task(pool.request("GET", url, extensions=bounded()))
        await spin()
        assert pool._requests[-1].is_queued()  # B waits for a connection
        await first.aread()
    # A's response is closed: B holds a new connection and has not run yet.
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued


async def test_a_plain_pool_keeps_the_orphan_of_a_queued_request_cancelled_as_it_is_woken() -> None:
    async with serve(closing_responder(b"ok")) as server, httpcore2.AsyncConnectionPool(max_connections=1) as pool:
        url = f"http://127.0.0.1:{server.port}/"
        await _cancel_a_queued_request_as_it_gets_a_new_connection(pool, url)

        [orphan] = pool.connections
        assert orphan.info() == "CONNECTING"
        assert not (orphan.is_idle() or orphan.is_closed() or orphan.is_available())
        with pytest.raises(httpcore2.PoolTimeout):
            await pool.request("GET", url, extensions=bounded(pool=0))


async def test_the_sdk_pool_closes_the_orphan_and_serves_the_next_request() -> None:
    async with (
        serve(closing_responder(b"ok")) as server,
        SDKConnectionPool(max_connections=1, network_backend=AsyncioBackend()) as pool,
    ):
        url = f"http://127.0.0.1:{server.port}/"
        await _cancel_a_queued_request_as_it_gets_a_new_connection(pool, url)

        response = await pool.request("GET", url, extensions=bounded())

        assert (response.status, response.content) == (200, b"ok")
        assert len(server.seen) == 2  # A's connection and this one: the orphan never connected
        assert all(connection.info() != "CONNECTING" for connection in pool.connections)


async def test_a_request_cancelled_as_its_connection_opens_leaves_nothing_behind_on_the_sdk_pool() -> None:
    backend = CancelAfterConnect()
    async with (
        serve(responder(b"ok")) as server,
        SDKConnectionPool(max_connections=1, network_backend=backend) as pool,
    ):
        url = f"http://127.0.0.1:{server.port}/"
        await _cancel_in_the_window(pool, url)

        assert pool.connections == []
        first = backend.streams[0]
        assert isinstance(first, AsyncioStream)
        assert first._transport.is_closing()
        async with asyncio.timeout(BOUND):
            await server.seen[0].ended.wait()  # the server saw the connection end

        response = await pool.request("GET", url, extensions=bounded())

        assert (response.status, response.content) == (200, b"ok")
        assert len(backend.streams) == 2
        [connection] = pool.connections
        assert connection.is_idle()


@pytest.fixture
def loop_passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every pass anyio makes round the event loop for a checkpoint (``sleep(0)``)."""
    import anyio._backends._asyncio as anyio_asyncio

    passes: list[str] = []
    real_sleep = asyncio.sleep  # what anyio's asyncio backend imported as its ``sleep``
    assert anyio_asyncio.sleep is real_sleep  # type: ignore[attr-defined]

    async def sleep(delay: float, result: Any = None) -> Any:
        if delay == 0:
            passes.append(sys._getframe(1).f_code.co_name)
        return await real_sleep(delay, result)

    monkeypatch.setattr(anyio_asyncio, "sleep", sleep)
    return passes


@pytest.mark.parametrize("sdk_pool", [True, False], ids=["sdk-pool", "httpcore2-pool"])
async def test_a_request_on_the_sdk_pool_takes_its_locks_without_passing_round_the_loop(
    sdk_pool: bool, loop_passes: list[str]
) -> None:
    """httpcore2's locks yield once per uncontended acquire; the SDK's pool keeps the locking, not the yields."""
    pool_type = SDKConnectionPool if sdk_pool else httpcore2.AsyncConnectionPool
    async with serve(responder(b"ok")) as server, pool_type(network_backend=AsyncioBackend()) as pool:
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(2):  # a new connection, then the kept-alive one
            loop_passes.clear()
            response = await pool.request("GET", url, extensions=bounded())
            assert response.content == b"ok"
            if sdk_pool:
                assert loop_passes == []
            else:
                assert loop_passes.count("cancel_shielded_checkpoint") == 3  # three lock acquires
        [connection] = pool.connections
        assert connection.is_idle()


async def test_the_sdk_pools_locks_still_exclude(loop_passes: list[str]) -> None:
    """A contended fast lock waits for its holder, as httpcore2's does."""
    from audian_fax_async._netbackend import _FastLock

    lock, order = _FastLock(), []

    async def hold(name: str) -> None:
        async with lock:
            order.append(f"{name} in")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            order.append(f"{name} out")

    await asyncio.gather(hold("a"), hold("b"))
    assert order == ["a in", "a out", "b in", "b out"]


async def test_the_sdk_pool_leaves_connections_in_use_open() -> None:
    release = asyncio.Event()

    async def handle(peer: Peer) -> None:
        while True:
            head = await peer.reader.readuntil(b"\r\n\r\n")
            peer.heads.append(head)
            if head.startswith(b"GET /slow "):
                peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
                await peer.writer.drain()
                await release.wait()
                peer.writer.write(b"world")
            else:
                peer.writer.write(http_response(b"fast"))
            await peer.writer.drain()

    async with serve(handle) as server, SDKConnectionPool(max_connections=2, network_backend=AsyncioBackend()) as pool:
        base = f"http://127.0.0.1:{server.port}"
        async with pool.stream("GET", f"{base}/slow", extensions=bounded()) as slow:
            chunks = slow.aiter_stream()
            assert await anext(chunks) == b"hello"
            # The slow connection is active, not idle: another request must not reclaim it.
            fast = await pool.request("GET", f"{base}/fast", extensions=bounded())
            assert fast.content == b"fast"
            assert len(pool.connections) == 2
            assert not any(connection.is_closed() for connection in pool.connections)

            release.set()
            rest = b"".join([chunk async for chunk in chunks])
        assert rest == b"world"
        assert len(pool.connections) == 2
        assert all(connection.is_idle() for connection in pool.connections)


# -- trio ----------------------------------------------------------------------------------------


async def _start_trio_http_server(nursery: trio.Nursery, body: bytes, content_type: str, heads: list[bytes]) -> int:
    """A trio HTTP/1.1 keep-alive server on 127.0.0.1 port 0, answering every request with ``body``."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                while True:
                    while b"\r\n\r\n" not in buffer:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        buffer += data
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    heads.append(head)
                    await stream.send_all(http_response(body, content_type))

    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return port


def test_under_trio_the_backend_falls_back_to_httpcore_trio_backend() -> None:
    heads: list[bytes] = []
    streams: list[httpcore2.AsyncNetworkStream] = []
    backend = AsyncioBackend()

    async def main() -> None:
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                port = await _start_trio_http_server(nursery, b"from trio", "text/plain", heads)
                async with httpcore2.AsyncConnectionPool(network_backend=backend) as pool:
                    response = await pool.request(
                        "GET", f"http://127.0.0.1:{port}/t", extensions=bounded(trace=recording_trace(streams))
                    )
                    assert (response.status, response.content) == (200, b"from trio")
                await backend.sleep(0)
                nursery.cancel_scope.cancel()

    trio.run(main)

    [stream] = streams
    assert not isinstance(stream, AsyncioStream)
    assert type(stream).__name__ == "TrioStream"
    assert set(backend._others) == {"trio"}
    assert isinstance(backend._others["trio"], httpcore2.TrioBackend)
    assert [head.split(b"\r\n")[0] for head in heads] == [b"GET /t HTTP/1.1"]


def test_the_sdk_client_works_under_trio() -> None:
    heads: list[bytes] = []
    ids: list[str] = []

    async def main() -> None:
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                port = await _start_trio_http_server(nursery, _fax_list_body(), "application/json", heads)
                async with FaxClient(API_KEY, base_url=f"http://127.0.0.1:{port}/v2", max_retries=0) as client:
                    assert type(pool_of(client._http)) is SDKConnectionPool
                    page = await client.received.list()
                    ids.extend(fax.id for fax in page.faxes)
                nursery.cancel_scope.cancel()

    trio.run(main)

    assert ids == ["fax_1"]
    assert len(heads) == 1


async def test_aclose_after_a_write_timeout_drops_what_was_never_sent(open_stream: OpenStream) -> None:
    stream, peer = await open_stream()
    size = 16 * 1024 * 1024
    with pytest.raises(httpcore2.WriteTimeout):
        await stream.write(b"x" * size, timeout=0)  # the peer is not reading yet
    await stream.aclose()
    assert stream._transport.is_closing()

    received = 0
    async with asyncio.timeout(BOUND):
        try:
            while chunk := await peer.reader.read(1024 * 1024):
                received += len(chunk)
        except ConnectionResetError:
            pass
    # A plain close() would have kept the socket open to send all 16 MiB first (and forever, had the
    # peer never read); the connection ended with only what had reached the socket buffers.
    assert received < size


async def test_the_sdk_pool_reads_bodies_through_the_zero_copy_buffer_and_they_arrive_whole() -> None:
    body = bytes(range(256)) * 3000  # 768 KB: several received chunks, most taken whole
    async with (
        serve(responder(body)) as server,
        SDKConnectionPool(max_connections=1, network_backend=AsyncioBackend()) as pool,
    ):
        url = f"http://127.0.0.1:{server.port}/doc"
        for _ in range(3):  # the same connection, response after response
            response = await pool.request("GET", url, extensions=bounded())
            assert (response.status, response.content) == (200, body)
        (connection,) = pool.connections
        assert isinstance(connection, _SDKHTTPConnection)
        http11 = connection._connection
        assert isinstance(http11, httpcore2.AsyncHTTP11Connection)
        assert type(http11._h11_state._receive_buffer) is ZeroCopyReceiveBuffer
    # httpcore2's own pool keeps h11's buffer.
    async with (
        serve(responder(body)) as server,
        httpcore2.AsyncConnectionPool(network_backend=AsyncioBackend()) as plain,
    ):
        response = await plain.request("GET", f"http://127.0.0.1:{server.port}/doc", extensions=bounded())
        assert response.content == body
        (stock,) = plain.connections
        assert type(stock._connection._h11_state._receive_buffer) is not ZeroCopyReceiveBuffer  # type: ignore[attr-defined]
