"""Streaming one fax document: to a file (atomically) or to the caller, resuming where it broke.

Pure pieces (what to ask for, what a response promises, whether a body is complete) sit apart from
the two loops that use them: :func:`download_file` writes chunks straight into a temporary file
beside the destination, checks the byte count and the PDF signature, then fsyncs and renames it into
place; :class:`DocumentStream` hands the chunks to the caller (for object storage) instead.

A dropped connection resumes with ``Range`` and ``If-Range`` (the ETag of the first answer) when the
server offers ranges, and only where the ``206`` really starts at the byte asked for; otherwise the
file restarts from zero. No partial file ever stands at the destination path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio
import httpx2
from attrs import define, frozen

from ._client import close_response
from ._durable import CommitSync, fsync_dir
from ._exceptions import (
    APIStatusError,
    AudianError,
    DestinationError,
    IncompleteDownloadError,
)
from ._hashing import StreamHasher
from ._limiter import Hold
from ._models import DownloadResult, ReceivedFax
from ._pacing import pacer
from ._paths import partial_name
from ._retry import backoff_delay, call_with_retries, retry_after_of, should_retry
from ._threads import run_blocking
from .resources._base import fax_path

if TYPE_CHECKING:
    from ._client import FaxClient

__all__ = [
    "BodyPlan",
    "DocumentStream",
    "FileDownload",
    "check_complete",
    "download_file",
    "plan_body",
    "range_headers",
]

T = TypeVar("T")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_PDF_MAGIC = b"%PDF-"
#: Without any promised length, a body larger than this is refused (a lying server cannot fill the disk).
DEFAULT_MAX_DOCUMENT_BYTES = 4 * 1024**3


class _Restart(Exception):
    """The answer does not continue the bytes we hold: start again from zero."""


@frozen
class BodyPlan:
    """What one download response promises: where its body starts and the document's full length."""

    start: int
    total: int | None
    etag: str | None
    accepts_ranges: bool


def range_headers(offset: int, etag: str | None) -> dict[str, str]:
    """Headers of a download request continuing at ``offset``."""
    headers = {"Accept": "application/pdf, application/octet-stream;q=0.9, */*;q=0.1", "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
        if etag:
            headers["If-Range"] = etag
    return headers


def plan_body(status: int, headers: httpx2.Headers, *, offset: int) -> BodyPlan:
    """Read a download response's status and headers; raise :class:`_Restart` if it cannot continue."""
    etag = headers.get("ETag")
    if etag is not None and etag.startswith("W/"):
        etag = None  # a weak ETag cannot validate byte ranges
    accepts = headers.get("Accept-Ranges", "").strip().lower() == "bytes"
    length = _content_length(headers)
    if status == 206:
        match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
        if match is None:
            raise _Restart("206 without a usable Content-Range")
        start, end = int(match.group(1)), int(match.group(2))
        total = None if match.group(3) == "*" else int(match.group(3))
        if start != offset or end < start or (total is not None and end >= total):
            raise _Restart(f"206 starts at byte {start}, not at {offset}")
        if length is not None and length != end - start + 1:
            raise _Restart("206 Content-Length does not match its Content-Range")
        return BodyPlan(start=start, total=total, etag=etag, accepts_ranges=True)
    if status == 200:
        return BodyPlan(start=0, total=length, etag=etag, accepts_ranges=accepts)
    raise _Restart(f"unexpected status {status} for a document")


def _content_length(headers: httpx2.Headers) -> int | None:
    raw = headers.get("Content-Length")
    if raw is None or "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


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
class _Progress:
    """What has been written so far (the state carried from one attempt to the next)."""

    offset: int = 0
    etag: str | None = None
    total: int | None = None
    head: bytes = b""
    tail: bytes = b""
    resumed: bool = False

    def reset(self) -> None:
        self.offset, self.head, self.tail, self.total = 0, b"", b"", None

    def take(self, chunk: bytes) -> None:
        if len(self.head) < 8:
            self.head = (self.head + chunk[:8])[:8]
        self.tail = (self.tail + chunk[-1024:])[-1024:]
        self.offset += len(chunk)


class _DestinationExists(Exception):
    """The destination file exists and may not be replaced."""


class _FileSink:
    """A temporary file beside the destination, hashed as it is written.

    Opening and writing happen on the event loop (microseconds each on a local disk); the one slow
    step, fsync and the atomic rename, takes one trip to a worker thread at commit. Worker-thread
    trips cost ~0.2 ms each here and contend with the loop's socket I/O for the GIL: going from six
    trips per file to one made bulk downloads about 1.5x faster (benchmarks/README.md).
    """

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = partial_name(final)
        self._file: IO[bytes] | None = None
        self._hasher = StreamHasher()  # big chunks hashed beside the loop (_hashing.py)

    def open(self, *, overwrite: bool) -> None:
        # Inline on purpose: creating a file is a metadata call of microseconds on a local disk,
        # while a trip to a worker thread costs ~0.2 ms and contends for the GIL with the loop's
        # own I/O (benchmarks/README.md). The slow part, fsync, runs in a thread at commit.
        try:
            self._file = self._open(overwrite)
        except _DestinationExists:
            raise DestinationError(f"{self.final} already exists (pass overwrite=True to replace it)") from None
        except OSError as exc:
            raise _destination_error(exc, self.final) from exc

    def _open(self, overwrite: bool) -> IO[bytes]:
        # The check and the open share one trip to a worker thread (each trip costs the loop).
        if not overwrite and self.final.exists():
            raise _DestinationExists
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        return os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise _destination_error(exc, self.final) from exc
        self._hasher.update(chunk)

    def restart(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self._hasher.reset()

    async def commit(self, *, overwrite: bool, then: Callable[[str], T], sync: CommitSync | None = None) -> T:
        """fsync, hash, then move into place atomically (refusing to replace a file unless ``overwrite``).

        ``then`` gets the sha256 of the file's bytes once it stands; its result is returned. Without
        kernel AIO (``sync`` missing or without it) the whole commit, ``then`` included, is one trip
        to a worker thread. With it, the fsyncs go to the kernel and the rest runs here, so ``then``
        must not block; ``sync.after_commit()`` then fsyncs what ``then`` wrote (_durable.py).
        """
        try:
            if sync is not None and sync.aio:
                return await self._commit_aio(overwrite, then, sync)
            return await run_blocking(self._commit, overwrite, then, sync.sync_dir_blocking if sync else fsync_dir)
        except FileExistsError:
            raise DestinationError(f"{self.final} already exists (pass overwrite=True to replace it)") from None
        except OSError as exc:
            raise _destination_error(exc, self.final) from exc

    def _commit(self, overwrite: bool, then: Callable[[str], T], sync_dir: Callable[[Path], None]) -> T:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sha256 = self._hasher.hexdigest()
        self._place(overwrite)
        sync_dir(self.final.parent)
        return then(sha256)

    async def _commit_aio(self, overwrite: bool, then: Callable[[str], T], sync: CommitSync) -> T:
        file = self._file
        assert file is not None
        file.flush()
        await sync.fsync(file.fileno())
        file.close()
        sha256 = await self._hasher.adigest()  # big chunks may still be in the hashing thread
        self._place(overwrite)  # a rename: metadata, microseconds (like opening the file)
        await sync.sync_dir(self.final.parent)
        result = then(sha256)
        await sync.after_commit()
        return result

    def _place(self, overwrite: bool) -> None:
        """Move the fsynced temporary file to its name (never over another file unless ``overwrite``)."""
        if overwrite:
            os.replace(self.temp, self.final)
            return
        try:
            os.link(self.temp, self.final)  # fails if the destination exists: never clobber
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system
            if self.final.exists():
                raise FileExistsError(self.final) from None
            os.replace(self.temp, self.final)
        else:
            os.unlink(self.temp)

    async def discard(self) -> None:
        """Close and remove the temporary file (also while being cancelled)."""
        with anyio.CancelScope(shield=True):
            await run_blocking(self.discard_now)

    def discard_now(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)


def _destination_error(exc: OSError, path: Path) -> DestinationError:
    reason = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOENT: "folder does not exist",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return DestinationError(f"cannot write {path}: {reason}")


async def _open_document(client: FaxClient, fax_id: str, state: _Progress) -> tuple[httpx2.Response, BodyPlan]:
    request = client.build_request("GET", fax_path(fax_id, "download"), headers=range_headers(state.offset, state.etag))
    response = await client.send(request, stream=True)
    try:
        plan = plan_body(response.status_code, response.headers, offset=state.offset)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await close_response(response)
        raise
    return response, plan


def _raw_chunks(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body as it arrives; a body that was already read (mock transports read theirs) in one piece."""
    if response.is_stream_consumed and hasattr(response, "_content"):

        async def whole() -> AsyncIterator[bytes]:
            yield response.content

        return whole()
    stream = response.stream
    if isinstance(stream, httpx2.AsyncByteStream) and not response.is_stream_consumed and not response.is_closed:
        # The transport's own chunks, without aiter_raw's generator and re-chunking around them (one
        # layer less per chunk); the caller closes the response as before.
        response.is_stream_consumed = True
        return stream.__aiter__()
    return response.aiter_raw()


async def _read_body(
    client: FaxClient,
    response: httpx2.Response,
    state: _Progress,
    limit: int,
    fax_id: str,
    write: Callable[[bytes], None],
) -> None:
    try:
        async for chunk in _raw_chunks(response):
            if state.offset + len(chunk) > limit:
                raise IncompleteDownloadError(
                    f"fax {fax_id}: the server sent more than the {limit} bytes it promised",
                    fax_id=fax_id,
                    expected=limit,
                    received=state.offset + len(chunk),
                )
            write(chunk)
            state.take(chunk)
        await pacer.turn()  # hundreds finishing together take turns too (closing, committing)
    except httpx2.HTTPError as exc:
        raise client.map_transport_error(exc, response.request) from exc
    finally:
        with anyio.CancelScope(shield=True):
            await close_response(response)


async def download_file(
    client: FaxClient,
    fax_id: str,
    final: Path,
    *,
    fax: ReceivedFax | None = None,
    overwrite: bool = False,
    max_retries: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    on_commit: Callable[[DownloadResult], None] | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    sync: CommitSync | None = None,
) -> DownloadResult:
    """Download one document to ``final`` (whose folder exists) through a temporary file.

    ``limiter`` is an extra cap held with the download slot while bytes flow (``download_all``'s
    ``concurrency``), so that preparing and committing files happens outside it.

    ``on_commit`` runs right after the file is in place, in the same uncancellable step and the
    same worker thread (it may block), so a record of the file (the bulk manifest) can never be
    missing for a file that stands. ``sync`` makes the commit durable through kernel AIO where it can
    (:class:`~._durable.CommitSync`; ``on_commit`` must then not block), else in a worker thread.
    """
    job = FileDownload(
        client,
        fax_id,
        final,
        fax=fax,
        overwrite=overwrite,
        max_retries=max_retries,
        on_bytes=on_bytes,
        on_retry=on_retry,
        max_document_bytes=max_document_bytes,
        on_commit=on_commit,
        limiter=limiter,
        sync=sync,
    )
    return await job.complete()


class FileDownload:
    """One document on its way to a file, across its attempts: :func:`download_file`'s engine.

    Creating it opens the temporary file. :meth:`complete` then downloads (with retries, each attempt
    holding its own download slot), commits, and removes the temporary file on any failure.
    ``download_all`` runs the first attempt itself with :meth:`fetch`, in a slot it keeps from one fax
    to the next, and hands the rest to :meth:`complete` (``fetched=True``, or the error it failed with).

    One object with slots rather than closures over a dozen locals: hundreds of downloads can be in
    flight (and as many waiting for a slot), and every closure cell is one more object for the
    garbage collector to walk (benchmarks/README.md, scenario 5).
    """

    __slots__ = (
        "attempts",
        "client",
        "fax",
        "fax_id",
        "file_size",
        "final",
        "limiter",
        "max_document_bytes",
        "on_bytes",
        "on_commit",
        "on_retry",
        "overwrite",
        "policy",
        "sink",
        "state",
        "sync",
    )

    def __init__(
        self,
        client: FaxClient,
        fax_id: str,
        final: Path,
        *,
        fax: ReceivedFax | None = None,
        overwrite: bool = False,
        max_retries: int | None = None,
        on_bytes: Callable[[int], None] | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        on_commit: Callable[[DownloadResult], None] | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        sync: CommitSync | None = None,
    ) -> None:
        self.client, self.fax_id, self.final, self.fax = client, fax_id, final, fax
        self.overwrite, self.on_bytes, self.on_retry = overwrite, on_bytes, on_retry
        self.max_document_bytes, self.on_commit, self.limiter, self.sync = max_document_bytes, on_commit, limiter, sync
        self.policy = client.retry_policy.with_max_retries(max_retries)
        self.file_size = fax.file_size if fax is not None else None
        self.attempts = 0
        self.state = _Progress()
        self.sink = _FileSink(final)
        self.sink.open(overwrite=overwrite)

    async def complete(self, *, fetched: bool = False, failed: Exception | None = None) -> DownloadResult:
        """Download (unless ``fetched``: a :meth:`fetch` already got the whole body), then commit.

        ``failed`` is the error of a first :meth:`fetch`: the retries go on from it. The temporary
        file is removed on any failure, cancellation included; the commit itself is not cancellable.
        """
        try:
            if not fetched:
                await call_with_retries(
                    self.attempt,
                    self.policy,
                    idempotent=True,
                    operation=f"download {self.fax_id}",
                    on_retry=self.on_retry,
                    failed_first=failed,
                )
            with anyio.CancelScope(shield=True):
                result = await self.sink.commit(overwrite=self.overwrite, then=self.committed, sync=self.sync)
        except BaseException:
            await self.sink.discard()
            raise
        return result

    def write(self, chunk: bytes) -> None:
        self.sink.write(chunk)
        if self.on_bytes is not None:
            self.on_bytes(len(chunk))

    async def attempt(self) -> None:
        """One attempt, holding a download slot (and ``limiter``'s token) for its duration."""
        async with (
            Hold(self.limiter) if self.limiter is not None else contextlib.nullcontext(),
            self.client.download_slot(),
        ):
            await self.fetch()

    async def fetch(self) -> None:
        """One attempt, in a download slot the caller holds: the whole body into the temporary file."""
        self.attempts += 1
        client, fax_id, state, sink, file_size = self.client, self.fax_id, self.state, self.sink, self.file_size
        async with pacer.downloading():  # a fair turn on the loop when hundreds run (_pacing.py)
            try:
                response, plan = await _open_document(client, fax_id, state)
            except _Restart as exc:
                state.reset()
                sink.restart()
                raise IncompleteDownloadError(f"fax {fax_id}: {exc}; restarting", fax_id=fax_id) from None
            if plan.start != state.offset:  # a 200 to a range request: the server starts over
                if self.on_bytes is not None and state.offset:
                    self.on_bytes(-state.offset)
                state.reset()
                sink.restart()
            elif plan.start > 0:
                state.resumed = True
            state.etag = plan.etag if plan.accepts_ranges else None
            state.total = plan.total
            limit = plan.total if plan.total is not None else (file_size or self.max_document_bytes)
            if file_size is not None and plan.total is not None and plan.total != file_size:
                with anyio.CancelScope(shield=True):
                    await close_response(response)
                raise IncompleteDownloadError(
                    f"fax {fax_id}: the server offers {plan.total} bytes, the fax record says {file_size}",
                    fax_id=fax_id,
                    expected=file_size,
                    received=plan.total,
                )
            await _read_body(client, response, state, limit, fax_id, self.write)
            check_complete(
                received=state.offset,
                total=state.total,
                file_size=file_size,
                head=state.head,
                tail=state.tail,
                fmt=self.fax.format if self.fax is not None else "pdf",
                fax_id=fax_id,
            )

    async def discard(self) -> None:
        """Remove the temporary file (for a download that will not be completed)."""
        await self.sink.discard()

    def discard_now(self) -> None:
        """Close and remove the temporary file here and now (blocking; a last-resort cleanup)."""
        self.sink.discard_now()

    def committed(self, sha256: str) -> DownloadResult:
        """The result, once the file stands (runs in the commit's worker thread, then ``on_commit``)."""
        state = self.state
        done = DownloadResult(
            path=self.final,
            bytes=state.offset,
            sha256=sha256,
            fax=self.fax,
            resumed=state.resumed,
            attempts=self.attempts,
        )
        if self.on_commit is not None:
            self.on_commit(done)
        return done


class DocumentStream:
    """The chunks of one fax document, for piping somewhere other than a local file.

    Iterate it once. A dropped connection resumes transparently with ``Range`` where the
    server allows; where it cannot, :class:`IncompleteDownloadError` is raised (bytes already
    handed out cannot be taken back). ``bytes_read``, ``total`` and ``sha256`` tell what passed.
    """

    def __init__(self, client: FaxClient, fax_id: str, *, max_retries: int | None = None) -> None:
        self._client = client
        self.fax_id = fax_id
        self._policy = client.retry_policy.with_max_retries(max_retries)
        self._state = _Progress()
        self._hasher = hashlib.sha256()
        self._used = False
        self._response: httpx2.Response | None = None

    @property
    def bytes_read(self) -> int:
        return self._state.offset

    @property
    def total(self) -> int | None:
        return self._state.total

    @property
    def sha256(self) -> str:
        return self._hasher.hexdigest()

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._used:
            raise RuntimeError("a DocumentStream can be iterated only once")
        self._used = True
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        state, retries = self._state, 0
        while True:
            try:
                try:
                    response, plan = await _open_document(self._client, self.fax_id, state)
                except _Restart as exc:
                    raise IncompleteDownloadError(
                        f"fax {self.fax_id}: cannot resume at byte {state.offset}: {exc}", fax_id=self.fax_id
                    ) from None
                if plan.start != state.offset:
                    with anyio.CancelScope(shield=True):
                        await close_response(response)
                    raise IncompleteDownloadError(
                        f"fax {self.fax_id}: the server restarted the document at byte 0 after {state.offset} bytes "
                        "were streamed",
                        fax_id=self.fax_id,
                    )
                state.etag = plan.etag if plan.accepts_ranges else None
                state.total = plan.total
                self._response = response
                try:
                    async for chunk in _raw_chunks(response):
                        self._hasher.update(chunk)
                        state.take(chunk)
                        yield chunk
                except httpx2.HTTPError as exc:
                    raise self._client.map_transport_error(exc, response.request) from exc
                finally:
                    self._response = None
                    with anyio.CancelScope(shield=True):
                        await close_response(response)
                check_complete(
                    received=state.offset,
                    total=state.total,
                    file_size=None,
                    head=state.head,
                    tail=state.tail,
                    fmt="pdf",
                    fax_id=self.fax_id,
                )
                return
            except AudianError as exc:
                can_resume = state.offset == 0 or state.etag is not None
                if retries >= self._policy.max_retries or not can_resume or not _retryable(exc, self._policy):
                    raise
                retries += 1
                retry_after = retry_after_of(exc)
                await self._policy.sleep(backoff_delay(retries, self._policy, retry_after=retry_after))

    async def aclose(self) -> None:
        response = self._response
        if response is not None:
            with anyio.CancelScope(shield=True):
                await close_response(response)


def _retryable(exc: BaseException, policy: Any) -> bool:
    if isinstance(exc, APIStatusError | IncompleteDownloadError) or hasattr(exc, "request_sent"):
        return should_retry(exc, idempotent=True, policy=policy)
    return False
