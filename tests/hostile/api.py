"""The Receive Fax API played on the hostile server: a listing, fax records and documents.

:class:`Inbox` answers like an honest API (the listing honours ``to_date``, ``from_date``, ``offset`` and
``limit``; documents carry a strong ``ETag``, ``Last-Modified`` and honour ``Range`` with ``If-Range``)
until a test scripts one fax's downloads or replaces a route, so each test lies exactly where it means
to.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import attrs

from audian_fax_async import format_datetime, parse_datetime

from .server import HostileServer, Reply, Request, json_reply

__all__ = ["DOWNLOAD", "EPOCH", "Fax", "Inbox", "document_reply", "honest_download", "ids", "pdf"]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
#: The path of a fax's document on the server, with the fax id as the group ``id``.
DOWNLOAD = r"/v2/fax/received/(?P<id>[^/]+)/download"
_LAST_MODIFIED = "Thu, 01 Jan 2026 00:00:00 GMT"


def pdf(size: int, version: str = "A") -> bytes:
    """A document of exactly ``size`` bytes that starts with ``%PDF-`` and ends with ``%%EOF``.

    Two versions of the same size differ in every filler byte, so a file spliced from both is told
    apart from either by its bytes (and its sha256).
    """
    head, tail = b"%PDF-1.7\n", b"\n%%EOF\n"
    if size < len(head) + len(tail):
        raise ValueError(f"a document needs at least {len(head) + len(tail)} bytes")
    filler = (version.encode() * size)[: size - len(head) - len(tail)]
    return head + filler + tail


@attrs.define
class Fax:
    """One fax of the inbox and its document."""

    id: str
    received_at: datetime
    document: bytes
    status: str = "received"
    from_number: str = "+12025550100"
    to_number: str = "+15555550100"
    from_name: str | None = "Sender"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.document).hexdigest()[:20] + '"'

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.document).hexdigest()

    def record(self, origin: str) -> dict[str, object]:
        return {
            "id": self.id,
            "from_number": self.from_number,
            "from_name": self.from_name,
            "to_number": self.to_number,
            "pages": 1,
            "received_at": format_datetime(self.received_at),
            "status": self.status,
            "format": "pdf",
            "file_size": len(self.document),
            "document_url": f"{origin}/v2/fax/received/{self.id}/download",
            "processed": self.status != "received",
        }


def document_reply(
    document: bytes,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    status: int = 200,
    content_range: str | None = None,
    accept_ranges: bool = True,
    drop_after: int | None = None,
    stall_after: int | None = None,
    drip: int = 0,
    interval: float = 0.0,
) -> Reply:
    """A document answer: ``document`` as the body, with the validators given (none by default)."""
    headers = [("Content-Type", "application/pdf")]
    if accept_ranges:
        headers.append(("Accept-Ranges", "bytes"))
    if etag is not None:
        headers.append(("ETag", etag))
    if last_modified is not None:
        headers.append(("Last-Modified", last_modified))
    if content_range is not None:
        headers.append(("Content-Range", content_range))
    return Reply(
        status=status,
        headers=headers,
        body=document,
        drop_after=drop_after,
        stall_after=stall_after,
        drip=drip,
        interval=interval,
    )


#: A scripted answer to one download: a function of the request and the fax (possibly async).
Answer = Callable[[Request, "Fax"], "Reply | Awaitable[Reply]"]


class Inbox:
    """Faxes served by ``server`` as the API would; see the module's docstring."""

    def __init__(self, server: HostileServer) -> None:
        self.server = server
        self.faxes: dict[str, Fax] = {}
        self._scripts: dict[str, list[Reply | Answer]] = {}
        self._lock = threading.Lock()
        self._observers: list[Callable[[Request], None]] = []
        self.listing = server.route("/v2/fax/received", self._list)
        self.detail = server.route(re.compile(r"/v2/fax/received/(?P<id>[^/]+)"), self._get)
        self.downloads = server.route(re.compile(DOWNLOAD), self._download)

    def add(self, count: int, *, size: int = 2048, prefix: str = "fax_") -> list[Fax]:
        """``count`` faxes, one second apart, newest last, each with its own document."""
        made = []
        start = len(self.faxes)
        for number in range(start, start + count):
            fax = Fax(f"{prefix}{number:05d}", EPOCH + timedelta(seconds=number), pdf(size, f"{number % 10}"))
            self.faxes[fax.id] = fax
            made.append(fax)
        return made

    def put(self, fax_id: str, document: bytes) -> Fax:
        """One fax with this document, received after every fax already there."""
        fax = Fax(fax_id, EPOCH + timedelta(seconds=len(self.faxes)), document)
        self.faxes[fax.id] = fax
        return fax

    def script(self, fax_id: str, *answers: Reply | Answer) -> None:
        """The next downloads of ``fax_id`` answer so, in order; then the honest answer resumes."""
        with self._lock:
            self._scripts.setdefault(fax_id, []).extend(answers)

    def observe(self, callback: Callable[[Request], None]) -> None:
        """Call ``callback`` with every download request as it arrives (on the server's thread)."""
        self._observers.append(callback)

    def downloads_of(self, fax_id: str) -> list[Request]:
        return [r for r in self.downloads.requests if r.match.get("id") == fax_id]

    # -- the routes (on the server's loop) ------------------------------------------------------

    def _list(self, request: Request) -> Reply:
        query = request.query
        faxes = sorted(self.faxes.values(), key=lambda f: (f.received_at, f.id), reverse=True)
        if "to_date" in query:
            upper = parse_datetime(query["to_date"])
            faxes = [f for f in faxes if f.received_at <= upper]
        if "from_date" in query:
            lower = parse_datetime(query["from_date"])
            faxes = [f for f in faxes if f.received_at >= lower]
        if "status" in query:
            faxes = [f for f in faxes if f.status == query["status"]]
        limit, offset = int(query.get("limit", "20")), int(query.get("offset", "0"))
        page = faxes[offset : offset + limit]
        return json_reply(
            {
                "faxes": [f.record(self.server.origin) for f in page],
                "total": len(faxes),
                "limit": limit,
                "offset": offset,
            }
        )

    def _get(self, request: Request) -> Reply:
        fax = self.faxes.get(request.match["id"])
        if fax is None:
            return json_reply({"error": {"code": "fax_not_found", "message": "no such fax"}}, status=404)
        return json_reply(fax.record(self.server.origin))

    def _download(self, request: Request) -> Reply | Awaitable[Reply]:
        for callback in self._observers:
            callback(request)
        fax = self.faxes.get(request.match["id"])
        if fax is None:
            return json_reply({"error": {"code": "fax_not_found", "message": "no such fax"}}, status=404)
        with self._lock:
            pending = self._scripts.get(fax.id)
            answer = pending.pop(0) if pending else None
        if answer is not None:
            return answer if isinstance(answer, Reply) else answer(request, fax)
        return honest_download(request, fax)


def honest_download(request: Request, fax: Fax) -> Reply:
    """The document as an honest server sends it: whole, or the range asked for when ``If-Range``
    matches its ETag."""
    document = fax.document
    wanted = request.headers.get("range", "")
    if wanted.startswith("bytes=") and request.headers.get("if-range") == fax.etag:
        start = int(wanted.removeprefix("bytes=").split("-", 1)[0])
        return document_reply(
            document[start:],
            etag=fax.etag,
            last_modified=_LAST_MODIFIED,
            status=206,
            content_range=f"bytes {start}-{len(document) - 1}/{len(document)}",
        )
    return document_reply(document, etag=fax.etag, last_modified=_LAST_MODIFIED)


def ids(faxes: Sequence[Fax]) -> list[str]:
    return [fax.id for fax in faxes]
