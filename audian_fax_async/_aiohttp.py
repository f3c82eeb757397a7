"""``AiohttpTransport``: an httpx2 transport on aiohttp's connection pool (the ``aiohttp`` extra).

Each request goes to one lazily created ``aiohttp.ClientSession`` through httpx2's public transport
interface; the body comes back as the chunks aiohttp reads, so everything above the transport
(redirects, retries, resume, checks) stays the SDK's own.

What matters most is the error mapping: ``FaxClient`` retries a creating POST only when the request
never left (``httpx2.ConnectError``, ``ConnectTimeout``, ``PoolTimeout``). So only errors that aiohttp
raises *before* writing the request map to those; everything else, and anything unknown, maps to
an error that means "it may have been sent". :func:`map_error` is that table, pure and tested alone.

aiohttp is imported when a transport is constructed, never when this module is.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import httpx2

from ._config import DEFAULT_LIMITS
from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport", "client_timeout", "map_error"]

_INSTALL_HINT = 'AiohttpTransport needs aiohttp: pip install "audian-fax-async[aiohttp]"'
_ASYNCIO_ONLY = "AiohttpTransport runs on asyncio (or uvloop) only; on trio, use FaxClient's default transport"
# aiohttp adds these when a request lacks them; httpx2 always sets the ones it wants (or leaves them
# out on purpose), so skipping them sends httpx2's headers as they are. Content-Length is not in the
# list: aiohttp still adds "Content-Length: 0" to a body-less DELETE (httpx2 sends none), harmless.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
#: aiohttp's read buffer per connection. A connection stops reading once twice this waits unread;
#: at aiohttp's default (64 KiB) a fast download pauses and resumes its socket on nearly every read.
READ_BUFSIZE = 256 * 1024


def _import_aiohttp() -> None:
    try:
        import aiohttp  # noqa: F401 - only whether it imports
    except ImportError:
        raise ConfigurationError(_INSTALL_HINT) from None


def _running_on_trio() -> bool:
    """Whether the calling thread runs a trio loop (trio is never imported here just to ask)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def map_error(exc: Exception, *, sent: bool) -> httpx2.TransportError:
    """The httpx2 error that stands for an aiohttp (or socket) error.

    ``sent=False`` while the request is under way (connecting, writing, waiting for the status line):
    the error's type tells whether anything could have been written. ``sent=True`` while the body is
    read: the request certainly arrived. Only errors that aiohttp raises before it writes a byte map
    to the "never sent" errors; anything else maps to one that ``FaxClient`` reads as "may have been
    sent", so a non-idempotent POST is never repeated on a guess.
    """
    import aiohttp

    message = str(exc) or type(exc).__name__
    if not sent:
        # Opening a connection or waiting for a free one in the pool: aiohttp raises both as
        # ConnectionTimeoutError, so a pool wait cannot be told from a slow connect (both never sent).
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return httpx2.ConnectTimeout(message)
        # DNS, refused, unreachable, TLS and certificate errors, a proxy that cannot be reached or
        # refuses the CONNECT tunnel, a certificate fingerprint mismatch: all before the request.
        if isinstance(
            exc, aiohttp.ClientConnectorError | aiohttp.ClientHttpProxyError | aiohttp.ServerFingerprintMismatch
        ):
            return httpx2.ConnectError(message)
        if isinstance(exc, aiohttp.NonHttpUrlClientError | aiohttp.InvalidURL):
            return httpx2.UnsupportedProtocol(message)
    # From here on the request may have been written (or we cannot tell): never "not sent".
    if isinstance(exc, TimeoutError):  # SocketTimeoutError: no byte within the read timeout
        return httpx2.ReadTimeout(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # The connection closed after (part of) the request went out: httpx-aiohttp reads this as a
        # connect timeout, which would let a creating POST be sent twice.
        return httpx2.RemoteProtocolError(f"the server closed the connection without a complete response ({message})")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        # A body shorter than its Content-Length ("Response payload is not completed"), broken
        # chunked encoding, a malformed status line or headers.
        return httpx2.RemoteProtocolError(message)
    return httpx2.ReadError(message)  # ClientOSError (reset, broken pipe) and whatever else


def client_timeout(timeouts: Mapping[str, float | None] | None) -> aiohttp.ClientTimeout:
    """httpx2's per-request timeouts (``request.extensions["timeout"]``) as an ``aiohttp.ClientTimeout``.

    * ``sock_connect`` = httpx2 ``connect``: opening one TCP (and TLS) connection.
    * ``connect`` = ``pool + connect``: aiohttp's ``connect`` spans waiting for a free connection of
      the pool *and* opening it, so it gets both budgets (none when either is unbounded).
    * ``sock_read`` = httpx2 ``read``: the longest wait for the next bytes, from the request being sent
      to the last byte of the body (paused while the caller does not read).
    * ``total`` is never set: httpx2 has no whole-request timeout, and a long download must not hit one.
    * httpx2 ``write`` has no aiohttp counterpart; a stalled upload is bounded by ``sock_read`` only
      (the SDK's request bodies are small JSON documents).
    """
    if not timeouts:
        return _client_timeout(None, None, None)
    return _client_timeout(timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool"))


@functools.lru_cache(maxsize=32)
def _client_timeout(connect: float | None, read: float | None, pool: float | None) -> aiohttp.ClientTimeout:
    import aiohttp

    acquire = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport on aiohttp: the same ``FaxClient`` on aiohttp's connection pool.

    ::

        from audian_fax_async import AiohttpTransport, FaxClient

        async with FaxClient(transport=AiohttpTransport()) as client:
            async with client.received.download_all("faxes/") as outcomes:
                async for outcome in outcomes:
                    print(outcome.kind, outcome.path)

    Every download guarantee holds (byte counts, resume with ``Range``, atomic files, the key kept
    from other origins), and connection errors keep their meaning: a request that may have reached
    the API is reported with ``request_sent=True``, so a creating POST is not repeated.

    Needs the ``aiohttp`` extra and asyncio or uvloop: aiohttp does not run on trio, so constructing
    or using the transport there raises :class:`ConfigurationError`. HTTP/1.1 only. The
    ``aiohttp.ClientSession`` is created on the first request, inside the running loop: at most
    ``limits.max_connections`` connections (``max_keepalive_connections`` has no aiohttp
    counterpart), idle ones closed after ``limits.keepalive_expiry``; no cookie jar, no automatic
    decompression, no redirects (the client follows them itself). ``verify`` is an ``SSLContext``,
    ``True`` (a verifying context as httpx2 builds it: the OS trust store, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``) or ``False``. ``trust_env=True`` lets aiohttp read proxies from
    ``HTTP(S)_PROXY`` and credentials from ``.netrc``. ``read_bufsize`` is aiohttp's read buffer per
    connection (:data:`READ_BUFSIZE`).

    An injected ``session`` is used as it is (its cookie jar, default headers and connector included)
    and never closed by :meth:`aclose`.

    One difference from httpx2's own transport: when a server drops a kept-alive connection before
    answering, aiohttp itself sends an idempotent request (GET, HEAD, PUT, DELETE) once more before it
    reports the error; it never does so for a POST.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx2.Limits = DEFAULT_LIMITS,
        trust_env: bool = False,
        session: aiohttp.ClientSession | None = None,
        read_bufsize: int = READ_BUFSIZE,
    ) -> None:
        _import_aiohttp()
        if _running_on_trio():
            raise ConfigurationError(_ASYNCIO_ONLY)
        if read_bufsize < 1:
            raise ConfigurationError(f"read_bufsize must be at least 1 byte, got {read_bufsize}")
        self._read_bufsize = read_bufsize
        self._verify = verify
        self._limits = limits
        self._trust_env = trust_env
        self._session = session
        self._own_session = session is None
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._closed:
            raise RuntimeError("This AiohttpTransport is closed.")
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # trio, or no loop at all
            raise ConfigurationError(_ASYNCIO_ONLY) from None
        tls = httpx2.create_ssl_context() if self._verify is True else self._verify
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,  # 0: no limit, as None is for httpx2
            limit_per_host=0,
            keepalive_timeout=self._limits.keepalive_expiry,
            ssl=tls,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=self._trust_env,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=_client_timeout(None, None, None),
            requote_redirect_url=False,
            read_bufsize=self._read_bufsize,
        )
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        import aiohttp
        import yarl

        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx2.UnsupportedProtocol(f"AiohttpTransport supports http and https, not {url.scheme!r}: {url}")
        session = self._session or self._open_session()
        encoding = request.headers.encoding
        headers = [(name.decode(encoding), value.decode(encoding)) for name, value in request.headers.raw]
        data: bytes | httpx2.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx2.RequestNotRead:
            # A streamed body: aiohttp chunks it itself and refuses a Transfer-Encoding header beside it.
            if not isinstance(request.stream, httpx2.AsyncByteStream):
                raise RuntimeError("AiohttpTransport needs an async request body") from None
            data = request.stream
            headers = [(name, value) for name, value in headers if name.lower() != "transfer-encoding"]
        extensions: Mapping[str, Any] = request.extensions
        try:
            response = await session.request(
                request.method,
                yarl.URL(str(url), encoded=True),  # httpx2 has already percent-encoded it
                headers=headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                timeout=client_timeout(extensions.get("timeout")),
                server_hostname=extensions.get("sni_hostname"),
            )
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            raise map_error(exc, sent=False) from exc
        response_extensions = {"http_version": b"HTTP/1.0" if response.version == (1, 0) else b"HTTP/1.1"}
        if response.reason:
            response_extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx2.Response(
            response.status,
            headers=response.raw_headers,
            stream=_ResponseBody(response),
            request=request,
            extensions=response_extensions,
        )

    async def aclose(self) -> None:
        """Close the session and its connections, unless it was injected. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._own_session:
            with anyio.CancelScope(shield=True):  # a cancelled close would leave sockets open
                await session.close()


class _ResponseBody(httpx2.AsyncByteStream):
    """The body as aiohttp reads it; ``aclose`` gives the connection back or drops it."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import aiohttp

        # The chunks as aiohttp reads them (no re-chunking), one try around the whole loop.
        read = self._response.content.readany
        try:
            while chunk := await read():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise map_error(exc, sent=True) from exc

    async def aclose(self) -> None:
        response = self._response
        content = response.content
        if content.is_eof() and content.exception() is None:
            response.release()  # read to the end: the connection goes back to the pool
        else:
            response.close()  # unread bytes would poison the next request: drop the connection
