"""``FaxClient``: configuration, the one pooled httpx2 client, and the send loop with retries."""

from __future__ import annotations

import datetime
import functools
import json as _json
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx2

from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_CONCURRENT_DOWNLOADS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    account_id,
    mask_key,
    resolve_api_key,
    resolve_base_url,
)
from ._converter import structure
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    ConfigurationError,
    InvalidRequestError,
    RateLimitError,
    ValidationError,
    excerpt,
    find_request_id,
    status_error_class,
)
from ._limiter import DownloadLimiter, acquire_fast, default_limiter
from ._retry import RetryPolicy, call_with_retries, parse_retry_after
from ._threads import on_asyncio
from ._version import __version__

if TYPE_CHECKING:
    from .resources.numbers import Numbers
    from .resources.received import Received
    from .resources.routing import Routing
    from .resources.webhooks import Webhooks

__all__ = ["AUTH_HEADER", "FaxClient", "close_response", "drop_stream"]

logger = logging.getLogger("audian_fax_async")
_httpx_logger = logging.getLogger("httpx2")
T = TypeVar("T")

AUTH_HEADER = "X-Auth-Token"
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
#: An API path that httpx2 keeps exactly as written: unreserved characters, "/" and %XX escapes (what
#: ``fax_path`` and the other resource paths produce), so its URL can be made without parsing it.
_PLAIN_PATH = re.compile(r"(?:[A-Za-z0-9._~/-]|%[0-9A-F]{2})*")
#: Methods for which httpx2 adds no Content-Length to a request without a body.
_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
_NO_BODY = httpx2.ByteStream(b"")
#: Merged header sets kept per client (one per distinct ``headers`` argument; resumes add more).
_HEADER_SETS = 16


class FaxClient:
    """An async client for the Audian Receive Fax API.

    ::

        async with FaxClient() as client:            # key from AUDIAN_API_KEY
            page = await client.received.list(limit=20)
            async for fax in client.received.iter(status="received"):
                await client.received.download(fax.id, "faxes/")

    The API key comes from ``api_key`` or the ``AUDIAN_API_KEY`` environment variable and is sent
    as the ``X-Auth-Token`` header, to the API's origin only (never to a host a redirect points to).
    ``base_url`` comes from the argument, ``AUDIAN_BASE_URL``, or ``https://api.audian.com:8443/v2``.

    Retries (connection errors, timeouts, 408, 429, 5xx) follow ``retry_policy``, whose count an
    explicit ``max_retries`` overrides (default 3); requests that create something are retried
    only when they never reached the server. Downloads hold a slot of ``limiter`` (by default one
    shared by every client of the process, 10 per account), and at most
    ``max_concurrent_downloads`` from this client.

    An injected ``http_client`` is used as is and never closed by this client. Works on asyncio
    and trio.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | httpx2.URL | None = None,
        timeout: float | httpx2.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        http_client: httpx2.AsyncClient | None = None,
        limiter: DownloadLimiter | None = None,
        max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_key = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self._origin = (self.base_url.scheme, self.base_url.host, self.base_url.port)
        self._base_str = str(self.base_url)
        # httpx2's parsed form of base_url (a NamedTuple), from which url_for() makes the URL of a plain
        # path without parsing it again; None if httpx2's internals ever change shape.
        reference = getattr(self.base_url, "_uri_reference", None)
        self._base_ref: Any = reference if hasattr(reference, "_replace") and hasattr(reference, "path") else None
        if not 1 <= max_concurrent_downloads <= DEFAULT_MAX_CONCURRENT_DOWNLOADS:
            raise ConfigurationError(
                f"max_concurrent_downloads must be between 1 and {DEFAULT_MAX_CONCURRENT_DOWNLOADS} "
                "(the account's limit)"
            )
        # An explicit max_retries wins over retry_policy's own count (it used to be ignored beside a policy).
        if max_retries is not None and (isinstance(max_retries, bool) or not 0 <= max_retries <= 100):
            raise ConfigurationError(f"max_retries must be an integer from 0 to 100, got {max_retries!r}")
        policy = retry_policy or RetryPolicy(max_retries=DEFAULT_MAX_RETRIES)
        self.retry_policy = policy.with_max_retries(max_retries)
        self.max_concurrent_downloads = max_concurrent_downloads
        self.limiter: DownloadLimiter = limiter if limiter is not None else default_limiter()
        self.account = account_id(self._api_key, self.base_url)
        self._headers = {"User-Agent": f"audian-fax-async/{__version__}", "Accept": "application/json"}
        if default_headers:
            if any(name.lower() == AUTH_HEADER.lower() for name in default_headers):
                raise ConfigurationError("pass the key as api_key, not in default_headers")
            self._headers.update(default_headers)
        self._own_http = http_client is None
        self._http = http_client or _HTTPClient(
            timeout=timeout if not isinstance(timeout, int | float) else httpx2.Timeout(timeout),
            limits=DEFAULT_LIMITS,
            follow_redirects=False,
            transport=transport,
            verify=_shared_ssl_context(),
        )
        # The SDK's own client has no defaults of its own beyond httpx2's headers and the timeout: its
        # requests are built directly from these, as httpx2 would build them (httpx2's build_request
        # re-parses the URL and re-merges everything: 66 instead of 28 µs per request).
        self._defaults_of: httpx2.AsyncClient | None = None  # the client _base_headers were taken from
        self._base_headers = httpx2.Headers()
        self._header_sets: dict[tuple[Any, ...], tuple[httpx2.Headers, httpx2.Headers]] = {}
        self._timeout_ext: dict[str, float | None] = {}
        self._closed = False
        # A transport given to the SDK's own client: requests go straight to it (see _send_raw).
        self._direct: httpx2.AsyncBaseTransport | None = transport if http_client is None else None
        # httpx2's own pool (no transport given): requests enter it one at a time (see _send_raw).
        self._pool_gate: Any = None if (http_client is not None or transport is not None) else False
        self._client_slots: Any = None  # per-client cap, created lazily inside an event loop
        self._resources: dict[str, Any] = {}
        _import_resources()

    # -- resources ---------------------------------------------------------------------------

    @property
    def received(self) -> Received:
        """Received faxes: list, iterate, get, update, archive, download."""
        from .resources.received import Received

        return self._resource("received", Received)

    @property
    def webhooks(self) -> Webhooks:
        """Webhook subscriptions for incoming-fax events."""
        from .resources.webhooks import Webhooks

        return self._resource("webhooks", Webhooks)

    @property
    def routing(self) -> Routing:
        """Routing rules for incoming faxes (email or webhook)."""
        from .resources.routing import Routing

        return self._resource("routing", Routing)

    @property
    def numbers(self) -> Numbers:
        """Dedicated fax numbers."""
        from .resources.numbers import Numbers

        return self._resource("numbers", Numbers)

    def _resource(self, name: str, cls: Callable[[FaxClient], T]) -> T:
        resource = self._resources.get(name)
        if resource is None:
            resource = self._resources[name] = cls(self)
        return resource

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._ensure_open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless it was injected). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._own_http:
            await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<FaxClient base_url={str(self.base_url)!r} api_key={mask_key(self._api_key)!r}>"

    def _ensure_open(self) -> None:
        if self._closed:
            raise ClientClosedError("This FaxClient is closed; create a new one.")

    # -- requests ----------------------------------------------------------------------------

    def url_for(self, path: str) -> httpx2.URL:
        """The absolute URL of an API path such as ``fax/received`` (relative to ``base_url``)."""
        if path.startswith(("http://", "https://")):
            return httpx2.URL(path)
        path = path.lstrip("/")
        base = self._base_ref
        if base is not None and _PLAIN_PATH.fullmatch(path) and "/." not in "/" + path and "//" not in path:
            # Nothing in the path for httpx2 to quote or normalise (no dot segments): the base's parsed
            # form with the path appended is the URL httpx2 would parse, in 1 instead of 15-20 µs.
            url = httpx2.URL.__new__(httpx2.URL)
            url._uri_reference = base._replace(path=base.path + path)
            return url
        # Plain concatenation (base_url always ends in "/"): URL.join costs about 3x as much per request.
        return httpx2.URL(self._base_str + path)

    def _same_origin(self, url: httpx2.URL) -> bool:
        return (url.scheme, url.host, url.port) == self._origin

    def build_request(
        self,
        method: str,
        url: str | httpx2.URL,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx2.Request:
        target = url if isinstance(url, httpx2.URL) else self.url_for(url)
        clean_params = {k: v for k, v in params.items() if v is not None} if params else None
        if not self._own_http:  # an injected client's own defaults (headers, params, cookies) apply
            merged = httpx2.Headers(self._headers)  # case-insensitive: "accept" replaces "Accept"
            if headers:
                merged.update(headers)
            if self._same_origin(target):
                merged[AUTH_HEADER] = self._api_key
            return self._http.build_request(method, target, params=clean_params or None, json=json, headers=merged)
        if self._defaults_of is not self._http:
            self._base_headers = httpx2.Headers(self._http.headers)
            self._base_headers.update(self._headers)
            self._timeout_ext = self._http.timeout.as_dict()
            self._header_sets.clear()
            self._defaults_of = self._http
        # Merging httpx2's defaults, the client's and the call's headers costs ~25 µs; the same few
        # sets recur (every download asks with the same headers), so each merged set is kept, with
        # the Host header httpx2 would put first for the API's own origin.
        same_origin = self._same_origin(target)
        key = (same_origin, *headers.items()) if headers else (same_origin,)
        kept = self._header_sets.get(key)
        if kept is None:
            merged = self._base_headers.copy()
            if headers:
                merged.update(headers)
            if same_origin:
                merged[AUTH_HEADER] = self._api_key
            # Only the API's own origin takes the fast path below; its Host is the same for every request.
            hosted = (
                httpx2.Headers([(b"Host", target.netloc), *merged.raw])
                if same_origin and "Host" not in merged
                else merged
            )
            kept = (merged, hosted)
            if len(self._header_sets) < _HEADER_SETS:
                self._header_sets[key] = kept
        extensions = {"timeout": dict(self._timeout_ext)}
        if same_origin and json is None and not clean_params and method in _BODYLESS:
            # What httpx2 would build (Host first, no body, no Content-Length), without its header
            # re-normalising and body encoding: the request of every download.
            request = httpx2.Request(method, target, headers=kept[1], stream=_NO_BODY, extensions=extensions)
            request.read()
            return request
        return httpx2.Request(  # it copies the headers it is given: the kept set is never changed
            method,
            target,
            params=clean_params or None,
            json=json,
            headers=kept[0],
            extensions=extensions,
        )

    def _redirect(self, request: httpx2.Request, response: httpx2.Response) -> httpx2.Request:
        """The next request of a redirect: the key only goes back to the API's own origin."""
        location = response.headers.get("Location")
        if not location:
            raise self._status_error(request, response, secret=self._api_key)
        target = request.url.join(location)
        method = request.method
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method = "GET"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        headers.pop(AUTH_HEADER, None)
        headers = {k: v for k, v in headers.items() if k.lower() != AUTH_HEADER.lower()}
        if self._same_origin(target):
            headers[AUTH_HEADER] = self._api_key
        content = request.content if method == request.method and method != "GET" else None
        if content is None:
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        return httpx2.Request(method, target, headers=headers, content=content)

    async def send(self, request: httpx2.Request, *, stream: bool = False) -> httpx2.Response:
        """Send once (following redirects safely) and raise a typed error for an error status.

        With ``stream=True`` the body is not read; the caller must ``aclose()`` the response.
        """
        self._ensure_open()
        for _ in range(_MAX_REDIRECTS + 1):
            response = await self._send_raw(request, stream=stream)
            if response.status_code in _REDIRECT_STATUS and "Location" in response.headers:
                await close_response(response)
                request = self._redirect(request, response)
                continue
            if response.status_code >= 400:
                try:
                    if stream:
                        await self._read_capped(response)
                finally:
                    await close_response(response)
                raise self._status_error(request, response, secret=self._api_key)
            if not stream:
                drop_stream(response)  # read and closed: nothing more comes from its stream
            return response
        raise APIConnectionError(
            f"Too many redirects (more than {_MAX_REDIRECTS})",
            method=request.method,
            url=_safe_url(request.url),
        )

    async def _read_capped(self, response: httpx2.Response, cap: int = 64 * 1024) -> None:
        """Read at most ``cap`` bytes of an error body (an error page may be huge)."""
        chunks = bytearray()
        try:
            async for chunk in response.aiter_raw():
                chunks += chunk
                if len(chunks) >= cap:
                    break
        except httpx2.HTTPError:
            pass
        response._content = bytes(chunks[:cap])

    async def _send_raw(self, request: httpx2.Request, *, stream: bool) -> httpx2.Response:
        try:
            if self._direct is not None:
                return await self._send_direct(self._direct, request, stream=stream)
            own_pool = self._own_pool()
            if own_pool is not None:
                return await self._send_direct(own_pool, request, stream=stream)
            if self._pool_gate is None:
                return await self._http.send(request, stream=stream, follow_redirects=False)
            return await self._send_gated(request, stream=stream)
        except httpx2.HTTPError as exc:
            raise self.map_transport_error(exc, request) from exc

    @staticmethod
    async def _send_direct(
        transport: httpx2.AsyncBaseTransport, request: httpx2.Request, *, stream: bool
    ) -> httpx2.Response:
        """Send through the given transport, without ``httpx2.AsyncClient.send`` around it.

        The SDK's own client has no auth, event hooks, cookies or proxy mounts (a given transport
        gets none from the environment; the SDK's own pool is used so only without proxies), and
        the SDK follows redirects itself: what the client's send adds is three coroutine layers per
        request and an async generator per chunk, about 7% of a bulk download's event-loop time on
        ``AiohttpTransport``, and 1.06x -> 1.14x a bare httpx2 loop on httpx2's own transport
        (benchmarks/README.md). The ``httpx2`` logger's INFO line per request is written here as
        httpx2 writes it.
        """
        start = time.perf_counter()
        response = await transport.handle_async_request(request)
        response.request = request
        if _httpx_logger.isEnabledFor(logging.INFO):
            _httpx_logger.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
            response.elapsed = datetime.timedelta(seconds=time.perf_counter() - start)
        return response

    def _own_pool(self) -> httpx2.AsyncBaseTransport | None:
        """httpx2's transport on the SDK's pool, where requests may go straight to it, else None.

        That is on asyncio with no proxy mounted: the SDK's pool takes its connection locks without
        passing round the loop, so a request holds its connection before any other can enter, and
        the gate of :meth:`_send_gated` has nothing left to prevent (one pass into the pool per
        request without it, measured; 1.06x -> 1.14x a bare httpx2 loop). Under trio its locks
        checkpoint, and the gate stays.
        """
        http = self._http
        if not isinstance(http, _HTTPClient) or http.sdk_pool_transport is None or getattr(http, "_mounts", True):
            return None
        return http.sdk_pool_transport if on_asyncio() else None

    async def _send_gated(self, request: httpx2.Request, *, stream: bool) -> httpx2.Response:
        """Send through httpx2's own pool, letting requests into it one at a time.

        httpcore2 hands every waiting request the *first* idle connection: two requests that enter
        the pool in the same loop iteration get the same one, and the second fails with
        ``ConnectionNotAvailable`` and goes round the pool again (3.1 passes per download measured,
        each scanning every connection). Holding a per-client lock from entering the pool until
        httpcore2 reports the connection in use (its ``trace`` extension: the request's headers being
        sent, or a new connection being opened) makes every pass the last. Nothing waits on the
        network under the lock.
        """
        import anyio

        gate = self._pool_gate
        if gate is False:
            gate = self._pool_gate = anyio.Lock()
        outer = request.extensions.get("trace")
        held = True

        async def trace(name: str, info: dict[str, Any]) -> None:
            nonlocal held
            if held and name.endswith((".send_request_headers.started", ".connect_tcp.started")):
                held = False
                gate.release()
            if outer is not None:
                await outer(name, info)

        try:
            gate.acquire_nowait()  # no loop trip when nobody is entering the pool
            entered = True
        except anyio.WouldBlock:
            entered = False
        if not entered:  # wait outside the except block (it would keep its traceback alive meanwhile)
            # Waiting to enter the pool is waiting for the pool: its timeout applies here too.
            wait = (request.extensions.get("timeout") or {}).get("pool")
            with anyio.move_on_after(wait if wait is not None else math.inf) as waited:
                await gate.acquire()
            if waited.cancelled_caught:
                raise httpx2.PoolTimeout(f"no connection became free within {wait} s") from None
        request.extensions = {**request.extensions, "trace": trace}
        try:
            return await self._http.send(request, stream=stream, follow_redirects=False)
        finally:
            if held:
                held = False
                gate.release()

    @staticmethod
    def map_transport_error(exc: BaseException, request: httpx2.Request) -> Exception:
        """An httpx2 error as the SDK's typed error (the key is never part of the message)."""
        method, url = request.method, _safe_url(request.url)
        never_sent = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout)
        if isinstance(exc, httpx2.UnsupportedProtocol):
            return ConfigurationError(f"Unsupported URL for {method} {url}: {exc}")
        if isinstance(exc, httpx2.TimeoutException):
            return APITimeoutError(
                f"{type(exc).__name__} on {method} {url}", method=method, url=url, request_sent=not never_sent
            )
        return APIConnectionError(
            f"{type(exc).__name__} on {method} {url}: {exc}".rstrip(": "),
            method=method,
            url=url,
            request_sent=not never_sent,
        )

    @staticmethod
    def _status_error(request: httpx2.Request, response: httpx2.Response, *, secret: str | None = None) -> APIStatusError:
        try:
            text = response.text
        except (httpx2.ResponseNotRead, UnicodeDecodeError):
            text = ""
        if secret:  # an API that echoes the key must not put it into messages and logs
            text = text.replace(secret, mask_key(secret))
        code = api_message = None
        try:
            payload = _json.loads(text) if text else None
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            err = payload.get("error")
            if isinstance(err, dict):
                code = err.get("code") if isinstance(err.get("code"), str) else None
                msg = err.get("message")
                api_message = msg if isinstance(msg, str) else None
            elif isinstance(err, str):
                api_message = err
            if api_message is None and isinstance(payload.get("message"), str):
                api_message = payload["message"]
        status = response.status_code
        cls = status_error_class(status)
        url = _safe_url(request.url)
        reason = response.reason_phrase or ""
        detail = api_message or excerpt(text, 200)
        message = f"{status} {reason} for {request.method} {url}" + (f": {detail}" if detail else "")
        kwargs: dict[str, Any] = {
            "status_code": status,
            "method": request.method,
            "url": url,
            "body": excerpt(text),
            "code": code,
            "api_message": api_message,
            "request_id": find_request_id(response.headers),
            "response": response,
        }
        if cls is RateLimitError:
            return RateLimitError(message, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kwargs)
        return cls(message, **kwargs)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        idempotent: bool | None = None,
    ) -> httpx2.Response:
        """Call any API path (the escape hatch for what the SDK does not wrap yet).

        Returns the read ``httpx2.Response``; an error status raises the typed error. GET, HEAD,
        PUT and DELETE are retried; other methods only when they never reached the server,
        unless ``idempotent=True``::

            response = await client.request("GET", "fax/received", params={"limit": 5})
            data = response.json()
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        policy = self.retry_policy.with_max_retries(max_retries)

        async def once() -> httpx2.Response:
            return await self.send(self.build_request(method, path, params=params, json=json, headers=headers))

        return await call_with_retries(once, policy, idempotent=idempotent, operation=f"{method} {path}")

    async def request_model(
        self,
        method: str,
        path: str,
        cls: type[T],
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        max_retries: int | None = None,
        idempotent: bool | None = None,
        envelope: str | None = None,
    ) -> T:
        """Call a path and structure its JSON body (or ``body[envelope]``) as ``cls``."""
        response = await self.request(
            method, path, params=params, json=json, max_retries=max_retries, idempotent=idempotent
        )
        data = decode_json(response)
        if envelope is not None:
            if not isinstance(data, dict) or envelope not in data:
                raise ValidationError(f"response has no {envelope!r} field", path=f"$.{envelope}")
            data = data[envelope]
        return structure(data, cls)

    # -- downloads (slots) -------------------------------------------------------------------

    def download_slot(self) -> AbstractAsyncContextManager[None]:
        """Hold one of this client's download slots and one of the account's limiter slots."""
        return _DownloadSlot(self)


class _DownloadSlot:
    """One of the client's download slots, then one of the account's (a class, not a generator:
    it is on every download's path, and each yield there costs the slot a loop iteration)."""

    __slots__ = ("_account_slot", "_client", "_client_slots")

    def __init__(self, client: FaxClient) -> None:
        self._client = client
        self._client_slots: Any = None
        self._account_slot: AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> None:
        client = self._client
        client._ensure_open()
        slots = client._client_slots
        if slots is None:
            import anyio

            slots = client._client_slots = anyio.CapacityLimiter(client.max_concurrent_downloads)
        await acquire_fast(slots)
        try:
            account_slot = client.limiter.acquire(client.account)
            await account_slot.__aenter__()
        except BaseException:
            slots.release()
            raise
        self._client_slots, self._account_slot = slots, account_slot

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._account_slot is not None
        try:
            await self._account_slot.__aexit__(exc_type, exc, tb)
        finally:
            self._client_slots.release()


#: What the stream of a closed response is replaced with (see :func:`close_response`).
_SPENT_STREAM = httpx2.ByteStream(b"")


def drop_stream(response: httpx2.Response) -> None:
    """Let go of a closed response's stream, breaking the reference cycle httpx2 leaves.

    ``httpx2.AsyncClient`` wraps every response's stream in an object that refers back to the
    response: a cycle, so a finished response, its request and everything they hold (about 45
    objects per download) waited for the garbage collector instead of being freed at once. With
    hundreds of downloads that meant more and longer collections, each one stalling the event loop
    (benchmarks/README.md, scenario 5). Once closed, the stream has nothing more to give.
    """
    if response.is_closed:
        response.stream = _SPENT_STREAM


async def close_response(response: httpx2.Response) -> None:
    """``response.aclose()``, then :func:`drop_stream`."""
    await response.aclose()
    drop_stream(response)


class _NoCookies(httpx2.Cookies):
    """A cookie store that keeps nothing: the API authenticates with a header, not a session cookie."""

    def extract_cookies(self, response: httpx2.Response) -> None:
        return None


class _HTTPClient(httpx2.AsyncClient):
    """The SDK's own ``httpx2.AsyncClient``: it keeps no cookies.

    httpx2 parses every response for ``Set-Cookie`` (two adapter objects and a ``CookieJar`` pass per
    response): about 5% of a bulk download's event-loop time, for cookies this API never uses. A
    client injected with ``http_client=`` is used as it is.
    """

    _no_cookies = _NoCookies()
    #: httpx2's own transport, once it runs on the SDK's pool (`_netbackend.use_asyncio_backend`).
    sdk_pool_transport: httpx2.AsyncBaseTransport | None = None

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        # httpx2's own transport (none given): its httpcore2 pool reads and writes through the SDK's
        # asyncio backend instead of anyio's streams (_netbackend.py: about 1.3x a bulk download).
        made = super()._init_transport(*args, **kwargs)
        if kwargs.get("transport") is None:
            # Imported here: httpcore2 (and with it anyio, and trio where installed) loads with the
            # first client's transport, as in httpx2 itself, not with ``import audian_fax_async``.
            from ._netbackend import use_asyncio_backend

            if use_asyncio_backend(made):
                self.sdk_pool_transport = made  # FaxClient sends straight to it on asyncio
        return made

    @property
    def cookies(self) -> httpx2.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise AttributeError("the SDK's HTTP client keeps no cookies (pass your own http_client= to use them)")


@functools.cache
def _import_resources() -> None:
    """Import the resource modules once, when the first client is made.

    ``import audian_fax_async`` stays light; a service makes its clients at start-up, and its first
    ``client.received`` call then finds them loaded. Importing them there instead, inside the event
    loop, stalled every other task of the process for about 50 ms (benchmarks/README.md, scenario 5).
    """
    from . import _durable
    from .resources import numbers, received, routing, webhooks  # noqa: F401

    _durable.preload()  # caio takes about 50 ms to import: not inside the first download_all


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every client, as httpx2 builds it (certifi, or SSL_CERT_FILE /
    SSL_CERT_DIR): building one loads the CA bundle, about 50 ms of CPU per client otherwise."""
    return httpx2.create_ssl_context()


def decode_json(response: httpx2.Response) -> Any:
    """The JSON body of a response, or a :class:`ValidationError` naming what is wrong."""
    try:
        return _json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        ctype = response.headers.get("content-type", "?")
        raise ValidationError(
            f"response to {response.request.method} {_safe_url(response.request.url)} is not valid JSON "
            f"(content-type {ctype}): {exc}; body starts {excerpt(response.text, 80)!r}",
            path="$",
        ) from None


def _safe_url(url: httpx2.URL) -> str:
    """The URL without userinfo (credentials never appear in messages)."""
    return str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)


def check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise InvalidRequestError(f"limit must be an integer from 1 to 100, got {limit!r}")
