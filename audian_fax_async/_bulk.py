"""``received.download_all``: the bulk archive engine.

One task walks the listing (drift-proof, see ``_pagination``) and queues each new fax in a bounded
memory stream; two workers per download slot take them. A worker prepares a fax (checks the folder,
opens its temporary file) in one trip to a worker thread, downloads it holding a slot only while
bytes flow, and commits it (fsync, rename, manifest line) in another trip. A trip waits for the GIL
behind the event loop (milliseconds under load), so while one worker of a pair is on the disk the
other can use the slot. Memory and open files stay bounded by the concurrency, not by the size of
the archive. Every fax ends as exactly one
:class:`DownloadOutcome`: downloaded, skipped or failed with its error. The manifest
(``_manifest``) makes a rerun skip what is complete, also after the process was killed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import define, field

from ._blocking import run_blocking
from ._download import FileDownload
from ._exceptions import AudianError, DestinationError, InvalidRequestError
from ._manifest import MANIFEST_NAME, Manifest, ManifestEntry
from ._models import DownloadOutcome, DownloadResult, FaxStatus, OutcomeKind, ReceivedFax
from ._options import CallOptions
from ._paths import check_template, cleanup_partial_files, is_inside, render_template, safe_filename
from ._retry import retry_listener
from ._telemetry import NO_BULK, Bulk

if TYPE_CHECKING:
    from ._client import FaxClient

__all__ = ["MANIFEST_NAME", "AfterAction", "BulkDownload", "BulkProgress", "Manifest", "ManifestEntry"]

logger = logging.getLogger("audian_fax_async")

AfterAction = Literal["processed", "archived"]

#: Workers per download slot: while one is in a worker thread (preparing or committing a file), the
#: other can use the slot (benchmarks/README.md prices the pair).
WORKERS_PER_SLOT = 2


@define
class BulkProgress:
    """Live counters of a bulk download, handed to ``on_progress`` as they change."""

    #: How many faxes the listing's first page said match (its ``total``; None until it came).
    expected: int | None = None
    listed: int = 0
    listed_bytes: int = 0
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    retries: int = 0
    in_flight: int = 0
    listing_done: bool = False
    started: float = field(factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.downloaded + self.skipped + self.failed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _single_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one error inside ``group`` (however nested), or None when it holds several."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        elif not any(exc is seen for seen in leaves):
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None


class BulkDownload:
    """A running ``download_all``: an async iterator of :class:`DownloadOutcome`, one per fax.

    The structured form stops cleanly wherever you leave the loop::

        async with client.received.download_all("archive/") as outcomes:
            async for outcome in outcomes:
                print(outcome.kind, outcome.fax.id, outcome.path or outcome.error)

    Plain ``async for outcome in client.received.download_all(...)`` works too when the loop runs
    to its end; to leave it early (``break``, an exception in the body), use the ``async with``
    form or ``contextlib.aclosing`` so the workers stop and temporary files are removed at once.
    Leaving the ``async with`` block early cancels the downloads still running: no partial file
    stays behind and a rerun resumes from the manifest.

    Two hooks let a long-running service (the inbox mirror) drive the same engine: ``faxes``, an
    async iterable that replaces the listing (the engine takes each fax it yields when a worker is
    free; a fax may come again once its outcome is out, never while it is in flight), and
    ``download_slot``, called for each fax to give an async context manager held around each of
    its download attempts (before the client's own slot), for ordering downloads across sources.
    ``urgent`` says which faxes' file work (the temporary file, the commit) must not queue behind
    the others' for the few worker threads the SDK's file work shares (``_blocking``).
    """

    def __init__(
        self,
        client: FaxClient,
        dest_dir: str | os.PathLike[str],
        *,
        filters: dict[str, Any],
        after: AfterAction | None,
        path_template: str | None,
        on_progress: Callable[[BulkProgress], None] | None,
        overwrite: bool,
        page_size: int,
        concurrency: int | None,
        options: CallOptions | None = None,
        faxes: AsyncIterable[ReceivedFax] | None = None,
        download_slot: Callable[[ReceivedFax], AbstractAsyncContextManager[object]] | None = None,
        urgent: Callable[[ReceivedFax], bool] | None = None,
    ) -> None:
        if after not in (None, "processed", "archived"):
            raise InvalidRequestError(f"after must be None, 'processed' or 'archived'; got {after!r}")
        if path_template is not None:
            check_template(path_template)
        if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)):
            raise InvalidRequestError(f"concurrency must be an integer, got {concurrency!r}")
        self._client = client
        self.dest_dir = Path(dest_dir)
        self._filters = filters
        self._after: AfterAction | None = after
        self._template = path_template
        self._on_progress = on_progress
        self._overwrite = overwrite
        self._page_size = page_size
        self._options: CallOptions = options or {}
        self._source = faxes
        self._download_slot = download_slot
        self._urgent = urgent
        limit = client.max_concurrent_downloads
        self._concurrency = max(1, min(concurrency or limit, limit))
        #: How many workers take faxes (two per download slot).
        self.workers = WORKERS_PER_SLOT * self._concurrency
        self.progress = BulkProgress()
        self.manifest = Manifest(self.dest_dir)
        self._done: dict[str, ManifestEntry] = {}
        self._seen: set[str] = set()
        # Which fax each relative path belongs to (the manifest's, then this run's): two faxes that a
        # path_template (or ids that only differ in unsafe characters) send to one path must not be
        # taken for each other, e.g. the second "adopting" the first one's file of the same size.
        self._claims: dict[str, str] = {}
        self._listing_error: BaseException | None = None
        # Below the client's own cap, the run's own cap on downloads in flight (workers are twice as many).
        self._slots: anyio.CapacityLimiter | None = None
        self._tg: TaskGroup | None = None
        self._outcomes: MemoryObjectSendStream[DownloadOutcome] | None = None
        self._receive: MemoryObjectReceiveStream[DownloadOutcome] | None = None
        self._entered = False
        self._exhausted = False
        self._span: Bulk = NO_BULK  # the run's span, from __aenter__ to __aexit__

    # -- the structured form ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a BulkDownload can be run only once")
        self._entered = True
        self._done = await run_blocking(self._prepare)
        for entry in self._done.values():
            self._claims.setdefault(entry.path, entry.id)
        send, receive = anyio.create_memory_object_stream[DownloadOutcome](self._concurrency)
        self._receive = receive
        # A run fed by a source (the mirror) may last for days: its downloads are spans of their own.
        self._span = self._client._telemetry.bulk(traced=self._source is None)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._engine, send)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None and self._receive is not None
        if exc_type is not None or not self._exhausted:
            self._tg.cancel_scope.cancel()
        try:
            suppressed = await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The engine's task group is an implementation detail: an error of the caller's loop
            # body, of the listing or of a worker is raised as itself, as everywhere else.
            single = _single_error(group)
            self._end_span(single or group)
            if single is None:
                raise
            raise single from single.__cause__
        except BaseException as error:
            self._end_span(error)
            raise
        finally:
            # Only once every worker has stopped: a worker cancelled while handing over an outcome
            # is never told the consumer is gone instead (BrokenResourceError).
            self._receive.close()
        self._end_span(None if suppressed else exc or self._listing_error)
        return suppressed

    def _end_span(self, error: BaseException | None) -> None:
        progress = self.progress
        counts = {"listed": progress.listed, "downloaded": progress.downloaded, "skipped": progress.skipped}
        counts |= {"failed": progress.failed, "retries": progress.retries, "bytes": progress.bytes}
        self._span.end(counts, error)

    def __aiter__(self) -> BulkDownload | AsyncGenerator[DownloadOutcome, None]:
        if self._entered:
            return self
        return self._standalone()

    async def __anext__(self) -> DownloadOutcome:
        assert self._receive is not None
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            self._exhausted = True
            if self._listing_error is not None:
                raise self._listing_error from None
            raise StopAsyncIteration from None

    async def _standalone(self) -> AsyncGenerator[DownloadOutcome, None]:
        async with self:
            while True:
                try:
                    outcome = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield outcome

    @property
    def completed(self) -> Mapping[str, ManifestEntry]:
        """The manifest's entry of every fax complete in the folder, kept current as faxes finish
        (read-only; filled when the run starts)."""
        return self._done

    async def record(self, entry: ManifestEntry) -> None:
        """Append ``entry`` to the manifest (a marking made outside the run, say) and take it as
        that fax's entry from now on."""
        await self.manifest.append(entry)
        self._done[entry.id] = entry

    # -- the engine --------------------------------------------------------------------------

    def _prepare(self) -> dict[str, ManifestEntry]:
        """Make the folder, sweep what an earlier run left, load the manifest (blocking)."""
        try:
            self.dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create {self.dest_dir}: {exc.strerror or exc}") from None
        if not os.access(self.dest_dir, os.W_OK | os.X_OK):
            raise DestinationError(f"cannot write to {self.dest_dir}: permission denied")
        removed = cleanup_partial_files(self.dest_dir)
        if removed:
            logger.info("removed %d temporary files left by an earlier run", len(removed))
        return self.manifest.load()

    def _notify(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress)

    async def _engine(self, outcomes: MemoryObjectSendStream[DownloadOutcome]) -> None:
        # A listing runs ahead by a buffer; faxes from a source are taken only when a worker is free,
        # so whatever the source yields next (its most urgent fax) is what a free worker gets.
        ahead = 0 if self._source is not None else self._concurrency
        send, receive = anyio.create_memory_object_stream[ReceivedFax](ahead)
        retry_listener.set(self._count_retry)  # listing pages and markings count their retries too
        self._span.enter()  # the parent of the listing's, the downloads' and the markings' spans
        if self._concurrency < self._client.max_concurrent_downloads:
            self._slots = anyio.CapacityLimiter(self._concurrency)
        try:
            async with outcomes, anyio.create_task_group() as tg:
                self._outcomes = outcomes
                tg.start_soon(self._list, send)
                async with receive:
                    for _ in range(self.workers):
                        tg.start_soon(self._worker, receive.clone())
        finally:
            self.manifest.close()

    async def _list(self, send: MemoryObjectSendStream[ReceivedFax]) -> None:
        if self._source is not None:
            async with send:
                try:
                    async for fax in self._source:
                        self.progress.listed += 1
                        self.progress.listed_bytes += fax.file_size or 0
                        self._notify()
                        await send.send(fax)
                finally:
                    self.progress.listing_done = True
                    self._notify()
            return
        async with send:
            try:
                async for page, faxes in self._client.received.pages(
                    page_size=self._page_size, **self._filters, **self._options
                ):
                    if self.progress.expected is None:
                        self.progress.expected = page.total
                    for fax in faxes:
                        if fax.id in self._seen:
                            continue
                        self._seen.add(fax.id)
                        self.progress.listed += 1
                        self.progress.listed_bytes += fax.file_size or 0
                        self._notify()
                        await send.send(fax)
            except AudianError as exc:
                logger.error("listing stopped after %d faxes: %s", self.progress.listed, exc)
                self._listing_error = exc
            finally:
                self.progress.listing_done = True
                self._notify()

    async def _worker(self, queue: MemoryObjectReceiveStream[ReceivedFax]) -> None:
        async with queue:
            async for fax in queue:
                await self._emit(await self._one(fax))

    async def _emit(self, outcome: DownloadOutcome) -> None:
        assert self._outcomes is not None
        if outcome.kind is OutcomeKind.DOWNLOADED:
            self.progress.downloaded += 1
        elif outcome.kind is OutcomeKind.SKIPPED:
            self.progress.skipped += 1
        else:
            self.progress.failed += 1
        self._span.outcome(outcome.kind.value)
        self._notify()
        await self._outcomes.send(outcome)

    async def _one(self, fax: ReceivedFax) -> DownloadOutcome:
        """Bring ``fax`` into the folder: skip it, adopt a whole file already there, or download it."""
        try:
            relative = self._relative_path(fax)
            path = self.dest_dir / relative
            entry = self._done.get(fax.id)
            self._claim(fax, relative, path)
            urgent = self._urgent is not None and self._urgent(fax)
            job = FileDownload(
                self._client,
                fax.id,
                path,
                fax=fax,
                overwrite=self._overwrite,
                options=self._options,
                on_bytes=self._count_bytes,
                on_retry=self._count_retry,
                on_commit=lambda done: self._commit(self._entry(fax.id, relative, done)),
                limiter=self._download_slot(fax) if self._download_slot is not None else self._slots,
                urgent=urgent,
            )
            kept = await run_blocking(self._prepare_fax, fax, relative, path, entry, job, urgent=urgent)
            if kept is not None:
                return await self._finished(fax, OutcomeKind.SKIPPED, self.dest_dir / kept.path, kept)
            self.progress.in_flight += 1
            try:
                result = await job.run(opened=True)
            finally:
                self.progress.in_flight -= 1
            return await self._finished(fax, OutcomeKind.DOWNLOADED, path, self._entry(fax.id, relative, result))
        except (AudianError, OSError) as exc:
            logger.warning("fax %s failed: %s", fax.id, exc)
            return DownloadOutcome(fax=fax, kind=OutcomeKind.FAILED, path=None, error=exc)

    async def _finished(self, fax: ReceivedFax, kind: OutcomeKind, path: Path, entry: ManifestEntry) -> DownloadOutcome:
        try:
            marked = await self._mark(fax, entry)
        except AudianError as exc:
            # The file is whole and recorded; only the marking failed (a rerun marks it): the outcome
            # says where the file is.
            logger.warning("fax %s is in %s but could not be marked %s: %s", fax.id, path, self._after, exc)
            return DownloadOutcome(
                fax=fax, kind=OutcomeKind.FAILED, path=path, bytes=entry.bytes, sha256=entry.sha256, error=exc
            )
        return DownloadOutcome(fax=fax, kind=kind, path=path, bytes=entry.bytes, sha256=entry.sha256, marked=marked)

    def _commit(self, entry: ManifestEntry) -> None:
        """Record a file that now stands (blocking: in the commit's worker thread)."""
        self.manifest.write(entry)
        self._done[entry.id] = entry

    @staticmethod
    def _entry(fax_id: str, relative: Path, result: DownloadResult) -> ManifestEntry:
        return ManifestEntry(id=fax_id, path=relative.as_posix(), bytes=result.bytes, sha256=result.sha256)

    def _relative_path(self, fax: ReceivedFax) -> Path:
        if self._template is not None:
            return render_template(self._template, fax)
        return Path(safe_filename(fax.id, fax.format))

    def _claim(self, fax: ReceivedFax, relative: Path, path: Path) -> None:
        owner = self._claims.setdefault(relative.as_posix(), fax.id)
        if owner != fax.id:
            raise DestinationError(
                f"{path} is already the path of fax {owner}: two faxes cannot share one file "
                "(choose a path_template that includes {id})"
            )

    def _prepare_fax(
        self, fax: ReceivedFax, relative: Path, path: Path, entry: ManifestEntry | None, job: FileDownload
    ) -> ManifestEntry | None:
        """What is already there (blocking, one trip): the manifest's entry if its file still
        stands, a whole file at the path (adopted), or None once ``job``'s temporary file is open."""
        if entry is not None and self._still_there(entry):
            return entry
        existing = self._adopt_existing(fax, path, relative)
        if existing is None:
            job.open_now()
        return existing

    def _still_there(self, entry: ManifestEntry) -> bool:
        try:
            return (self.dest_dir / entry.path).stat().st_size == entry.bytes
        except OSError:
            return False

    def _make_parent(self, path: Path) -> None:
        if path.parent == self.dest_dir:
            return  # the flat layout: dest_dir exists since _prepare
        if not is_inside(path.parent, self.dest_dir):
            raise DestinationError(f"refusing to write outside {self.dest_dir}: {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
        if not is_inside(path, self.dest_dir):
            raise DestinationError(f"refusing to write outside {self.dest_dir}: {path}")

    def _adopt_existing(self, fax: ReceivedFax, path: Path, relative: Path) -> ManifestEntry | None:
        """Make the file's folder; a file already at the path (not in the manifest): keep it only if
        it is the whole document, recording it in the manifest (blocking)."""
        self._make_parent(path)
        if self._overwrite or not os.path.lexists(path):
            return None
        if path.is_symlink() or not path.is_file():
            raise DestinationError(f"{path} exists and is not a regular file")
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            head = handle.read(8)
            digest.update(head)
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if fax.file_size is not None and size == fax.file_size and head.startswith(b"%PDF"):
            entry = ManifestEntry(id=fax.id, path=relative.as_posix(), bytes=size, sha256=digest.hexdigest())
            self._commit(entry)
            return entry
        raise DestinationError(f"{path} exists and is not this fax's document (pass overwrite=True to replace it)")

    def _count_bytes(self, count: int) -> None:
        self.progress.bytes += count
        self._notify()

    def _count_retry(self, _: BaseException) -> None:
        self.progress.retries += 1

    async def _mark(self, fax: ReceivedFax, entry: ManifestEntry) -> FaxStatus | None:
        """Mark the fax on the server once its file is durably on disk (``after=``); a fax already
        archived (on the server or by an earlier run) is left archived."""
        if self._after is None:
            return None
        target = FaxStatus(self._after)
        if entry.marked == target.value:
            return target
        if target is FaxStatus.PROCESSED and FaxStatus.ARCHIVED.value in (entry.marked, fax.status):
            return FaxStatus.ARCHIVED  # archived is past processed: never moved back
        if target is FaxStatus.ARCHIVED:
            await self._client.received.archive(fax.id, **self._options)
        else:
            await self._client.received.mark_processed(fax.id, **self._options)
        await self.record(
            ManifestEntry(id=entry.id, path=entry.path, bytes=entry.bytes, sha256=entry.sha256, marked=target.value)
        )
        return target
