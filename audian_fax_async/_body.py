"""What a document response promises, what to ask for to resume, and whether a body is whole.

Pure functions of status codes, headers and counts, tested without sockets. A resumed range is
accepted only with the first answer's validator (a strong ``ETag``, else ``Last-Modified``; RFC 9110
§13.1.5) and only where its ``Content-Range`` continues exactly where the bytes held end.
"""

from __future__ import annotations

import re

import httpx2
from attrs import define, frozen

from ._exceptions import IncompleteDownloadError

__all__ = ["BodyPlan", "Progress", "Restart", "check_complete", "plan_body", "range_headers", "validator_of"]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)\s*$", re.IGNORECASE)
_PDF_MAGIC = b"%PDF-"
_ACCEPT = "application/pdf, application/octet-stream;q=0.9, */*;q=0.1"


class Restart(Exception):
    """The answer does not continue the bytes we hold: start again from zero."""


@frozen
class BodyPlan:
    """What one download response promises: where its body starts, the document's full length,
    and the validator a later ``Range`` request may resume against (None: no resuming)."""

    start: int
    total: int | None
    validator: str | None


def range_headers(offset: int, validator: str | None) -> dict[str, str]:
    """Headers of a download request continuing at ``offset`` (from 0 without a validator)."""
    headers = {"Accept": _ACCEPT, "Accept-Encoding": "identity"}
    if offset > 0 and validator:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = validator
    return headers


def validator_of(headers: httpx2.Headers) -> str | None:
    """A strong ``ETag``, else ``Last-Modified``: what a resumed range must match (RFC 9110 §13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified") or None


def plan_body(
    status: int, headers: httpx2.Headers, *, offset: int, validator: str | None = None, total: int | None = None
) -> BodyPlan:
    """Read a download response's status and headers; raise :class:`Restart` if it cannot continue.

    ``offset``, ``validator`` and ``total`` are what the request asked to resume from and the
    length the first answer gave (``offset`` 0: the whole document). A ``200`` is the whole
    document; a ``206`` must start at ``offset``, be of a document of that ``total`` length, and
    carry ``validator`` (the same ETag, or the same Last-Modified).
    """
    accepts = headers.get("Accept-Ranges", "").strip().lower() == "bytes"
    length = _content_length(headers)
    if status == 206:
        if offset == 0 or validator is None:
            raise Restart("206 to a request that asked for the whole document")
        match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
        if match is None:
            raise Restart("206 without a usable Content-Range")
        start, end = int(match.group(1)), int(match.group(2))
        first_total, total = total, None if match.group(3) == "*" else int(match.group(3))
        if first_total is not None and total != first_total:
            raise Restart(f"206 of a document of {total} bytes, the first answer had {first_total}")
        if end < start:
            raise Restart(f"206 range {start}-{end} ends before it starts")
        if start != offset or (total is not None and end >= total):
            raise Restart(f"206 range {start}-{end} does not continue at byte {offset}")
        if length is not None and length != end - start + 1:
            raise Restart("206 Content-Length does not match its Content-Range")
        if validator_of(headers) != validator:
            raise Restart("206 for a different version of the document (its validator changed)")
        return BodyPlan(start=start, total=total, validator=validator)
    if status == 200:
        return BodyPlan(start=0, total=length, validator=validator_of(headers) if accepts else None)
    raise Restart(f"unexpected status {status} for a document")


def _content_length(headers: httpx2.Headers) -> int | None:
    raw = headers.get("Content-Length")
    if raw is None or "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    return int(raw)


def check_complete(
    *,
    received: int,
    total: int | None,
    file_size: int | None,
    head: bytes,
    tail: bytes,
    fmt: str | None,
    fax_id: str,
) -> None:
    """Raise :class:`IncompleteDownloadError` unless the body is whole and looks like its format."""
    if total is not None and received != total:
        raise IncompleteDownloadError(
            f"fax {fax_id}: received {received} bytes, the server promised {total}",
            fax_id=fax_id,
            expected=total,
            received=received,
        )
    if file_size is not None and received != file_size:
        raise IncompleteDownloadError(
            f"fax {fax_id}: received {received} bytes, the fax record says file_size={file_size}",
            fax_id=fax_id,
            expected=file_size,
            received=received,
        )
    if (fmt or "pdf").lower() == "pdf":
        if not head.startswith(_PDF_MAGIC):
            raise IncompleteDownloadError(
                f"fax {fax_id}: the document does not start with %PDF (got {head[:8]!r})",
                fax_id=fax_id,
                received=received,
            )
        if total is None and file_size is None and b"%%EOF" not in tail:
            # No length was promised at all: the PDF trailer is the only sign that nothing is missing.
            raise IncompleteDownloadError(
                f"fax {fax_id}: the body ended without a PDF trailer after {received} bytes (no length was given)",
                fax_id=fax_id,
                received=received,
            )


@define
class Progress:
    """What has been written so far (the state carried from one attempt to the next)."""

    offset: int = 0
    validator: str | None = None
    total: int | None = None
    head: bytes = b""
    tail: bytes = b""
    resumed: bool = False

    def reset(self) -> None:
        self.offset, self.head, self.tail, self.total, self.validator = 0, b"", b"", None, None

    def can_resume(self) -> bool:
        """Whether another attempt can continue (nothing held yet, or a validator to resume against)."""
        return self.offset == 0 or self.validator is not None

    def check(self, *, fax_id: str, file_size: int | None = None, fmt: str | None = "pdf") -> None:
        """:func:`check_complete` of what has been received."""
        check_complete(
            received=self.offset,
            total=self.total,
            file_size=file_size,
            head=self.head,
            tail=self.tail,
            fmt=fmt,
            fax_id=fax_id,
        )

    def take(self, chunk: bytes) -> None:
        if len(self.head) < 8:
            self.head = (self.head + chunk[:8])[:8]
        self.tail = (self.tail + chunk[-1024:])[-1024:]
        self.offset += len(chunk)
