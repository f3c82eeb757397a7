"""``FaxClient``: configuration, the one httpx2 client, and the one send path with retries."""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
import httpx2

from ._answers import (
    decode_json,
    read_capped,
    read_response,
    redirect_of,
    safe_url,
    status_error,
    transport_error,
)
from ._config import (
    AUTH_HEADER,
    DEFAULT_LIMITS,
    DEFAULT_MAX_CONCURRENT_DOWNLOADS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_DEADLINE,
    DEFAULT_TIMEOUT,
    account_id,
    check_default_headers,
    check_max_concurrent_downloads,
    check_max_retries,
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
    ResponseTooLargeError,
    ValidationError,
    find_request_id,
)
from ._limiter import DownloadLimiter, default_limiter
from ._options import NOT_GIVEN, NotGiven, TimeoutTypes, as_timeout
from ._response import record_response
from ._retry import RetryPolicy, call_with_retries, current_attempt
from ._telemetry import TelemetryOptions, telemetry_for
from ._version import __version__

if TYPE_CHECKING:
    from .resources.numbers import Numbers
    from .resources.received import Received
    from .resources.routing import Routing
    from .resources.webhooks import Webhooks

__all__ = ["AUTH_HEADER", "DefaultAsyncHttpClient", "FaxClient", "check_limit", "decode_json"]

logger = logging.getLogger("audian_fax_async")
T = TypeVar("T")

_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
#: How much of an error body is read (an error page may be huge; the message needs its start).
_ERROR_BODY_CAP = 64 * 1024
#: Methods that may be repeated without changing anything on the server.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


_tls_lock = threading.Lock()
_tls_default: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """httpx2's default TLS settings (``httpx2.create_ssl_context()``: the trust store, and
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set), built once per process and shared by the SDK's
    clients: building them loads the trust store, some 25 ms of blocking work that would otherwise
    stall the event loop at every ``FaxClient()``."""
    global _tls_default
    with _tls_lock:
        if _tls_default is None:
            _tls_default = httpx2.create_ssl_context()
        return _tls_default


class DefaultAsyncHttpClient(httpx2.AsyncClient):
    """An ``httpx2.AsyncClient`` with the SDK's defaults (its timeouts and pool limits, no cookies kept,
    redirects left to the SDK, the process's shared TLS settings), for the settings only a client of
    your own can have::

        tls = ssl.create_default_context(cafile="corporate-ca.pem")
        tls.load_cert_chain("client.pem", "client.key")       # mTLS
        http = DefaultAsyncHttpClient(proxy="http://proxy:3128", verify=tls)
        client = FaxClient(http_client=http)     # closing FaxClient leaves it open: close it yourself

    Every keyword of ``httpx2.AsyncClient`` is taken; the ones given win over the defaults.
    """

    def __init__(self, **kwargs: Any) -> None:
        if "verify" not in kwargs and "cert" not in kwargs and kwargs.get("trust_env", True):
            kwargs["verify"] = default_ssl_context()
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("limits", DEFAULT_LIMITS)
        kwargs.setdefault("follow_redirects", False)
        kwargs.setdefault("cookies", CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
        super().__init__(**kwargs)


class FaxClient:
    """An async client for the Audian Receive Fax API.

    ::

        async with FaxClient() as client:            # key from AUDIAN_API_KEY
            page = await client.received.list(limit=20)
            async for fax in client.received.iter(status="received"):
                await client.received.download(fax.id, "faxes/")

    ``timeout`` (default: connect 10 s, read 60 s, write 30 s, pool 30 s) is the SDK's own client's;
    given together with ``http_client`` it is applied to every request, else that client's own
    timeouts apply. Every method also takes ``timeout=``, ``max_retries=``, ``extra_headers=`` and
    ``extra_query=`` for that call alone (:class:`CallOptions`); :meth:`with_options` makes a copy
    with other defaults that shares this client's connection pool and download slots.

    The API key comes from ``api_key`` or the ``AUDIAN_API_KEY`` environment variable and is sent
    as the ``X-Auth-Token`` header, to the API's origin only (never to a host a redirect points to).
    ``base_url`` comes from the argument, ``AUDIAN_BASE_URL``, or ``https://api.audian.com:8443/v2``.

    Retries (connection errors, timeouts, 408, 429, 5xx) follow ``retry_policy``, whose count an
    explicit ``max_retries`` overrides (default 3); requests that create something are retried
    only when they never reached the server. Downloads hold a slot of ``limiter`` (by default one
    shared by every client of the process, 10 per account), and at most
    ``max_concurrent_downloads`` from this client.

    Every request goes through ``httpx2.AsyncClient.send``: the SDK's own client (built with
    ``transport`` if given), or ``http_client``, which is used as is (its proxies, TLS settings,
    event hooks, defaults) and never closed by this client. Runs on asyncio, uvloop and trio.

    Hostile or broken servers are bounded: a non-document answer larger than ``max_response_bytes``
    raises :class:`ResponseTooLargeError`; one attempt of a non-document call that takes longer than
    ``request_deadline`` seconds in all (a server dripping bytes) raises :class:`APITimeoutError`;
    ``download_deadline`` (off by default) bounds a whole document download, retries included.
    With the ``otel`` extra, calls are OpenTelemetry spans and metrics (README, "Tracing and metrics")
    on the global providers or those of ``telemetry``: a no-op until an OpenTelemetry SDK is set up.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | httpx2.URL | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | None = None,
        http_client: httpx2.AsyncClient | None = None,
        limiter: DownloadLimiter | None = None,
        max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        request_deadline: float | None = DEFAULT_REQUEST_DEADLINE,
        download_deadline: float | None = None,
        telemetry: TelemetryOptions | None = None,
    ) -> None:
        self._api_key = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self._origin = (self.base_url.scheme, self.base_url.host, self.base_url.port)
        check_max_concurrent_downloads(max_concurrent_downloads)
        check_max_retries(max_retries)
        if http_client is not None and not isinstance(http_client, httpx2.AsyncClient):
            raise ConfigurationError(
                f"http_client must be an httpx2.AsyncClient, got {type(http_client).__module__}."
                f"{type(http_client).__qualname__} (an httpx client: replace 'import httpx' with 'import httpx2')"
            )
        if transport is not None and not isinstance(transport, httpx2.AsyncBaseTransport):
            raise ConfigurationError(
                f"transport must be an httpx2.AsyncBaseTransport, got {type(transport).__module__}."
                f"{type(transport).__qualname__}"
            )
        if http_client is not None and transport is not None:
            raise ConfigurationError("pass either http_client= or transport=, not both (give the transport to it)")
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ConfigurationError(f"max_response_bytes must be a positive integer, got {max_response_bytes!r}")
        self.max_response_bytes = max_response_bytes
        self.request_deadline = _check_deadline("request_deadline", request_deadline)
        self.download_deadline = _check_deadline("download_deadline", download_deadline)
        policy = retry_policy or RetryPolicy(max_retries=DEFAULT_MAX_RETRIES)
        self.retry_policy = policy.with_max_retries(max_retries)
        self.max_concurrent_downloads = max_concurrent_downloads
        self.limiter: DownloadLimiter = limiter if limiter is not None else default_limiter()
        self.account = account_id(self._api_key, self.base_url)
        self._headers = httpx2.Headers({"User-Agent": f"audian-fax-async/{__version__}", "Accept": "application/json"})
        self._headers.update(check_default_headers(default_headers))
        self._own_http = http_client is None
        # Applied per request: a timeout given beside a client of the user's (or by with_options).
        self._timeout: httpx2.Timeout | NotGiven = (
            NOT_GIVEN if http_client is None or isinstance(timeout, NotGiven) else as_timeout(timeout)
        )
        # The API authenticates with a header: the SDK's own client keeps no cookies.
        self._http = http_client or DefaultAsyncHttpClient(
            timeout=DEFAULT_TIMEOUT if isinstance(timeout, NotGiven) else as_timeout(timeout), transport=transport
        )
        self._telemetry = telemetry_for(telemetry)  # shared by with_options() copies
        self.telemetry_options = telemetry
        """The ``telemetry`` given (None: the global providers), for the parts that report beside it."""
        self._closed = False
        self._parent: FaxClient | None = None  # the client a with_options() copy shares its pool with
        self._client_slots: anyio.CapacityLimiter | None = None  # made in the first download's loop
        self._resources: dict[str, Any] = {}

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
        return self._closed or (self._parent is not None and self._parent.is_closed)

    def with_options(
        self,
        *,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_concurrent_downloads: int | None = None,
    ) -> FaxClient:
        """A copy of this client with other defaults, sharing its connection pool, its limiter and
        so the account's download slots (a copy and its parent never hold more than the account's
        10 together). Closing the copy leaves the pool open; closing the parent closes it for both::

            patient = client.with_options(timeout=300, max_retries=8)
            await patient.received.download(fax_id, "faxes/")
        """
        copy = object.__new__(FaxClient)
        copy.__dict__.update(self.__dict__)
        copy._own_http, copy._closed, copy._parent = False, False, self
        copy._client_slots, copy._resources = None, {}
        if not isinstance(timeout, NotGiven):
            copy._timeout = as_timeout(timeout)
        copy.retry_policy = (retry_policy or self.retry_policy).with_max_retries(check_max_retries(max_retries))
        if default_headers:
            copy._headers = self._headers.copy()
            copy._headers.update(check_default_headers(default_headers))
        if max_concurrent_downloads is not None:
            copy.max_concurrent_downloads = check_max_concurrent_downloads(max_concurrent_downloads)
        return copy

    def __repr__(self) -> str:
        return f"<FaxClient base_url={safe_url(self.base_url)!r} api_key={mask_key(self._api_key)!r}>"

    def _ensure_open(self) -> None:
        if self.is_closed:
            raise ClientClosedError("This FaxClient is closed; create a new one.")

    # -- requests ----------------------------------------------------------------------------

    def url_for(self, path: str) -> httpx2.URL:
        """The absolute URL of an API path such as ``fax/received`` (relative to ``base_url``)."""
        if path.startswith(("http://", "https://")):
            return httpx2.URL(path)
        return httpx2.URL(str(self.base_url) + path.lstrip("/"))

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
        content: bytes | None = None,
        extensions: dict[str, Any] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> httpx2.Request:
        """A request to the API, built by the httpx2 client with the SDK's headers and, for the
        API's own origin only, the key. ``params`` whose value is None are left out; ``timeout``
        (else the client's), ``extra_headers`` and ``extra_query`` are a call's options."""
        target = url if isinstance(url, httpx2.URL) else self.url_for(url)
        merged = self._headers.copy()  # case-insensitive: "accept" replaces "Accept"
        if headers:
            merged.update(headers)
        if extra_headers:
            merged.update(extra_headers)
        if AUTH_HEADER in merged:
            del merged[AUTH_HEADER]
        if self._same_origin(target):
            merged[AUTH_HEADER] = self._api_key
        self._telemetry.inject(merged)  # traceparent, when a recording span is current
        query = {**params, **extra_query} if params and extra_query else params or extra_query
        clean = {k: v for k, v in query.items() if v is not None} if query else None
        if isinstance(timeout, NotGiven):
            timeout = self._timeout
        return self._http.build_request(
            method,
            target,
            params=clean or None,
            json=json,
            content=content,
            headers=merged,
            extensions=extensions,
            timeout=httpx2.USE_CLIENT_DEFAULT if isinstance(timeout, NotGiven) else as_timeout(timeout),
        )

    def _redirect(self, request: httpx2.Request, response: httpx2.Response) -> httpx2.Request:
        """The next request of a redirect (built again, so the key only goes to the API's own origin)."""
        method, target, headers, content = redirect_of(request, response)
        timeout = request.extensions.get("timeout")
        return self.build_request(
            method,
            target,
            headers=headers,
            content=content,
            extensions={"timeout": timeout} if timeout is not None else None,
        )

    async def send(self, request: httpx2.Request, *, stream: bool = False) -> httpx2.Response:
        """Send once (following redirects safely) and raise a typed error for an error status.

        With ``stream=True`` the body is not read; the caller must ``aclose()`` the response.
        """
        self._ensure_open()
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                started = time.perf_counter()
                response = await self._http.send(request, stream=True, follow_redirects=False)
            except httpx2.HTTPError as exc:
                raise self.map_transport_error(exc, request) from exc
            except (ValueError, OverflowError) as exc:  # an address the socket layer refuses (a bad port)
                raise APIConnectionError(
                    f"cannot send {request.method} {safe_url(request.url)}: {exc}",
                    method=request.method,
                    url=safe_url(request.url),
                    request_sent=False,
                ) from exc
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s -> %d %s in %.1f ms (request id %s, attempt %d)",
                    request.method,
                    request.url.path,
                    response.status_code,
                    response.reason_phrase,
                    (time.perf_counter() - started) * 1000,
                    find_request_id(response.headers),
                    current_attempt.get(),
                )
            try:
                if response.status_code in _REDIRECT_STATUS and "Location" in response.headers:
                    await response.aclose()
                    request = self._redirect(request, response)
                    continue
                if response.status_code >= 400:
                    body = await read_capped(response, _ERROR_BODY_CAP)
                    raise self._status_error(request, response, body)
                if stream:
                    return response
                try:
                    body = await read_capped(response, self.max_response_bytes + 1, tolerant=False)
                except httpx2.HTTPError as exc:
                    raise self.map_transport_error(exc, request) from exc
                if len(body) > self.max_response_bytes:
                    raise ResponseTooLargeError(
                        f"the answer to {request.method} {safe_url(request.url)} is larger than "
                        f"max_response_bytes={self.max_response_bytes}",
                        path="$",
                    )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
                raise
            await response.aclose()
            return read_response(response, request, body, started)
        raise APIConnectionError(
            f"Too many redirects (more than {_MAX_REDIRECTS})",
            method=request.method,
            url=safe_url(request.url),
        )

    #: An httpx2 error as the SDK's typed error (the key is never part of the message).
    map_transport_error = staticmethod(transport_error)

    def _status_error(self, request: httpx2.Request, response: httpx2.Response, body: bytes) -> APIStatusError:
        return status_error(request, response, body, secret=self._api_key, hint_v2="/v2/" not in self.base_url.path)

    def mask(self, text: str) -> str:
        """``text`` with the API key masked (for excerpts of bodies that might echo it)."""
        return text.replace(self._api_key, mask_key(self._api_key))

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
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
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
            idempotent = method in _IDEMPOTENT
        policy = self.retry_policy.with_max_retries(max_retries)

        deadline = self.request_deadline

        async def once() -> httpx2.Response:
            request = self.build_request(
                method,
                path,
                params=params,
                json=json,
                headers=headers,
                timeout=timeout,
                extra_headers=extra_headers,
                extra_query=extra_query,
            )
            with anyio.move_on_after(deadline if deadline is not None else math.inf):
                return await self.send(request)
            url = safe_url(request.url)
            raise APITimeoutError(
                f"no complete answer to {method} {url} within request_deadline={deadline} s",
                method=method,
                url=url,
                request_sent=True,
            )

        with self._telemetry.call(self, method, path) as span:
            operation = f"{method} {path}"
            response = await call_with_retries(once, policy, idempotent=idempotent, operation=operation, span=span)
            span.answered(response)
        record_response(response)
        return response

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
        fallback: Callable[[Any], Awaitable[T]] | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
    ) -> T:
        """Call a path and structure its JSON body (or ``body[envelope]``) as ``cls``.

        ``fallback`` is for answers the reference does not document: when the call succeeded but
        its body is empty or of another shape, ``await fallback(data)`` (``data`` the parsed JSON,
        or None) gives the result instead of an error, and a warning says what came back. A call
        that already acted on the server (bought numbers, made a webhook) never fails over the shape.
        """
        response = await self.request(
            method,
            path,
            params=params,
            json=json,
            max_retries=max_retries,
            idempotent=idempotent,
            timeout=timeout,
            extra_headers=extra_headers,
            extra_query=extra_query,
        )
        data: Any = None
        try:
            data = decode_json(response, mask=self.mask) if response.content.strip() else None
            if data is None and fallback is not None:
                raise ValidationError("the answer has no body", path="$")
            if envelope is not None:
                if not isinstance(data, dict) or envelope not in data:
                    raise ValidationError(f"response has no {envelope!r} field", path=f"$.{envelope}")
                data = data[envelope]
            return structure(data, cls)
        except ValidationError as exc:
            if fallback is None:
                raise
            logger.warning(
                "%s %s succeeded (%d) but its answer is not the documented shape (%s); using the fallback",
                method,
                path,
                response.status_code,
                exc,
            )
            return await fallback(data)

    # -- downloads (slots) -------------------------------------------------------------------

    def download_slot(self) -> AbstractAsyncContextManager[None]:
        """Hold one of this client's download slots and one of the account's limiter slots."""
        return self._download_slot()

    @asynccontextmanager
    async def _download_slot(self) -> AsyncIterator[None]:
        self._ensure_open()
        if self._client_slots is None:
            self._client_slots = anyio.CapacityLimiter(self.max_concurrent_downloads)
        async with self._client_slots, self.limiter.acquire(self.account):
            yield


def _check_deadline(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a number of seconds > 0, or None; got {value!r}")
    return float(value)


def check_limit(limit: int, name: str = "limit") -> None:
    """Refuse a page size the API does not take (1 to 100), naming the argument."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise InvalidRequestError(f"{name} must be an integer from 1 to 100, got {limit!r}")
