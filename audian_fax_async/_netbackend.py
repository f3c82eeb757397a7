"""httpcore2's network I/O on asyncio's own transports, for the SDK's own HTTP client.

httpcore2 reaches the network through a *network backend* (its documented extension point,
``AsyncConnectionPool(network_backend=...)``). Its default on asyncio is anyio's socket streams, and
that costs more per read than the read itself: every ``read`` and ``write`` enters
``anyio.fail_after`` (a cancel scope, which looks up the current task) and goes through anyio's
stream wrappers, and every request checks each idle connection with ``get_extra_info("is_readable")``,
which builds anyio's attribute mapping and polls the socket. A bulk download makes about 8 reads per
450 KB document.

:class:`AsyncioBackend` does the same work on an ``asyncio.Protocol``: bytes wait in a deque filled
by ``data_received``; a read returns what is buffered at once and only waits (with a timer, not a
cancel scope) when nothing is; an idle connection is "readable" when bytes or the end arrived, with
no system call. A chunk asyncio received (up to 256 KiB) is handed on whole even when httpcore2 asked
for less: httpcore2 reads bodies ``READ_NUM_BYTES`` (64 KiB) at a time and h11 takes data of any size,
so splitting would only add copies and one more pass through httpcore2, h11, httpx2 and the SDK per
64 KiB. Reads below 64 KiB (a SOCKS handshake) keep their limit.

Measured on scenario 2's servers (400 x 450 KB from nginx, 10 at a time, six alternated rounds):
a bare httpx2 loop took 2.06 ms per document with httpcore2's default backend and 1.58 ms with this
one (1.31x); handing whole chunks on took the SDK from 0.84x to 0.98x a bare httpx2
loop (600 documents, eight rounds; benchmarks/README.md).

It is used only by the client the SDK builds for itself (``FaxClient()`` without ``http_client=``
or ``transport=``), and only on asyncio: under any other event loop (trio), or with socket options
it does not handle, each call goes to httpcore2's own backend. Memory stays bounded: above
``HIGH_WATER`` buffered bytes the socket stops being read (TCP then slows the sender) until the
reader has taken the buffer down to ``LOW_WATER``.
"""

# httpcore2's interface takes a ``timeout`` argument on every async method (ASYNC109).
# ruff: noqa: ASYNC109
from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any, Literal

import anyio
import httpcore2
import httpx2
import sniffio
from h11._receivebuffer import ReceiveBuffer
from httpcore2._synchronization import AsyncLock

from ._threads import on_asyncio

__all__ = [
    "HIGH_WATER",
    "LOW_WATER",
    "WHOLE_CHUNK_READS",
    "AsyncioBackend",
    "AsyncioStream",
    "SDKConnectionPool",
    "ZeroCopyReceiveBuffer",
    "use_asyncio_backend",
]

#: Buffered bytes above which a connection's socket stops being read.
HIGH_WATER = 512 * 1024
#: Buffered bytes at or below which it is read again.
LOW_WATER = 128 * 1024
#: Reads of at least this many bytes get a received chunk whole, even if it is bigger.
WHOLE_CHUNK_READS = 64 * 1024
#: ... up to this size (asyncio receives at most 256 KiB at a time, so in practice never reached).
_CHUNK_CAP = 1024 * 1024

#: The result a waiter gets when its timer fires first.
_TIMED_OUT: Literal["timed out"] = "timed out"

_SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


def _expire(waiter: asyncio.Future[str | None]) -> None:
    if not waiter.done():
        waiter.set_result(_TIMED_OUT)


def _wake(waiter: asyncio.Future[str | None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Protocol(asyncio.Protocol):
    """One connection's receive buffer and flow-control state."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.offset = 0  # bytes of chunks[0] already returned
        self.buffered = 0  # bytes in chunks not yet returned
        self.eof = False  # the peer finished sending, or the connection is gone
        self.error: BaseException | None = None  # why the connection was lost, if it broke
        self.lost = False
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[str | None] | None = None
        self.drain_waiter: asyncio.Future[str | None] | None = None

    # asyncio's callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not data:
            return
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.read_waiter)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.read_waiter)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        self.error = exc
        _wake(self.read_waiter)
        _wake(self.drain_waiter)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.drain_waiter)

    # used by the stream --------------------------------------------------------------------

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of the buffer (at least one byte: the caller checked it is not empty)."""
        chunk = self.chunks[0]
        start = self.offset
        end = start + max_bytes
        if end >= len(chunk):
            self.chunks.popleft()
            self.offset = 0
            data = chunk[start:] if start else chunk  # a whole chunk is handed on without a copy
        else:
            data = chunk[start:end]
            self.offset = end
        self.buffered -= len(data)
        if self.reading_paused and self.buffered <= LOW_WATER and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, kind: Literal["read", "drain"], limit: float | None) -> bool:
        """Wait until woken; False when ``limit`` seconds passed first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[str | None] = loop.create_future()
        if kind == "read":
            self.read_waiter = waiter
        else:
            self.drain_waiter = waiter
        timer = loop.call_later(limit, _expire, waiter) if limit is not None else None
        try:
            return await waiter is not _TIMED_OUT
        finally:
            if timer is not None:
                timer.cancel()
            if kind == "read":
                self.read_waiter = None
            else:
                self.drain_waiter = None


def _reason(error: BaseException | None, default: str) -> str:
    if error is None:
        return default
    return str(error) or type(error).__name__


class AsyncioStream(httpcore2.AsyncNetworkStream):
    """An httpcore2 network stream over an asyncio transport and :class:`_Protocol`."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks:
            if not protocol.eof and not await protocol.wait("read", timeout):
                raise httpcore2.ReadTimeout(f"no data within {timeout} s")
            if not protocol.chunks:  # the end (a clean one, or a broken connection)
                if protocol.error is not None:
                    raise httpcore2.ReadError(_reason(protocol.error, "connection lost")) from protocol.error
                return b""
        # httpcore2 reads bodies 64 KiB at a time; a chunk asyncio received whole (up to 256 KiB) is
        # handed on whole instead (see the module's docstring). Small reads keep their limit.
        return protocol.take(max_bytes if max_bytes < WHOLE_CHUNK_READS else max(max_bytes, _CHUNK_CAP))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise httpcore2.WriteError(_reason(protocol.error, "the connection is closed"))
        self._transport.write(buffer)
        while protocol.writing_paused and not protocol.lost:
            if not await protocol.wait("drain", timeout):
                raise httpcore2.WriteTimeout(f"could not send within {timeout} s")
        error = self._protocol.error  # (not narrowed: the wait above may have changed it)
        if error is not None:
            raise httpcore2.WriteError(_reason(error, "connection lost")) from error

    async def aclose(self) -> None:
        # close() keeps the socket open until buffered writes are sent, which a peer that stopped
        # reading never lets happen (after a write timeout or a cancelled upload): drop them then,
        # as anyio's streams do.
        if self._transport.get_write_buffer_size():
            self._transport.abort()
        else:
            self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore2.ConnectTimeout(f"TLS handshake not done within {timeout} s") from None
        except (ssl.SSLError, OSError, ConnectionError, RuntimeError) as exc:
            self._transport.close()
            raise httpcore2.ConnectError(_reason(exc, "TLS handshake failed")) from exc
        if transport is None:  # the connection closed during the handshake
            self._transport.close()
            raise httpcore2.ConnectError("the connection closed during the TLS handshake")
        assert isinstance(transport, asyncio.Transport)
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # checked on idle connections: bytes or the end arrived
            return bool(self._protocol.chunks) or self._protocol.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


async def _connected(
    connecting: Coroutine[Any, Any, tuple[asyncio.BaseTransport, _Protocol]], where: str, timeout: float | None
) -> AsyncioStream:
    """Await a connection within ``timeout``; httpcore2's errors for a refusal or a timeout."""
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await connecting
    except TimeoutError:
        raise httpcore2.ConnectTimeout(f"could not connect to {where} within {timeout} s") from None
    except OSError as exc:
        raise httpcore2.ConnectError(_reason(exc, f"could not connect to {where}")) from exc
    assert isinstance(transport, asyncio.Transport)
    return AsyncioStream(transport, protocol)


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's network backend on asyncio transports; httpcore2's own backend elsewhere."""

    def __init__(self) -> None:
        self._others: dict[str, httpcore2.AsyncNetworkBackend] = {}

    def _other(self) -> httpcore2.AsyncNetworkBackend:
        """httpcore2's own backend for this event loop (trio's on trio, anyio's on asyncio)."""
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = "asyncio"
        backend = self._others.get(library)
        if backend is None:
            backend = httpcore2.TrioBackend() if library == "trio" else httpcore2.AnyIOBackend()
            self._others[library] = backend
        return backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        if socket_options or not on_asyncio():
            return await self._other().connect_tcp(host, port, timeout, local_address, socket_options)
        connecting = asyncio.get_running_loop().create_connection(
            _Protocol,
            host,
            port,
            local_addr=(local_address, 0) if local_address else None,
            happy_eyeballs_delay=0.25,  # as anyio's connect_tcp (RFC 8305)
        )
        return await _connected(connecting, f"{host}:{port}", timeout)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        if socket_options or not on_asyncio():
            return await self._other().connect_unix_socket(path, timeout, socket_options)
        connecting = asyncio.get_running_loop().create_unix_connection(_Protocol, path)
        return await _connected(connecting, path, timeout)

    async def sleep(self, seconds: float) -> None:
        if on_asyncio():
            await asyncio.sleep(seconds)
        else:
            await self._other().sleep(seconds)


class _FastLock(AsyncLock):
    """httpcore2's connection lock, without a pass round the event loop when nobody holds it.

    httpcore2's ``AsyncLock`` is an ``anyio.Lock``, whose uncontended acquire still yields to the
    event loop once (a cancellation checkpoint). A request takes three such locks (the connection's
    request lock, then the HTTP/1.1 state lock on sending and on closing), so each download waited
    three times behind every other ready callback while it held a download slot. anyio's
    ``fast_acquire`` drops that checkpoint; every lock is still held across the same code, and the
    I/O inside each has checkpoints of its own. Scenario 1 (benchmarks/README.md): 91.9% -> 94.5%
    of the ideal, medians of eight alternated rounds.
    """

    def setup(self) -> None:
        super().setup()
        if self._backend == "asyncio":
            self._anyio_lock = anyio.Lock(fast_acquire=True)


class ZeroCopyReceiveBuffer(ReceiveBuffer):
    """h11's receive buffer, without copying a body chunk that the body takes whole.

    h11 appends every received chunk to a ``bytearray``, takes the body out of it with two slices
    (the first only to see whether anything is there), and httpcore2 turns the slice into ``bytes``:
    four copies of every body byte on top of the one from the socket, about a tenth of the event
    loop's time in a bulk download (benchmarks/README.md). Here a ``bytes`` chunk that arrives
    while the buffer is empty is kept as it is and handed on as it is when the body takes all of it
    (httpcore2's ``bytes()`` of it is then the same object); anything else (headers, the end of one
    body and the start of the next, a chunk-size line) goes through the ``bytearray`` as before,
    with the first slice dropped. The events h11 makes are the same byte for byte (tested against
    h11's own buffer).
    """

    def __init__(self) -> None:
        super().__init__()
        self._whole: bytes | None = None  # a chunk received into an empty buffer, not copied yet

    def _spill(self) -> None:
        whole = self._whole
        if whole is not None:
            self._whole = None
            self._data += whole

    def __iadd__(self, byteslike: bytes | bytearray) -> ZeroCopyReceiveBuffer:
        if self._whole is None and not self._data and type(byteslike) is bytes:
            self._whole = byteslike
            return self
        self._spill()
        self._data += byteslike
        return self

    def __len__(self) -> int:
        whole = self._whole
        return len(self._data) if whole is None else len(whole)  # one or the other holds the data

    def __bytes__(self) -> bytes:
        self._spill()
        return super().__bytes__()

    def maybe_extract_at_most(self, count: int) -> bytearray | None:
        whole = self._whole
        if whole is not None and len(whole) <= count:
            self._whole = None
            self._next_line_search = 0
            self._multiple_lines_search = 0
            return whole  # type: ignore[return-value]  # bytes: h11 and httpcore2 take either
        self._spill()
        data = self._data
        if not data:
            return None
        if len(data) <= count:  # all of it: hand the bytearray itself over (h11 slices it twice)
            self._data = bytearray()
            self._next_line_search = 0
            self._multiple_lines_search = 0
            return data
        return self._extract(count)

    def maybe_extract_next_line(self) -> bytearray | None:
        self._spill()
        return super().maybe_extract_next_line()

    def maybe_extract_lines(self) -> list[bytearray] | None:
        self._spill()
        return super().maybe_extract_lines()

    def is_next_line_obviously_invalid_request_line(self) -> bool:
        self._spill()
        return super().is_next_line_obviously_invalid_request_line()


class _SDKHTTPConnection(httpcore2.AsyncHTTPConnection):
    """httpcore2's connection, with :class:`_FastLock` for its request lock and its HTTP/1.1 state lock.

    httpcore2 creates the HTTP/1.1 connection inside ``handle_async_request``; the state lock is
    swapped as that connection is stored, before anything can take it.
    """

    _http: httpcore2.AsyncConnectionInterface | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_lock = _FastLock()

    @property  # an attribute in httpcore2; a property here, to see it set
    def _connection(self) -> httpcore2.AsyncConnectionInterface | None:
        return self._http

    @_connection.setter
    def _connection(self, connection: httpcore2.AsyncConnectionInterface | None) -> None:
        if isinstance(connection, httpcore2.AsyncHTTP11Connection):
            connection._state_lock = _FastLock()
            h11_state = connection._h11_state
            if type(h11_state._receive_buffer) is ReceiveBuffer and not h11_state._receive_buffer:
                h11_state._receive_buffer = ZeroCopyReceiveBuffer()
        self._http = connection


class SDKConnectionPool(httpcore2.AsyncConnectionPool):
    """httpcore2's pool, reclaiming the connections that cancelled requests leave behind.

    httpcore2 1.0.9 loses a connection for good when a request is cancelled after the pool gave it a
    new connection and before that connection marked itself active (the ``_state_lock`` acquire in
    ``AsyncHTTP11Connection.handle_async_request``): the connection stays ``NEW``, neither idle nor
    closed nor available, holding its socket and one of the pool's slots (encode/httpcore2#1093 and
    #1099, unreleased). Every request the pool still knows names its connection, so a connection
    that is not idle, not closed and named by no request is such an orphan: it is closed here.
    """

    def _assign_requests_to_connections(self) -> list[httpcore2.AsyncConnectionInterface]:
        owned = {id(request.connection) for request in self._requests if request.connection is not None}
        orphans = [
            connection
            for connection in self._connections
            if id(connection) not in owned and not connection.is_idle() and not connection.is_closed()
        ]
        for connection in orphans:
            self._connections.remove(connection)
        return orphans + super()._assign_requests_to_connections()

    def create_connection(self, origin: httpcore2.Origin) -> httpcore2.AsyncConnectionInterface:
        if self._proxy is not None:
            return super().create_connection(origin)
        return _SDKHTTPConnection(
            origin=origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            http1=self._http1,
            http2=self._http2,
            retries=self._retries,
            local_address=self._local_address,
            uds=self._uds,
            network_backend=self._network_backend,
            socket_options=self._socket_options,
        )

    async def _close_connections(self, closing: list[httpcore2.AsyncConnectionInterface]) -> None:
        # Called twice per request, nearly always with nothing to close: skip the shielded scope.
        if closing:
            await super()._close_connections(closing)


#: The stock pool's settings, as httpcore2 1.0 keeps them: constructor argument -> attribute.
_POOL_SETTINGS = {
    "ssl_context": "_ssl_context",
    "max_connections": "_max_connections",
    "max_keepalive_connections": "_max_keepalive_connections",
    "keepalive_expiry": "_keepalive_expiry",
    "http1": "_http1",
    "http2": "_http2",
    "retries": "_retries",
    "local_address": "_local_address",
    "uds": "_uds",
    "socket_options": "_socket_options",
}


def use_asyncio_backend(transport: httpx2.AsyncBaseTransport) -> bool:
    """Give httpx2's own transport an :class:`SDKConnectionPool` on :class:`AsyncioBackend`; True if done.

    Only an ``httpx2.AsyncHTTPTransport`` over a plain, unused ``httpcore2.AsyncConnectionPool`` (no
    proxy) is changed; the new pool has the stock one's settings. httpx2 keeps the pool in ``_pool``
    and httpcore2 its settings in the attributes above (httpx2 0.18-0.28, httpcore2 1.0; the SDK pins
    httpx2 below 0.29). If any is missing, the stock pool stays (a test checks they are there).
    """
    pool = getattr(transport, "_pool", None)
    if type(transport) is not httpx2.AsyncHTTPTransport or type(pool) is not httpcore2.AsyncConnectionPool:
        return False
    if pool.connections or getattr(pool, "_proxy", None) is not None:
        return False
    try:
        settings = {name: getattr(pool, attribute) for name, attribute in _POOL_SETTINGS.items()}
    except AttributeError:
        return False
    transport._pool = SDKConnectionPool(**settings, network_backend=AsyncioBackend())
    return True
