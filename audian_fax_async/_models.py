"""Typed records of the Receive Fax API. Data only: no I/O lives here."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Literal

from attrs import field, frozen

from ._exceptions import InvalidRequestError

__all__ = [
    "DownloadOutcome",
    "DownloadResult",
    "EventName",
    "FaxFormat",
    "FaxNumber",
    "FaxPage",
    "FaxStatus",
    "FormatName",
    "OutcomeKind",
    "ReceivedFax",
    "RoutingRule",
    "RoutingType",
    "RoutingTypeName",
    "StatusName",
    "Webhook",
    "WebhookEvent",
    "WebhookEventType",
    "WebhookFormat",
]


class FaxStatus(enum.StrEnum):
    """The status of a received fax. Values the SDK does not know stay plain strings."""

    RECEIVED = "received"
    PROCESSED = "processed"
    ARCHIVED = "archived"


class WebhookEventType(enum.StrEnum):
    """Events a webhook can subscribe to."""

    FAX_RECEIVED = "fax_received"
    FAX_PROCESSED = "fax_processed"


class WebhookFormat(enum.StrEnum):
    """Payload formats a webhook can be delivered in."""

    JSON = "json"
    XML = "xml"


class RoutingType(enum.StrEnum):
    """Where a routing rule sends incoming faxes."""

    EMAIL = "email"
    WEBHOOK = "webhook"


StatusName = Literal["received", "processed", "archived"]
"""A fax status as a string, for arguments (``status="received"``)."""
EventName = Literal["fax_received", "fax_processed"]
"""A webhook event as a string, for arguments (``events=["fax_received"]``)."""
FormatName = Literal["json", "xml"]
"""A webhook payload format as a string."""
RoutingTypeName = Literal["email", "webhook"]
"""A routing rule's type as a string."""

FaxFormat = str
"""The document format of a fax (``"pdf"`` in every documented response)."""


@frozen
class ReceivedFax:
    """A received fax, as listed (``received.list``) or in detail (``received.get``).

    The list endpoint omits ``duration``, ``baud_rate`` and ``created_at``; they are ``None`` there.
    ``status`` is a :class:`FaxStatus`, or the raw string when the API sends a status this SDK
    version does not know (so a new status never breaks a pipeline).
    """

    id: str
    from_number: str
    to_number: str
    pages: int
    received_at: datetime
    status: FaxStatus | str
    from_name: str | None = None
    format: FaxFormat = "pdf"
    file_size: int | None = None
    document_url: str | None = None
    processed: bool | None = None
    duration: int | None = None
    baud_rate: int | None = None
    created_at: datetime | None = None

    @property
    def is_processed(self) -> bool:
        """True when the fax is processed or archived."""
        if self.processed is not None:
            return self.processed
        return self.status in (FaxStatus.PROCESSED, FaxStatus.ARCHIVED)


@frozen
class FaxPage:
    """One page of ``received.list``: the faxes and the paging numbers the API returned."""

    faxes: list[ReceivedFax]
    total: int
    limit: int
    offset: int
    #: How the next page is fetched (set by ``received.list``; the model itself does no I/O).
    _fetch_next: Callable[[], Awaitable[FaxPage]] | None = field(default=None, eq=False, repr=False, alias="fetch_next")

    @property
    def has_more(self) -> bool:
        """True when more matching faxes lie beyond this page."""
        return self.offset + len(self.faxes) < self.total

    def has_next_page(self) -> bool:
        """Whether :meth:`get_next_page` has a page to fetch (by offset: for a walk that does not
        drift while the inbox changes, use ``received.iter()``)."""
        return self.has_more and bool(self.faxes) and self._fetch_next is not None

    async def get_next_page(self) -> FaxPage:
        """The next page of the same listing (same filters and options), for paging by hand::

        page = await client.received.list(limit=50)
        while page.has_next_page():
            page = await page.get_next_page()
        """
        if self._fetch_next is None:
            raise InvalidRequestError("this page was not fetched by received.list(): it has no next page to fetch")
        if not self.has_next_page():
            raise InvalidRequestError(f"no next page: this page ends the listing ({self.total} faxes)")
        return await self._fetch_next()

    def __len__(self) -> int:
        return len(self.faxes)


@frozen
class Webhook:
    """A webhook subscription (``webhooks.create``)."""

    url: str
    events: list[WebhookEventType | str]
    enabled: bool = True
    format: WebhookFormat | str = WebhookFormat.JSON
    id: str | None = None
    created_at: datetime | None = None


@frozen
class RoutingRule:
    """A routing rule for incoming faxes (``routing.create``)."""

    type: RoutingType | str
    destination: str
    attach_document: bool = False
    enabled: bool = True
    id: str | None = None
    created_at: datetime | None = None


@frozen
class FaxNumber:
    """A dedicated fax number of the account (``numbers.request``)."""

    number: str
    id: str | None = None
    area_code: str | None = None
    created_at: datetime | None = None


@frozen
class DownloadResult:
    """A document saved to disk: where, how many bytes, their sha256, and the fax where known."""

    path: Path
    bytes: int
    sha256: str
    fax: ReceivedFax | None = None
    resumed: bool = False
    attempts: int = 1


class OutcomeKind(enum.StrEnum):
    """How one fax of a bulk download ended."""

    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"
    FAILED = "failed"


@frozen
class DownloadOutcome:
    """The end of one fax in ``received.download_all``: downloaded, skipped (already there) or failed."""

    fax: ReceivedFax
    kind: OutcomeKind
    path: Path | None = None
    bytes: int = 0
    sha256: str | None = None
    error: BaseException | None = field(default=None, eq=False)
    marked: FaxStatus | None = None

    @property
    def ok(self) -> bool:
        """True unless the fax failed."""
        return self.kind is not OutcomeKind.FAILED


@frozen
class WebhookEvent:
    """A webhook delivery's payload (``fax_received`` or ``fax_processed``).

    ``event`` is a :class:`WebhookEventType`, or the raw string for an event type this SDK version
    does not know (check :attr:`is_known` and skip the rest). ``event_id`` and ``delivery_id`` come
    from the delivery's headers where the sender provides them.
    """

    event: WebhookEventType | str
    id: str
    from_number: str | None = None
    from_name: str | None = None
    to_number: str | None = None
    pages: int | None = None
    received_at: datetime | None = None
    file_size: int | None = None
    format: FaxFormat | None = None
    document_url: str | None = None
    status: FaxStatus | str | None = None
    event_id: str | None = None
    delivery_id: str | None = None

    @property
    def is_known(self) -> bool:
        """True when ``event`` is an event type this SDK version knows."""
        return isinstance(self.event, WebhookEventType)

    @property
    def dedupe_key(self) -> str:
        """The key that identifies this event across redeliveries."""
        return self.event_id or f"{self.event}:{self.id}"
