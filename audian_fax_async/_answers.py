"""Reading the API's answers: bodies read up to a cap, read copies of responses, the typed error of
an error status, and JSON bodies. The API key is masked wherever an answer is quoted."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from typing import Any

import httpx2

from ._config import AUTH_HEADER, DEFAULT_BASE_URL, mask_key
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    RateLimitError,
    ValidationError,
    excerpt,
    find_request_id,
    status_error_class,
)
from ._retry import retry_after_from

__all__ = [
    "decode_json",
    "read_capped",
    "read_response",
    "redirect_of",
    "safe_url",
    "status_error",
    "transport_error",
]


async def read_capped(response: httpx2.Response, cap: int, *, tolerant: bool = True) -> bytes:
    """At most ``cap`` bytes of a body. ``tolerant`` (for error pages, read only for their message):
    a body that breaks off gives what came; otherwise the transport's error is raised."""
    chunks = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            chunks += chunk
            if len(chunks) >= cap:
                break
    except httpx2.HTTPError:
        if not tolerant:
            raise
    return bytes(chunks[:cap])


def read_response(
    response: httpx2.Response,
    request: httpx2.Request,
    body: bytes,
    started: float | None = None,
    *,
    mask: Callable[[str], str] = str,
) -> httpx2.Response:
    """A read response with ``body`` (already decoded: no content encoding left) in place of the
    stream; ``mask`` hides secrets in header values."""
    headers = [
        (name, mask(value))
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    extensions = {k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")}
    read = httpx2.Response(response.status_code, headers=headers, content=body, request=request, extensions=extensions)
    try:
        read.elapsed = response.elapsed
    except RuntimeError:  # a body the transport had read already (a mock's) is never timed by httpx2
        if started is not None:
            read.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
    return read


def decode_json(response: httpx2.Response, *, mask: Callable[[str], str] = str) -> Any:
    """The JSON body of a response, or a :class:`ValidationError` naming what is wrong (``mask``
    hides secrets in the excerpt of the body it quotes)."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        ctype = response.headers.get("content-type", "?")
        raise ValidationError(
            f"response to {response.request.method} {safe_url(response.request.url)} is not valid JSON "
            f"(content-type {ctype}): {exc}; body starts {excerpt(mask(response.text), 80)!r}",
            path="$",
        ) from None


def safe_url(url: httpx2.URL) -> str:
    """The URL without userinfo (credentials never appear in messages)."""
    return str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)


def transport_error(exc: BaseException, request: httpx2.Request) -> Exception:
    """An httpx2 error as the SDK's typed error (the key is never part of the message)."""
    method, url = request.method, safe_url(request.url)
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


def _error_fields(text: str) -> tuple[str | None, str | None]:
    """The API's error ``code`` and message in a JSON error body, where it has them."""
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    code = api_message = None
    err = payload.get("error")
    if isinstance(err, dict):
        code = err.get("code") if isinstance(err.get("code"), str) else None
        msg = err.get("message")
        api_message = msg if isinstance(msg, str) else None
    elif isinstance(err, str):
        api_message = err
    if api_message is None and isinstance(payload.get("message"), str):
        api_message = payload["message"]
    return code, api_message


def status_error(
    request: httpx2.Request, response: httpx2.Response, body: bytes, *, secret: str, hint_v2: bool
) -> APIStatusError:
    """The typed error of an error status, from the first bytes of its body. ``secret`` (the key)
    is masked everywhere the error quotes the answer; ``hint_v2``: the base URL lacks ``/v2``."""
    encoding = response.encoding or "utf-8"
    text = body.decode(encoding, errors="replace").replace(secret, mask_key(secret))
    code, api_message = _error_fields(text)
    status = response.status_code
    cls = status_error_class(status)
    url = safe_url(request.url)
    detail = api_message or excerpt(text, 200)
    message = f"{status} {response.reason_phrase or ''} for {request.method} {url}".replace("  ", " ")
    if detail:
        message += f": {detail}"
    if status == 401:
        message += " (check the API key: api_key= or the AUDIAN_API_KEY environment variable)"
    elif status == 404 and code != "fax_not_found" and hint_v2:
        message += f" (is the base URL right? the API's paths are under /v2, e.g. {DEFAULT_BASE_URL})"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "method": request.method,
        "url": url,
        "body": excerpt(text),
        "code": code,
        "api_message": api_message,
        "request_id": find_request_id(response.headers),
        "response": _detached(response, text.encode(encoding, errors="replace"), secret),
    }
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=retry_after_from(response.headers), **kwargs)
    return cls(message, **kwargs)


def _detached(response: httpx2.Response, body: bytes, secret: str) -> httpx2.Response:
    """A read copy of an error response for the exception: its body (capped, key masked), and a
    request whose ``X-Auth-Token`` is masked, so neither a repr nor a pickle carries the key."""
    original = response.request
    request = httpx2.Request(
        original.method,
        original.url,
        headers=[
            (name, "[masked]" if name.lower() == AUTH_HEADER.lower() else value)
            for name, value in original.headers.multi_items()
        ],
    )
    return read_response(response, request, body, mask=lambda value: value.replace(secret, "[masked]"))


def redirect_of(
    request: httpx2.Request, response: httpx2.Response
) -> tuple[str, httpx2.URL, dict[str, str], bytes | None]:
    """Where a redirect sends ``request``: method, URL, the headers to keep (never the key, cookies
    or ``Authorization``: the client adds the key back for the API's own origin only) and the body."""
    try:
        target = request.url.join(response.headers["Location"])
    except httpx2.InvalidURL as exc:
        raise APIConnectionError(
            f"{response.status_code} redirect to an invalid Location for {request.method} "
            f"{safe_url(request.url)}: {exc}",
            method=request.method,
            url=safe_url(request.url),
        ) from None
    if target.port is not None and not 0 < target.port < 65536:
        raise APIConnectionError(
            f"{response.status_code} redirect to an invalid port ({target.port}) for {request.method} "
            f"{safe_url(request.url)}",
            method=request.method,
            url=safe_url(request.url),
        )
    method = request.method
    if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
        method = "GET"
    keep_body = method == request.method and method != "GET"
    drop = {"host", "content-length", "cookie", "authorization", AUTH_HEADER.lower()}
    if not keep_body:
        drop.add("content-type")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
    return method, target, headers, request.content if keep_body else None
