"""Streaming one fax document: to a file (atomically) or to the caller, resuming where it broke.

Pure pieces (what to ask for, what a response promises, whether a body is complete) sit apart from
the two loops that use them: :func:`download_file` writes chunks into a temporary file beside the
destination, checks the byte count and the PDF signature, then fsyncs and renames it into place;
:class:`DocumentStream` hands the chunks to the caller (for object storage) instead.

A dropped connection resumes with ``Range`` and ``If-Range`` only when the first answer carried a
validator (a strong ``ETag``, else ``Last-Modified``), and only where the ``206`` carries the same
validator and starts at the byte asked for; otherwise the document restarts from byte 0, so two
versions of a document are never spliced. No partial file ever stands at the destination path.
Every attempt, of a file download or a stream, goes through the one retry engine (``_retry``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import anyio
import httpx2

from ._blocking import run_blocking
from ._body import BodyPlan, Progress, Restart, check_complete, plan_body, range_headers
from ._exceptions import APITimeoutError, DestinationError, IncompleteDownloadError
from ._models import DownloadResult, ReceivedFax
from ._options import CallOptions, request_options
from ._paths import partial_name
from ._retry import call_with_retries, log_failure, retrying, should_retry
from ._telemetry import NO_CALL, Call
from .resources._base import fax_path

if TYPE_CHECKING:
    from ._client import FaxClient

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "BodyPlan",
    "DocumentStream",
    "FileDownload",
    "check_complete",
    "download_file",
    "fsync_dir",
    "plan_body",
    "range_headers",
]

T = TypeVar("T")
#: Without any promised length, a body larger than this is refused (a lying server cannot fill the disk).
DEFAULT_MAX_DOCUMENT_BYTES = 4 * 1024**3


class _FileSink:
    """A temporary file beside the destination, hashed as it is written.

    Creating it and committing it each take one trip to a worker thread; chunks are written on the
    loop (into the page cache) as they arrive. The commit fsyncs the file, moves it into place
    without replacing another file (unless asked to), fsyncs the folder, then runs ``then``, all in
    that one trip and without cancellation: a record of the file (the bulk manifest) is written
    right after the file stands.
    """

    __slots__ = ("_file", "_hasher", "final", "temp", "urgent")

    def __init__(self, final: Path, *, urgent: bool = False) -> None:
        self.final = final
        self.urgent = urgent
        self.temp = partial_name(final)
        self._file: IO[bytes] | None = None
        self._hasher = hashlib.sha256()

    async def open(self, *, overwrite: bool) -> None:
        await run_blocking(self.open_now, overwrite, urgent=self.urgent)

    def open_now(self, overwrite: bool) -> None:
        """Create the temporary file (blocking: from a worker thread)."""
        try:
            self._file = self._open(overwrite)
        except FileExistsError:
            raise DestinationError(f"{self.final} already exists (pass overwrite=True to replace it)") from None
        except OSError as exc:
            raise _destination_error(exc, self.final) from exc

    def _open(self, overwrite: bool) -> IO[bytes]:
        if not overwrite and os.path.lexists(self.final):
            raise FileExistsError(self.final)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        return os.fdopen(os.open(self.temp, flags, 0o644), "wb")

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
        self._hasher = hashlib.sha256()

    async def commit(self, *, overwrite: bool, then: Callable[[str], T]) -> T:
        """fsync, move into place atomically, fsync the folder, then ``then(sha256)``; its result."""
        try:
            with anyio.CancelScope(shield=True):
                result = await run_blocking(self._commit, overwrite, then, urgent=self.urgent)
        except FileExistsError:
            raise DestinationError(f"{self.final} already exists (pass overwrite=True to replace it)") from None
        except OSError as exc:
            raise _destination_error(exc, self.final) from exc
        return result

    def _commit(self, overwrite: bool, then: Callable[[str], T]) -> T:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._place(overwrite)
        fsync_dir(self.final.parent)
        return then(self._hasher.hexdigest())

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
            if os.path.lexists(self.final):
                raise FileExistsError(self.final) from None
            os.replace(self.temp, self.final)
        else:
            os.unlink(self.temp)

    async def discard(self) -> None:
        """Close and remove the temporary file (also while being cancelled)."""
        with anyio.CancelScope(shield=True):
            await run_blocking(self.discard_now, urgent=self.urgent)

    def discard_now(self) -> None:
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so that a rename in it survives a power loss (where the OS allows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a platform that cannot open folders
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise  # a failed write-back (EIO): the rename may not be durable
    finally:
        os.close(fd)


def _destination_error(exc: OSError, path: Path) -> DestinationError:
    reason = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOENT: "folder does not exist",
        errno.ELOOP: "a symbolic link is in the way",
        errno.EIO: "I/O error while writing",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return DestinationError(f"cannot write {path}: {reason}")


async def _raw(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body as it arrives; one a transport already read (``httpx2.MockTransport``'s) whole."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


class _Attempt:
    """One request for the document, from where ``state`` stands: open it, then read its chunks."""

    def __init__(self, client: FaxClient, fax_id: str, state: Progress, options: CallOptions) -> None:
        self.client, self.fax_id, self.state, self.options = client, fax_id, state, options

    async def open(self) -> tuple[httpx2.Response, BodyPlan]:
        state = self.state
        headers = range_headers(state.offset, state.validator)
        request = self.client.build_request(
            "GET", fax_path(self.fax_id, "download"), headers=headers, **request_options(self.options)
        )
        response = await self.client.send(request, stream=True)
        try:
            plan = plan_body(
                response.status_code,
                response.headers,
                offset=state.offset if "Range" in headers else 0,
                validator=state.validator,
                total=state.total if "Range" in headers else None,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            raise
        return response, plan

    async def chunks(self, response: httpx2.Response, limit: int) -> AsyncIterator[bytes]:
        """The body as it arrives, refused past ``limit`` bytes in all; the response is closed after."""
        state = self.state
        try:
            async for chunk in _raw(response):
                if state.offset + len(chunk) > limit:
                    raise IncompleteDownloadError(
                        f"fax {self.fax_id}: the server sent more than the {limit} bytes it promised",
                        fax_id=self.fax_id,
                        expected=limit,
                        received=state.offset + len(chunk),
                    )
                yield chunk
        except httpx2.HTTPError as exc:
            raise self.client.map_transport_error(exc, response.request) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()


async def download_file(
    client: FaxClient,
    fax_id: str,
    final: Path,
    *,
    fax: ReceivedFax | None = None,
    overwrite: bool = False,
    options: CallOptions | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    on_commit: Callable[[DownloadResult], None] | None = None,
) -> DownloadResult:
    """Download one document to ``final`` (whose folder exists) through a temporary file.

    Each attempt holds a download slot while bytes flow; waits between attempts hold none.
    ``on_commit`` runs right after the file is in place, in the same uncancellable step and the
    same worker thread (it may block), so a record of the file (the bulk manifest) is written
    right after the file stands.
    """
    job = FileDownload(
        client,
        fax_id,
        final,
        fax=fax,
        overwrite=overwrite,
        options=options,
        on_bytes=on_bytes,
        on_retry=on_retry,
        max_document_bytes=max_document_bytes,
        on_commit=on_commit,
    )
    return await job.run()


class FileDownload:
    """One document on its way to a file, across its attempts: :func:`download_file`'s engine."""

    def __init__(
        self,
        client: FaxClient,
        fax_id: str,
        final: Path,
        *,
        fax: ReceivedFax | None = None,
        overwrite: bool = False,
        options: CallOptions | None = None,
        on_bytes: Callable[[int], None] | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        on_commit: Callable[[DownloadResult], None] | None = None,
        limiter: AbstractAsyncContextManager[object] | None = None,
        urgent: bool = False,
    ) -> None:
        self.client, self.fax_id, self.final, self.fax = client, fax_id, final, fax
        self.limiter = limiter
        self.overwrite, self.on_bytes, self.on_retry = overwrite, on_bytes, on_retry
        self.max_document_bytes, self.on_commit = max_document_bytes, on_commit
        self.options: CallOptions = options or {}
        self.policy = client.retry_policy.with_max_retries(self.options.get("max_retries"))
        self.file_size = fax.file_size if fax is not None else None
        self.attempts = 0
        self.state = Progress()
        self.sink = _FileSink(final, urgent=urgent)  # urgent: its file work never waits for other downloads'
        self.span: Call = NO_CALL  # the download's span while it runs

    def open_now(self) -> None:
        """Create the temporary file here and now (blocking), so that :meth:`run` need not."""
        self.sink.open_now(self.overwrite)

    async def run(self, *, opened: bool = False) -> DownloadResult:
        """Open the temporary file (unless ``opened``), download (with retries), commit; the
        temporary file is removed on any failure, cancellation included. The commit itself is not
        cancellable."""
        if not opened:
            await self.sink.open(overwrite=self.overwrite)
        deadline = self.client.download_deadline
        path = fax_path(self.fax_id, "download")
        try:
            with self.client._telemetry.download(self.client, path, self.fax_id, self.fax) as self.span:
                with anyio.move_on_after(deadline if deadline is not None else math.inf) as scope:
                    await call_with_retries(
                        self.attempt,
                        self.policy,
                        idempotent=True,
                        operation=f"download {self.fax_id}",
                        on_retry=self.on_retry,
                        span=self.span,
                    )
                if scope.cancelled_caught:
                    raise APITimeoutError(
                        f"fax {self.fax_id}: not downloaded within download_deadline={deadline} s",
                        method="GET",
                        url=str(self.client.url_for(path)),
                    )
                done = await self.sink.commit(overwrite=self.overwrite, then=self.committed)
                self.span.finished(done.bytes, done.resumed)
                return done
        except BaseException:
            await self.sink.discard()
            raise

    async def attempt(self) -> None:
        """One attempt, holding a download slot (and ``limiter``, if given: a reusable async context
        manager such as an ``anyio.CapacityLimiter``, entered first): the whole body into the
        temporary file."""
        asked = anyio.current_time()
        if self.limiter is None:
            async with self.client.download_slot():
                with self.span.in_slot(anyio.current_time() - asked):
                    await self.fetch()
            return
        async with self.limiter, self.client.download_slot():
            with self.span.in_slot(anyio.current_time() - asked):
                await self.fetch()

    def _forget(self) -> None:
        state = self.state
        if self.on_bytes is not None and state.offset:
            self.on_bytes(-state.offset)
        state.reset()
        self.sink.restart()

    async def fetch(self) -> None:
        self.attempts += 1
        state, fax_id, file_size = self.state, self.fax_id, self.file_size
        if not state.can_resume():
            self._forget()
        attempt = _Attempt(self.client, fax_id, state, self.options)
        try:
            response, plan = await attempt.open()
        except Restart as exc:
            self._forget()
            raise IncompleteDownloadError(f"fax {fax_id}: {exc}; restarting", fax_id=fax_id) from None
        self.span.answered(response)
        if plan.start != state.offset:  # a 200 to a range request: the server starts over
            self._forget()
        elif plan.start > 0:
            state.resumed = True
        state.validator, state.total = plan.validator, plan.total
        if file_size is not None and plan.total is not None and plan.total != file_size:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            raise IncompleteDownloadError(
                f"fax {fax_id}: the server offers {plan.total} bytes, the fax record says {file_size}",
                fax_id=fax_id,
                expected=file_size,
                received=plan.total,
            )
        limit = plan.total if plan.total is not None else (file_size or self.max_document_bytes)
        async for chunk in attempt.chunks(response, limit):
            self.sink.write(chunk)
            state.take(chunk)
            if self.on_bytes is not None:
                self.on_bytes(len(chunk))
        state.check(fax_id=fax_id, file_size=file_size, fmt=self.fax.format if self.fax is not None else "pdf")

    def committed(self, sha256: str) -> DownloadResult:
        """The result, once the file stands (in the commit's worker thread, then ``on_commit``)."""
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

    Iterate it once. A dropped connection resumes transparently with ``Range`` where the server
    allows (through the same retry engine as every other call); where it cannot,
    :class:`IncompleteDownloadError` is raised (bytes already handed out cannot be taken back).
    ``bytes_read``, ``total`` and ``sha256`` tell what passed.
    """

    def __init__(self, client: FaxClient, fax_id: str, *, options: CallOptions | None = None) -> None:
        self._client = client
        self._span: Call = NO_CALL  # the stream's span, set by ``received.stream`` (its retries are events)
        self.fax_id = fax_id
        self._options: CallOptions = options or {}
        self._policy = client.retry_policy.with_max_retries(self._options.get("max_retries"))
        self._state = Progress()
        self._hasher = hashlib.sha256()
        self._used = False
        self._chunks_gen: AsyncGenerator[bytes, None] | None = None

    @property
    def bytes_read(self) -> int:
        return self._state.offset

    @property
    def total(self) -> int | None:
        return self._state.total

    @property
    def sha256(self) -> str:
        return self._hasher.hexdigest()

    def __aiter__(self) -> AsyncGenerator[bytes, None]:
        if self._used:
            raise RuntimeError("a DocumentStream can be iterated only once")
        self._used = True
        self._chunks_gen = self._chunks()
        return self._chunks_gen

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        state, operation, attempts, started = self._state, f"stream {self.fax_id}", 0, anyio.current_time()
        retries = retrying(
            self._policy, idempotent=True, operation=operation, resumable=state.can_resume, call=self._span
        )
        async for attempt in retries:
            attempts += 1
            failure: Exception | None = None
            try:
                async for chunk in self._one_attempt():
                    yield chunk
                self._span.finished(state.offset, state.resumed)
                return
            except Exception as exc:
                failure = exc
                if (
                    state.offset
                    and not state.can_resume()
                    and attempts <= self._policy.max_retries
                    and should_retry(exc, idempotent=True, policy=self._policy)
                ):
                    # A break worth retrying, but bytes were handed out and nothing can continue them.
                    incomplete = IncompleteDownloadError(
                        f"fax {self.fax_id}: the document broke off after {state.offset} bytes were streamed and "
                        f"the server gives no validator to resume against ({type(exc).__name__}: {exc})",
                        fax_id=self.fax_id,
                        received=state.offset,
                        expected=state.total,
                    )
                    log_failure(operation, attempts, incomplete, self._policy, started)
                    raise incomplete from exc
            try:
                with attempt:
                    raise failure
            except Exception as exc:  # tenacity gave up: raised as itself
                log_failure(operation, attempts, exc, self._policy, started)
                raise

    async def _one_attempt(self) -> AsyncIterator[bytes]:
        state = self._state
        attempt = _Attempt(self._client, self.fax_id, state, self._options)
        try:
            response, plan = await attempt.open()
        except Restart as exc:
            raise IncompleteDownloadError(
                f"fax {self.fax_id}: cannot resume at byte {state.offset}: {exc}", fax_id=self.fax_id
            ) from None
        self._span.answered(response)
        if plan.start != state.offset:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            state.validator = None  # never resumed again: the bytes handed out are of another version
            raise IncompleteDownloadError(
                f"fax {self.fax_id}: the server restarted the document at byte 0 after {state.offset} bytes "
                "were streamed",
                fax_id=self.fax_id,
            )
        state.validator, state.total = plan.validator, plan.total
        state.resumed = state.resumed or plan.start > 0
        async for chunk in attempt.chunks(
            response, plan.total if plan.total is not None else DEFAULT_MAX_DOCUMENT_BYTES
        ):
            self._hasher.update(chunk)
            state.take(chunk)
            yield chunk
        state.check(fax_id=self.fax_id)

    async def aclose(self) -> None:
        """Stop streaming and close the response (if iteration was left early)."""
        gen = self._chunks_gen
        if gen is not None:
            with anyio.CancelScope(shield=True):
                await gen.aclose()
