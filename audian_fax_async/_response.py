"""``with_raw_response``: a call's answer as it came (status, headers, request id, timing) beside the model."""

from __future__ import annotations

import contextvars
import datetime
import functools
from collections.abc import Awaitable, Callable
from typing import Generic, ParamSpec, TypeVar

import httpx2

from ._exceptions import find_request_id

__all__ = ["APIResponse", "record_response", "to_raw_response"]

P = ParamSpec("P")
T = TypeVar("T")

#: The answers of the calls made inside a ``with_raw_response`` call (None outside one).
_recorded: contextvars.ContextVar[list[httpx2.Response] | None] = contextvars.ContextVar(
    "audian_raw_responses", default=None
)


def record_response(response: httpx2.Response) -> None:
    """Keep ``response`` for the ``with_raw_response`` call running in this context, if any."""
    recorded = _recorded.get()
    if recorded is not None:
        recorded.append(response)


class APIResponse(Generic[T]):
    """The raw answer of one call and what the SDK made of it::

    raw = await client.received.with_raw_response.get("fax_received_123")
    raw.status_code, raw.request_id, raw.elapsed, raw.headers["content-type"]
    fax = raw.parse()
    """

    def __init__(self, http_response: httpx2.Response, parsed: T) -> None:
        self.http_response = http_response
        self._parsed = parsed

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def headers(self) -> httpx2.Headers:
        return self.http_response.headers

    @property
    def request_id(self) -> str | None:
        """The API's id of the request (``X-Request-Id`` and the like), when it sent one."""
        return find_request_id(self.http_response.headers)

    @property
    def elapsed(self) -> datetime.timedelta:
        """From sending the request to the end of the answer's body."""
        return self.http_response.elapsed

    @property
    def content(self) -> bytes:
        return self.http_response.content

    def parse(self) -> T:
        """What the method returns without ``with_raw_response`` (the model)."""
        return self._parsed

    def __repr__(self) -> str:
        return f"<APIResponse [{self.status_code}] request_id={self.request_id!r}>"


def to_raw_response(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[APIResponse[T]]]:
    """``method`` returning an :class:`APIResponse`: its own first answer beside its result (a call
    that fetches again, such as an ``update`` answered 204, keeps the answer of its own request)."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> APIResponse[T]:
        recorded: list[httpx2.Response] = []
        token = _recorded.set(recorded)
        try:
            parsed = await method(*args, **kwargs)
        finally:
            _recorded.reset(token)
        return APIResponse(recorded[0], parsed)

    return call
