"""``client.numbers``: dedicated fax numbers."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Unpack

from .._converter import structure
from .._exceptions import InvalidRequestError, ValidationError
from .._models import FaxNumber
from .._options import CallOptions
from .._response import to_raw_response
from ._base import Resource

__all__ = ["Numbers", "NumbersWithRawResponse"]

logger = logging.getLogger("audian_fax_async")

MAX_NUMBERS_PER_ACCOUNT = 100


class Numbers(Resource):
    """Dedicated fax numbers (``POST /fax/numbers``)."""

    @functools.cached_property
    def with_raw_response(self) -> NumbersWithRawResponse:
        """The same calls, returning an :class:`~audian_fax_async.APIResponse` instead of the model."""
        return NumbersWithRawResponse(self)

    async def request(self, *, area_code: str, quantity: int = 1, **options: Unpack[CallOptions]) -> list[FaxNumber]:
        """Buy ``quantity`` fax numbers in ``area_code`` (at most 100 per account).

        Never retried once the request may have reached the API: a retry would buy the numbers
        twice::

            numbers = await client.numbers.request(area_code="202", quantity=1)
        """
        if not isinstance(area_code, str) or not (area_code.isascii() and area_code.isdigit()):
            raise InvalidRequestError(f"area_code must be a string of digits, got {area_code!r}")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_NUMBERS_PER_ACCOUNT:
            raise InvalidRequestError(f"quantity must be an integer from 1 to {MAX_NUMBERS_PER_ACCOUNT}")
        return await self._client.request_model(
            "POST",
            "fax/numbers",
            list[FaxNumber],
            json={"area_code": area_code, "quantity": quantity},
            idempotent=False,
            envelope="numbers",
            fallback=_numbers_of,
            **options,
        )


async def _numbers_of(answer: object) -> list[FaxNumber]:
    """The numbers in an answer of another shape than ``{"numbers": [...]}``: a bare list, one
    number object, or numbers as strings. Nothing recognisable gives an empty list (the numbers
    may still have been bought: the warning logged with it says so)."""
    if isinstance(answer, dict):
        inner = answer.get("numbers", answer.get("data", answer))
        items = inner if isinstance(inner, list) else [inner]
    elif isinstance(answer, list):
        items = answer
    else:
        items = []
    numbers: list[FaxNumber] = []
    for item in items:
        if isinstance(item, str) and item.strip():
            numbers.append(FaxNumber(number=item.strip()))
        elif isinstance(item, dict):
            with contextlib.suppress(ValidationError):
                numbers.append(structure(item, FaxNumber))
    if not numbers:
        logger.warning("numbers.request succeeded but its answer names no number: they may have been bought anyway")
    return numbers


class NumbersWithRawResponse:
    """``client.numbers.with_raw_response``: the same calls, answering an APIResponse."""

    def __init__(self, resource: Numbers) -> None:
        self.request = to_raw_response(resource.request)
