"""What every resource shares: its client and argument checks done before sending."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from .._converter import format_datetime, structure
from .._exceptions import InvalidRequestError, ValidationError

if TYPE_CHECKING:
    from .._client import FaxClient

E = TypeVar("E", bound=Enum)
M = TypeVar("M")

_MAX_ID_LENGTH = 256


class Resource:
    def __init__(self, client: FaxClient) -> None:
        self._client = client


def fax_path(fax_id: str, *suffix: str) -> str:
    """``fax/received/{faxId}[/suffix]`` with the id checked and percent-encoded as one segment."""
    return "/".join(("fax/received", quote(check_fax_id(fax_id), safe=""), *suffix))


def check_fax_id(fax_id: object) -> str:
    if not isinstance(fax_id, str):
        raise InvalidRequestError(f"fax_id must be a string, got {type(fax_id).__name__}")
    if not fax_id or fax_id in (".", "..") or len(fax_id) > _MAX_ID_LENGTH:
        raise InvalidRequestError(f"invalid fax_id {fax_id[:40]!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in fax_id):
        raise InvalidRequestError(f"fax_id contains control characters: {fax_id[:40]!r}")
    return fax_id


def iso(value: datetime | None, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidRequestError(f"{name} must be a datetime, got {type(value).__name__}")
    try:
        return format_datetime(value)
    except ValueError as exc:
        raise InvalidRequestError(f"{name}: {exc}") from None


def enum_value(value: E | str | None, cls: type[E], name: str) -> str | None:
    if value is None:
        return None
    try:
        return str(cls(value).value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in cls)
        raise InvalidRequestError(f"{name} must be one of {allowed}; got {value!r}") from None


def enum_values(values: Iterable[E | str], cls: type[E], name: str) -> list[str]:
    if isinstance(values, str):
        raise InvalidRequestError(f"{name} must be a list, not a string")
    out = [enum_value(v, cls, name) for v in values]
    if not out:
        raise InvalidRequestError(f"{name} must not be empty")
    return [v for v in out if v is not None]


def merged_with(cls: type[M], sent: Mapping[str, object]) -> Callable[[object], Awaitable[M]]:
    """The fallback of a creating call whose answer is not the documented record: what was sent,
    with whatever fields of the answer fit (an ``id``, say); what was sent alone if none do."""

    async def fallback(answer: object) -> M:
        if isinstance(answer, dict):
            with contextlib.suppress(ValidationError):
                return structure({**sent, **answer}, cls)
        return structure(sent, cls)

    return fallback
