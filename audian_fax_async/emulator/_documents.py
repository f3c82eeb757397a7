"""Fax documents: valid PDFs of an exact page count and byte length, generated lazily.

A document is described by a :class:`DocumentSpec` (fax id, pages, image sizes or a wanted total
size). :func:`build_layout` turns it into a :class:`Layout`: the PDF as a list of segments, either
literal bytes (the skeleton: objects, xref table, trailer) or a slice of a shared block of
pseudo-random bytes (each page's scanned image). The layout is small and cheap, so ``file_size`` is
known at listing time without producing the document; the bytes are materialized on download and
kept in a cache bounded by bytes, or, for very large documents, streamed straight from the layout
without ever holding them whole.

Each page is a 612x792 point page showing a line of text and one 8-bit grey image (the
incompressible padding, as a scan is), so real readers open and count it.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Iterator

from attrs import field, frozen

__all__ = ["CHUNK_SIZE", "DocumentSpec", "DocumentStore", "Layout", "build_layout"]

CHUNK_SIZE = 64 * 1024
"""Size of the chunks a document body is sent in."""

_BLOCK_SIZE = 1 << 20
_IMAGE_WIDTH = 300
_BIG_IMAGE_WIDTH = 1024
_XREF_ENTRY = 20  # "0000000000 00000 n \n"


@frozen(kw_only=True)
class DocumentSpec:
    """What a document is made of.

    Either ``image_heights`` (one per page, images ``300`` pixels wide, one byte a pixel) or
    ``size`` (an exact total byte length, the images filling it) must be given.
    """

    fax_id: str
    pages: int
    salt: int
    image_heights: tuple[int, ...] = ()
    size: int | None = None


@frozen
class _Pad:
    start: int
    length: int


Segment = bytes | _Pad


@frozen
class Layout:
    """A document as segments; ``size`` is its exact byte length."""

    segments: tuple[Segment, ...]
    size: int
    etag: str = field()


def _page_text(spec: DocumentSpec, index: int) -> bytes:
    # Only PDF-safe characters appear in fax ids, but parentheses and backslashes are escaped anyway.
    fax_id = spec.fax_id.replace("\\", "").replace("(", "").replace(")", "")
    return (
        f"BT /F1 14 Tf 72 740 Td (Audian emulator fax {fax_id}) Tj 0 -20 Td "
        f"(Page {index + 1} of {spec.pages}) Tj ET\nq 540 0 0 620 36 60 cm /Im1 Do Q\n"
    ).encode("ascii")


def _layout(spec: DocumentSpec, images: list[tuple[int, int]], filler: int | None) -> list[Segment]:
    """Assemble the PDF; ``images`` holds (width, height) per page, ``filler`` an extra stream length."""
    pages = spec.pages
    font_obj = 3 + 3 * pages
    filler_obj = font_obj + 1
    object_count = filler_obj if filler is not None else font_obj  # objects are numbered 1..count
    segments: list[Segment] = []
    offsets: list[int] = []
    position = 0

    def put(data: bytes | _Pad) -> None:
        nonlocal position
        segments.append(data)
        position += data.length if isinstance(data, _Pad) else len(data)

    def begin(number: int) -> None:
        offsets.append(position)
        put(f"{number} 0 obj\n".encode("ascii"))

    rng = random.Random(spec.salt)
    put(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    begin(1)
    put(b"<< /Type /Catalog /Pages 2 0 R >>\nendobj\n")
    begin(2)
    kids = " ".join(f"{3 + 3 * i} 0 R" for i in range(pages))
    put(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>\nendobj\n".encode("ascii"))
    for i, (width, height) in enumerate(images):
        page, content, image = 3 + 3 * i, 4 + 3 * i, 5 + 3 * i
        begin(page)
        put(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
            f"/Resources << /Font << /F1 {font_obj} 0 R >> /XObject << /Im1 {image} 0 R >> >> >>\n"
            "endobj\n".encode("ascii")
        )
        text = _page_text(spec, i)
        begin(content)
        put(f"<< /Length {len(text)} >>\nstream\n".encode("ascii") + text + b"\nendstream\nendobj\n")
        begin(image)
        length = width * height
        put(
            f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray "
            f"/BitsPerComponent 8 /Length {length} >>\nstream\n".encode("ascii")
        )
        put(_Pad(rng.randrange(_BLOCK_SIZE), length))
        put(b"\nendstream\nendobj\n")
    begin(font_obj)
    put(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n")
    if filler is not None:
        # An unreferenced stream (allowed by the format) absorbs the bytes an exact size needs.
        begin(filler_obj)
        put(f"<< /Length {filler} >>\nstream\n".encode("ascii"))
        put(_Pad(rng.randrange(_BLOCK_SIZE), filler))
        put(b"\nendstream\nendobj\n")
    xref_at = position
    doc_id = hashlib.sha256(f"{spec.fax_id}|{spec.salt}".encode()).hexdigest()[:32]
    xref = [f"xref\n0 {object_count + 1}\n0000000000 65535 f \n"]
    xref.extend(f"{offset:010d} 00000 n \n" for offset in offsets)
    xref.append(
        f"trailer\n<< /Size {object_count + 1} /Root 1 0 R /ID [<{doc_id}> <{doc_id}>] >>\n"
        f"startxref\n{xref_at}\n%%EOF\n"
    )
    put("".join(xref).encode("ascii"))
    return segments


def _total(segments: list[Segment]) -> int:
    return sum(s.length if isinstance(s, _Pad) else len(s) for s in segments)


def build_layout(spec: DocumentSpec) -> Layout:
    """The document's segments and exact size; cheap (no padding bytes are produced).

    Raises ``ValueError`` if ``spec.size`` is too small to hold ``spec.pages`` pages.
    """
    if spec.pages < 1:
        raise ValueError("a document has at least one page")
    if spec.size is None:
        images = [(_IMAGE_WIDTH, h) for h in spec.image_heights]
        if len(images) != spec.pages:
            raise ValueError("image_heights must give one height per page")
        segments = _layout(spec, images, None)
    else:
        empty = _total(_layout(spec, [(1, 1)] * spec.pages, 0))
        room = spec.size - empty
        if room < 0:
            raise ValueError(f"{spec.size} bytes cannot hold {spec.pages} pages (need at least {empty})")
        # Leave room for the longer numbers a bigger image's dictionary spells out.
        rows = max(0, room - 64 * spec.pages - 64) // (_BIG_IMAGE_WIDTH * spec.pages)
        images = [(_BIG_IMAGE_WIDTH, rows)] * spec.pages if rows > 0 else [(1, 1)] * spec.pages
        filler = 0
        for _ in range(12):
            segments = _layout(spec, images, filler)
            missing = spec.size - _total(segments)
            if missing == 0:
                break
            if filler + missing < 0:
                raise ValueError(f"cannot lay out exactly {spec.size} bytes for {spec.pages} pages")
            filler += missing
        else:  # pragma: no cover - the digits of a length change at most twice
            raise ValueError(f"cannot lay out exactly {spec.size} bytes")
    size = _total(segments)
    etag_source = f"{spec.fax_id}|{spec.pages}|{spec.salt}|{spec.image_heights}|{size}"
    etag = '"' + hashlib.sha256(etag_source.encode()).hexdigest()[:40] + '"'
    return Layout(tuple(segments), size, etag)


class DocumentStore:
    """Produces documents' bytes from layouts; caches the small ones, least recently used first out.

    Documents larger than ``materialize_limit`` are never held whole: :meth:`iter_range` streams
    them from the layout.
    """

    def __init__(self, *, seed: int, cache_bytes: int, materialize_limit: int = 16 * 1024 * 1024) -> None:
        self._block = random.Random(f"audian-emulator-pad-{seed}").randbytes(_BLOCK_SIZE)
        # The block repeated once more lets any slice of up to one block be taken without wrapping.
        self._double = self._block + self._block
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self.materialize_limit = materialize_limit

    @property
    def cache_entries(self) -> int:
        """How many documents are held in memory."""
        return len(self._cache)

    @property
    def cached_bytes(self) -> int:
        """How many bytes of documents are held in memory."""
        return self._cached_bytes

    def clear(self) -> None:
        """Forget every cached document."""
        self._cache.clear()
        self._cached_bytes = 0

    def _pad(self, pad: _Pad, skip: int = 0, length: int | None = None) -> Iterator[bytes]:
        remaining = pad.length - skip if length is None else length
        at = (pad.start + skip) % _BLOCK_SIZE
        while remaining > 0:
            n = min(remaining, _BLOCK_SIZE)
            yield self._double[at : at + n]
            remaining -= n
            at = (at + n) % _BLOCK_SIZE

    def _produce(self, layout: Layout) -> bytes:
        parts: list[bytes] = []
        for segment in layout.segments:
            if isinstance(segment, _Pad):
                parts.extend(self._pad(segment))
            else:
                parts.append(segment)
        return b"".join(parts)

    def materialize(self, key: str, layout: Layout) -> bytes | None:
        """The whole document, from cache or produced now; ``None`` if it is too big to hold."""
        data = self._cache.get(key)
        if data is not None:
            self._cache.move_to_end(key)
            return data
        if layout.size > self.materialize_limit:
            return None
        data = self._produce(layout)
        if len(data) <= self._cache_bytes:
            self._cache[key] = data
            self._cached_bytes += len(data)
            while self._cached_bytes > self._cache_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= len(evicted)
        return data

    def iter_range(self, layout: Layout, start: int, end: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of a document, in chunks, without producing it whole."""
        position = 0
        pending = bytearray()
        for segment in layout.segments:
            length = segment.length if isinstance(segment, _Pad) else len(segment)
            seg_start, seg_end = position, position + length
            position = seg_end
            if seg_end <= start:
                continue
            if seg_start >= end:
                break
            lo = max(start, seg_start) - seg_start
            hi = min(end, seg_end) - seg_start
            pieces = self._pad(segment, lo, hi - lo) if isinstance(segment, _Pad) else iter((segment[lo:hi],))
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    take = chunk_size - len(pending)
                    if not pending and len(view) >= chunk_size:
                        yield bytes(view[:chunk_size])
                        view = view[chunk_size:]
                        continue
                    pending += view[:take]
                    view = view[take:]
                    if len(pending) == chunk_size:
                        yield bytes(pending)
                        pending.clear()
        if pending:
            yield bytes(pending)

    def sha256(self, key: str, layout: Layout) -> str:
        """Hex SHA-256 of the document's bytes (streamed for big documents)."""
        data = self.materialize(key, layout)
        if data is not None:
            return hashlib.sha256(data).hexdigest()
        return self.sha256_streamed(layout)

    def sha256_streamed(self, layout: Layout) -> str:
        """Hex SHA-256 computed from the layout without touching the cache (safe in a worker thread)."""
        digest = hashlib.sha256()
        for chunk in self.iter_range(layout, 0, layout.size, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
