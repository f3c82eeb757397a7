"""``client.numbers``: dedicated fax numbers."""

from __future__ import annotations

from .._exceptions import InvalidRequestError
from .._models import FaxNumber
from ._base import Resource

__all__ = ["Numbers"]

MAX_NUMBERS_PER_ACCOUNT = 100


class Numbers(Resource):
    """Dedicated fax numbers (``POST /fax/numbers``)."""

    async def request(self, *, area_code: str, quantity: int = 1, max_retries: int | None = None) -> list[FaxNumber]:
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
            max_retries=max_retries,
            idempotent=False,
            envelope="numbers",
        )
