"""Per-call options: what every method that sends a request takes besides its own arguments. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypedDict

import httpx2

from ._exceptions import ConfigurationError

__all__ = ["NOT_GIVEN", "CallOptions", "NotGiven", "TimeoutTypes", "as_timeout", "request_options"]

TimeoutTypes = float | httpx2.Timeout | None
"""A timeout: seconds for every phase, an ``httpx2.Timeout``, or None for no timeout."""


class NotGiven:
    """The default of an option that was not passed (where ``None`` means something: no timeout)."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()


class CallOptions(TypedDict, total=False):
    """Options for one call, applied to it and to all its retries (each may be left out).

    * ``timeout``: seconds or an ``httpx2.Timeout`` for this call's requests (None: no timeout).
    * ``max_retries``: retries after the first attempt, instead of the client's count.
    * ``extra_headers``: headers added to this call's requests (not the key: it is the client's).
    * ``extra_query``: query parameters added to this call's requests.
    """

    timeout: TimeoutTypes
    max_retries: int | None
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, Any] | None


def as_timeout(value: TimeoutTypes) -> httpx2.Timeout:
    """``value`` as an ``httpx2.Timeout`` (a number applies to every phase; None: no timeout);
    anything else, or a negative number, is a :class:`~audian_fax_async.ConfigurationError`."""
    if isinstance(value, httpx2.Timeout):
        return value
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0):
        raise ConfigurationError(f"timeout must be seconds >= 0, an httpx2.Timeout or None; got {value!r}")
    return httpx2.Timeout(value)


def request_options(options: CallOptions) -> dict[str, Any]:
    """The options of ``options`` that shape each request (all but ``max_retries``)."""
    return {name: value for name, value in options.items() if name != "max_retries"}
