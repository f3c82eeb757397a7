"""``client.received``: list, walk, read, update, archive and download received faxes."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Unpack

import anyio
import attrs

from .._blocking import run_blocking
from .._bulk import BulkDownload, BulkProgress
from .._client import check_limit
from .._download import DocumentStream, download_file
from .._exceptions import DestinationError, InvalidRequestError
from .._models import DownloadResult, FaxPage, FaxStatus, ReceivedFax, StatusName
from .._options import CallOptions
from .._pagination import KeysetWalk
from .._paths import safe_filename
from .._response import to_raw_response
from ._base import Resource, check_fax_id, enum_value, fax_path, iso

__all__ = ["Received", "ReceivedWithRawResponse"]


class Received(Resource):
    """Received faxes (``/fax/received``)."""

    @functools.cached_property
    def with_raw_response(self) -> ReceivedWithRawResponse:
        """The same calls, returning an :class:`~audian_fax_async.APIResponse` (status, headers,
        request id, timing, ``.parse()``) instead of the model."""
        return ReceivedWithRawResponse(self)

    def _filters(
        self,
        *,
        from_date: datetime | None,
        to_date: datetime | None,
        status: FaxStatus | StatusName | None,
        from_number: str | None,
    ) -> dict[str, Any]:
        if from_number is not None and (not isinstance(from_number, str) or not from_number.strip()):
            raise InvalidRequestError("from_number must be a non-empty string")
        # Checked (aware datetimes) before comparing: a naive bound must be refused, not raise TypeError.
        from_iso, to_iso = iso(from_date, "from_date"), iso(to_date, "to_date")
        if from_date is not None and to_date is not None and from_date > to_date:
            raise InvalidRequestError("from_date is after to_date")
        return {
            "from_date": from_iso,
            "to_date": to_iso,
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
        status: FaxStatus | StatusName | None = None,
        from_number: str | None = None,
        **options: Unpack[CallOptions],
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
        page = await self._client.request_model("GET", "fax/received", FaxPage, params=params, **options)

        async def fetch_next() -> FaxPage:
            return await self.list(
                limit,
                offset + len(page.faxes),
                from_date=from_date,
                to_date=to_date,
                status=status,
                from_number=from_number,
                **options,
            )

        return attrs.evolve(page, fetch_next=fetch_next)

    async def iter(
        self,
        *,
        page_size: int = 100,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        status: FaxStatus | StatusName | None = None,
        from_number: str | None = None,
        **options: Unpack[CallOptions],
    ) -> AsyncIterator[ReceivedFax]:
        """Every matching fax across all pages, newest first, each exactly once.

        Guarantee: every fax that matches the filters when the walk begins, and still matches when
        the walk reaches its place in the list, is yielded exactly once, even while faxes arrive
        (new arrivals are not yielded) and while faxes leave a ``status`` filter (for example
        because this loop marks them processed). The walk steps by ``received_at`` (keyset
        pagination: each page asks for ``to_date`` = the last ``received_at`` seen, offset 0) and
        drops repeats at the boundary timestamp, so changes above the boundary cannot shift it.

        Assumptions: ``received_at`` of a fax never changes and new faxes arrive later than those
        listed; the API's date bounds are inclusive and the list is sorted newest first with a
        stable order among equal timestamps. When more than ``page_size`` faxes share one
        ``received_at``, the walk pages by offset inside it, starting each page on the last fax it
        yielded so that faxes leaving the filter are noticed (``page_size=1`` cannot overlap, so
        there a fax leaving the filter inside such a timestamp could shift the walk)::

            async for fax in client.received.iter(status="received"):
                print(fax.id, fax.received_at)
        """
        async for _page, faxes in self.pages(
            page_size=page_size, from_date=from_date, to_date=to_date, status=status, from_number=from_number, **options
        ):
            for fax in faxes:
                yield fax

    async def pages(
        self,
        *,
        page_size: int = 100,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        status: FaxStatus | StatusName | None = None,
        from_number: str | None = None,
        **options: Unpack[CallOptions],
    ) -> AsyncIterator[tuple[FaxPage, Sequence[ReceivedFax]]]:
        """The walk of :meth:`iter` page by page: each page as the API answered it (its ``total``,
        say), with the faxes of it that the walk yields."""
        check_limit(page_size, "page_size")
        filters = self._filters(from_date=from_date, to_date=to_date, status=status, from_number=from_number)
        walk = KeysetWalk(page_size=page_size, upper=to_date)
        while not walk.done:
            upper, offset = walk.next_request()
            params = {**filters, "limit": page_size, "offset": offset, "to_date": iso(upper, "to_date")}
            page = await self._client.request_model("GET", "fax/received", FaxPage, params=params, **options)
            yield page, walk.accept(page.faxes)

    async def get(self, fax_id: str, **options: Unpack[CallOptions]) -> ReceivedFax:
        """The details of one fax (``duration``, ``baud_rate``, ``created_at`` included)::

        fax = await client.received.get("fax_received_123")
        """
        return await self._client.request_model("GET", fax_path(fax_id), ReceivedFax, **options)

    async def update(
        self, fax_id: str, *, status: FaxStatus | StatusName, **options: Unpack[CallOptions]
    ) -> ReceivedFax:
        """Set a fax's status (``PUT /fax/received/{id}``); returns the updated fax (fetched again
        when the answer is not a fax record, as the reference documents no body)."""
        body = {"status": enum_value(status, FaxStatus, "status")}
        return await self._client.request_model(
            "PUT", fax_path(fax_id), ReceivedFax, json=body, fallback=self._refetch(fax_id, options), **options
        )

    def _refetch(self, fax_id: str, options: CallOptions) -> Callable[[Any], Awaitable[ReceivedFax]]:
        """The fallback of a change whose answer is not a fax record (a 204, say): the fax as it now is."""

        async def refetch(_: Any) -> ReceivedFax:
            return await self.get(fax_id, **options)

        return refetch

    async def mark_processed(self, fax_id: str, **options: Unpack[CallOptions]) -> ReceivedFax:
        """Mark a fax processed after handling it::

        await client.received.mark_processed(fax.id)
        """
        return await self.update(fax_id, status=FaxStatus.PROCESSED, **options)

    async def archive(self, fax_id: str, **options: Unpack[CallOptions]) -> ReceivedFax:
        """Move a fax to archive storage (``POST /fax/received/{id}/archive``).

        Archiving twice leaves the fax archived, so this POST is retried like a GET.
        """
        return await self._client.request_model(
            "POST",
            fax_path(fax_id, "archive"),
            ReceivedFax,
            idempotent=True,
            fallback=self._refetch(fax_id, options),
            **options,
        )

    # -- documents ---------------------------------------------------------------------------

    async def download(
        self,
        fax_id: str,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        fax: ReceivedFax | None = None,
        **options: Unpack[CallOptions],
    ) -> DownloadResult:
        """Download a fax's document to ``dest``: a file path, or a folder (one that exists, or any
        path ending in a separator such as ``"faxes/"``, created when missing).

        In a folder the file is named after the fax id and format (made safe: a hostile id never
        writes outside the folder). The document streams in chunks into a temporary file beside
        the destination, is checked (byte count against ``Content-Length`` and the fax's
        ``file_size``, the ``%PDF`` signature), fsynced and renamed into place: no partial file
        ever stands at ``dest``. A dropped connection resumes with ``Range``. The download holds
        one of the account's 10 download slots while it runs::

            result = await client.received.download("fax_received_123", "faxes/")
            print(result.path, result.bytes, result.sha256)
        """
        check_fax_id(fax_id)
        target = Path(dest)
        if await run_blocking(_as_folder, os.fspath(dest), target):
            if fax is None:
                fax = await self.get(fax_id, **options)
            target = target / safe_filename(fax_id, fax.format)
        elif not await run_blocking(target.parent.is_dir):
            raise DestinationError(f"folder {target.parent} does not exist")
        return await download_file(self._client, fax_id, target, fax=fax, overwrite=overwrite, options=options)

    @asynccontextmanager
    async def stream(self, fax_id: str, **options: Unpack[CallOptions]) -> AsyncIterator[DocumentStream]:
        """Stream a fax's document without touching disk (for example, to object storage).

        Holds one of the account's download slots while open::

            async with client.received.stream(fax.id) as chunks:
                async for chunk in chunks:
                    await upload.write(chunk)
        """
        check_fax_id(fax_id)
        telemetry = self._client._telemetry
        with telemetry.download(self._client, fax_path(fax_id, "download"), fax_id, None, stream=True) as span:
            asked = anyio.current_time()
            async with self._client.download_slot():
                with span.in_slot(anyio.current_time() - asked):
                    document = DocumentStream(self._client, fax_id, options=options)
                    document._span = span
                    try:
                        yield document
                    finally:
                        await document.aclose()

    def download_all(
        self,
        dest_dir: str | os.PathLike[str],
        *,
        status: FaxStatus | StatusName | None = None,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        from_number: str | None = None,
        after: Literal["processed", "archived"] | None = None,
        path_template: str | None = None,
        on_progress: Callable[[BulkProgress], None] | None = None,
        overwrite: bool = False,
        page_size: int = 100,
        concurrency: int | None = None,
        **options: Unpack[CallOptions],
    ) -> BulkDownload:
        """Download every matching fax into ``dest_dir``; yields one :class:`DownloadOutcome` per fax.

        All download slots stay busy (the listing runs ahead), memory stays bounded whatever the
        archive's size, one failing fax never stops the others, and a manifest in ``dest_dir``
        makes a rerun skip what is complete. ``after="processed"`` / ``"archived"`` marks each
        fax on the server once its file is durably on disk. ``path_template`` lays files out,
        for example ``"{received_at:%Y/%m/%d}/{id}.{ext}"``::

            async with client.received.download_all("archive/", status="received") as outcomes:
                async for outcome in outcomes:
                    if not outcome.ok:
                        print(outcome.fax.id, outcome.error)
        """
        check_limit(page_size, "page_size")
        self._filters(from_date=from_date, to_date=to_date, status=status, from_number=from_number)  # checks
        return BulkDownload(
            self._client,
            dest_dir,
            filters={"status": status, "from_date": from_date, "to_date": to_date, "from_number": from_number},
            after=after,
            path_template=path_template,
            on_progress=on_progress,
            overwrite=overwrite,
            page_size=page_size,
            concurrency=concurrency,
            options=options,
        )


def _as_folder(raw: str, target: Path) -> bool:
    """Whether ``dest`` names a folder: one that exists, or a path ending in a separator (made here)."""
    if target.is_dir():
        return True
    if not raw.endswith((os.sep, os.altsep or os.sep)):
        return False
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DestinationError(f"cannot create the folder {target}: {exc.strerror or exc}") from None
    return True


class ReceivedWithRawResponse:
    """``client.received.with_raw_response``: each single-request call, answering an APIResponse."""

    def __init__(self, received: Received) -> None:
        self.list = to_raw_response(received.list)
        self.get = to_raw_response(received.get)
        self.update = to_raw_response(received.update)
        self.mark_processed = to_raw_response(received.mark_processed)
        self.archive = to_raw_response(received.archive)
