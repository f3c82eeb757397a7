"""``client.received``: list, walk, read, update, archive and download received faxes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from .._client import check_limit
from .._exceptions import InvalidRequestError
from .._models import FaxPage, FaxStatus, ReceivedFax
from .._pagination import KeysetWalk
from ._base import Resource, enum_value, fax_path, iso

__all__ = ["Received"]


class Received(Resource):
    """Received faxes (``/fax/received``)."""

    def _filters(
        self,
        *,
        from_date: datetime | None,
        to_date: datetime | None,
        status: FaxStatus | str | None,
        from_number: str | None,
    ) -> dict[str, Any]:
        if from_number is not None and (not isinstance(from_number, str) or not from_number.strip()):
            raise InvalidRequestError("from_number must be a non-empty string")
        if from_date is not None and to_date is not None and from_date > to_date:
            raise InvalidRequestError("from_date is after to_date")
        return {
            "from_date": iso(from_date, "from_date"),
            "to_date": iso(to_date, "to_date"),
            "status": enum_value(status, FaxStatus, "status"),
            "from_number": from_number,
        }

    async def list(
        self,
        limit: int = 20,
        offset: int = 0,
        *,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        status: FaxStatus | str | None = None,
        from_number: str | None = None,
        max_retries: int | None = None,
    ) -> FaxPage:
        """One page of received faxes, newest first.

        ``limit`` is 1..100; datetimes must be timezone-aware and are sent as UTC ISO 8601::

            page = await client.received.list(limit=50, status="received")
            for fax in page.faxes: ...
        """
        check_limit(limit)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidRequestError(f"offset must be an integer >= 0, got {offset!r}")
        params = {
            "limit": limit,
            "offset": offset,
            **self._filters(from_date=from_date, to_date=to_date, status=status, from_number=from_number),
        }
        return await self._client.request_model("GET", "fax/received", FaxPage, params=params, max_retries=max_retries)

    async def iter(
        self,
        *,
        page_size: int = 100,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        status: FaxStatus | str | None = None,
        from_number: str | None = None,
    ) -> AsyncIterator[ReceivedFax]:
        """Every matching fax across all pages, newest first, each exactly once.

        Guarantee: every fax that matches the filters when the walk begins, and still matches when
        the walk reaches its place in the list, is yielded exactly once, even while faxes arrive
        (new arrivals are not yielded) and while faxes leave a ``status`` filter (for example
        because this loop marks them processed). The walk steps by ``received_at`` (keyset
        pagination: each page asks for ``to_date`` = the last ``received_at`` seen, offset 0) and
        drops repeats at the boundary timestamp, so changes above the boundary cannot shift it.

        Assumptions: ``received_at`` of a fax never changes; the API's date bounds are inclusive
        and the list is sorted newest first with a stable order among equal timestamps. Only when
        more than ``page_size`` faxes share one ``received_at`` does the walk page by offset inside
        that one timestamp, where a fax leaving the filter at that very moment could shift it::

            async for fax in client.received.iter(status="received"):
                print(fax.id, fax.received_at)
        """
        check_limit(page_size)
        filters = self._filters(from_date=from_date, to_date=to_date, status=status, from_number=from_number)
        walk = KeysetWalk(page_size=page_size, upper=to_date)
        while not walk.done:
            upper, offset = walk.next_request()
            params = {**filters, "limit": page_size, "offset": offset, "to_date": iso(upper, "to_date")}
            page = await self._client.request_model("GET", "fax/received", FaxPage, params=params)
            for fax in walk.accept(page.faxes):
                yield fax

    async def get(self, fax_id: str, *, max_retries: int | None = None) -> ReceivedFax:
        """The details of one fax (``duration``, ``baud_rate``, ``created_at`` included)::

        fax = await client.received.get("fax_received_123")
        """
        return await self._client.request_model("GET", fax_path(fax_id), ReceivedFax, max_retries=max_retries)

    async def update(self, fax_id: str, *, status: FaxStatus | str, max_retries: int | None = None) -> ReceivedFax:
        """Set a fax's status (``PUT /fax/received/{id}``); returns the updated fax."""
        body = {"status": enum_value(status, FaxStatus, "status")}
        return await self._client.request_model(
            "PUT", fax_path(fax_id), ReceivedFax, json=body, max_retries=max_retries
        )

    async def mark_processed(self, fax_id: str, *, max_retries: int | None = None) -> ReceivedFax:
        """Mark a fax processed after handling it::

        await client.received.mark_processed(fax.id)
        """
        return await self.update(fax_id, status=FaxStatus.PROCESSED, max_retries=max_retries)

    async def archive(self, fax_id: str, *, max_retries: int | None = None) -> ReceivedFax:
        """Move a fax to archive storage (``POST /fax/received/{id}/archive``).

        Archiving twice leaves the fax archived, so this POST is retried like a GET.
        """
        return await self._client.request_model(
            "POST", fax_path(fax_id, "archive"), ReceivedFax, max_retries=max_retries, idempotent=True
        )
