"""``received.download_all``: the bulk archive engine.

One task walks the listing (drift-proof, see ``_pagination``), opens each fax's temporary file and
queues the download in a bounded memory stream; one worker per download slot takes them. A worker
keeps its slot from one queued download to the next (so a slot never waits a loop iteration between
two downloads) and hands each fetched body to a committer task (fsyncs, rename, manifest line), so a
slot never waits for file work either; it lets the slot go as soon as another task waits for one.
The listing runs ahead just enough to keep every slot busy while memory stays bounded by the
concurrency, not by the size of the archive.
Every fax ends as exactly one :class:`DownloadOutcome`: downloaded, skipped or failed with its
error. A manifest in the destination folder (JSON lines, appended and fsynced after each file is
durably in place) makes a rerun skip what is complete, also after the process was killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import define, field, frozen

from ._download import FileDownload
from ._durable import CommitSync
from ._exceptions import AudianError, DestinationError, InvalidRequestError
from ._limiter import Hold
from ._models import DownloadOutcome, DownloadResult, FaxStatus, OutcomeKind, ReceivedFax
from ._pacing import pacer
from ._paths import cleanup_partial_files, is_inside, render_template, safe_filename
from ._threads import run_blocking

if TYPE_CHECKING:
    from ._client import FaxClient

__all__ = ["MANIFEST_NAME", "BulkDownload", "BulkProgress", "Manifest", "ManifestEntry"]

logger = logging.getLogger("audian_fax_async")

T = TypeVar("T")
#: What the listing queues for the workers: a download ready to run, or a fax to prepare first.
_Queued = FileDownload | ReceivedFax

MANIFEST_NAME = ".audian-manifest.jsonl"
#: Downloads a bulk worker runs back to back in one slot before it lets the slot go and takes it
#: again (so that waiters this process cannot see, such as other processes on a shared
#: ``RedisLimiter``, get their turn too). Waiters in this process take the slot at once.
MAX_CHAINED = 16
AfterAction = Literal["processed", "archived"]


@frozen
class ManifestEntry:
    """One completed fax in a destination folder."""

    id: str
    path: str
    bytes: int
    sha256: str
    marked: str | None = None


#: One encoder for every manifest line (``json.dumps`` with separators builds a new one per call).
_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _on_event_loop() -> bool:
    """Whether the calling thread is running an asyncio event loop (not a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Manifest:
    """The record of completed faxes in ``folder/.audian-manifest.jsonl`` (append-only JSON lines).

    A line is written only after its file was fsynced and renamed into place, and the manifest is
    fsynced after each line, so after a crash every line names a whole file. A torn last line is
    ignored on load.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_NAME
        self._lock = anyio.Lock()
        self._thread_lock = threading.Lock()
        # Kept open from the first line to close(): a line is then one write and one fsync.
        self._fd: int | None = None
        #: The bulk run's fsyncs while it runs (kernel AIO where available; see _durable.py).
        self.sync: CommitSync | None = None

    def load(self) -> dict[str, ManifestEntry]:
        entries: dict[str, ManifestEntry] = {}
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return entries
        with handle:
            for raw in handle:
                try:
                    data = json.loads(raw)
                    entry = ManifestEntry(
                        id=str(data["id"]),
                        path=str(data["path"]),
                        bytes=int(data["bytes"]),
                        sha256=str(data["sha256"]),
                        marked=data.get("marked"),
                    )
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash, or not ours
                entries[entry.id] = entry
        return entries

    async def append(self, entry: ManifestEntry) -> None:
        async with self._lock:
            with anyio.CancelScope(shield=True):  # a line is written whole or not at all
                sync = self.sync
                if sync is not None and sync.aio:  # the write here (page cache), the fsync in the kernel
                    self.write(entry, fsync=False)
                    assert self._fd is not None
                    await sync.fsync_shared(self._fd)
                else:
                    await anyio.to_thread.run_sync(self.write, entry)

    def write(self, entry: ManifestEntry, *, fsync: bool = True) -> None:
        """Append ``entry``, then fsync unless told not to (blocking: call it from a worker thread,
        or with ``fsync=False`` from the loop, and fsync :attr:`fd` after)."""
        line = _LINE_ENCODER.encode(
            {
                "id": entry.id,
                "path": entry.path,
                "bytes": entry.bytes,
                "sha256": entry.sha256,
                "marked": entry.marked,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        with self._thread_lock:  # writers in several worker threads: one line at a time
            self._write(line, fsync)

    def fileno(self) -> int | None:
        """The open manifest file's descriptor (None before the first line or after close)."""
        return self._fd

    def _write(self, line: str, fsync: bool) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        data = memoryview((line + "\n").encode())
        while data:
            data = data[os.write(self._fd, data) :]
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the manifest file (a later line opens it again)."""
        with self._thread_lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@define
class BulkProgress:
    """Live counters of a bulk download, handed to ``on_progress`` as they change."""

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


async def _receive(stream: MemoryObjectReceiveStream[T]) -> T:
    """The next item, without a trip round the event loop when one is already waiting.

    anyio's ``receive()`` yields to the loop first (a checkpoint) even when an item is ready: a loop
    iteration per fax on each of the engine's streams. The workers await the network for every fax
    anyway, and the consumer yields as soon as the buffer is empty, so nobody is starved; a cancelled
    task still stops at its next wait.
    """
    try:
        return stream.receive_nowait()
    except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
        pass
    # Nothing ready, or the stream ended: anyio's own receive waits, or raises after its checkpoint
    # (so a cancelled task sees its cancellation first). Outside the except block, so that the
    # exception and its traceback do not stay alive while this worker waits.
    return await stream.receive()


async def _send(stream: MemoryObjectSendStream[T], item: T) -> None:
    """Send ``item``, without a trip round the event loop when there is room (see :func:`_receive`)."""
    try:
        stream.send_nowait(item)
        return
    except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    await stream.send(item)  # waits for room, or raises after its checkpoint (see _receive)


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
        max_retries: int | None,
        concurrency: int | None,
    ) -> None:
        if after not in (None, "processed", "archived"):
            raise InvalidRequestError(f"after must be None, 'processed' or 'archived'; got {after!r}")
        if path_template is not None and not isinstance(path_template, str):
            raise InvalidRequestError("path_template must be a string")
        self._client = client
        self.dest_dir = Path(dest_dir)
        self._filters = filters
        self._after: AfterAction | None = after
        self._template = path_template
        self._on_progress = on_progress
        self._overwrite = overwrite
        self._page_size = page_size
        self._max_retries = max_retries
        limit = client.max_concurrent_downloads
        self._concurrency = max(1, min(concurrency or limit, limit))
        self.progress = BulkProgress()
        self.manifest = Manifest(self.dest_dir)
        self._sync: CommitSync | None = None  # the run's fsyncs (kernel AIO where there is), made in the loop
        self._done: dict[str, ManifestEntry] = {}
        self._seen: set[str] = set()
        # Which fax each relative path belongs to (the manifest's, then this run's): two faxes that a
        # path_template (or ids that only differ in unsafe characters) send to one path must not be
        # taken for each other, e.g. the second "adopting" the first one's file of the same size.
        self._claims: dict[str, str] = {}
        self._listing_error: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._slots: anyio.CapacityLimiter | None = None
        # At the client's own cap, the bulk's limiter could never bind: its cost per fax is skipped.
        self._limited = self._concurrency < client.max_concurrent_downloads
        self._outcomes: MemoryObjectSendStream[DownloadOutcome] | None = None
        self._tasks: TaskGroup | None = None  # the engine's: the listing, workers, committers, retries
        # Downloads with a temporary file open (from opening it to the end of their commit).
        self._unfinished: set[FileDownload] = set()
        self._receive: MemoryObjectReceiveStream[DownloadOutcome] | None = None
        self._entered = False
        self._exhausted = False

    # -- the structured form ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a BulkDownload can be run only once")
        self._entered = True
        await self._prepare()
        send, receive = anyio.create_memory_object_stream[DownloadOutcome](self._concurrency)
        self._receive = receive
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
        self._receive.close()
        return await self._tg.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> BulkDownload | AsyncGenerator[DownloadOutcome, None]:
        if self._entered:
            return self
        return self._standalone()

    async def __anext__(self) -> DownloadOutcome:
        assert self._receive is not None
        try:
            return await _receive(self._receive)
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

    # -- the engine --------------------------------------------------------------------------

    async def _prepare(self) -> None:
        def prepare() -> dict[str, ManifestEntry]:
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

        self._done = await run_blocking(prepare)
        for entry in self._done.values():
            self._claims.setdefault(entry.path, entry.id)

    def _notify(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.progress)

    async def _engine(self, outcomes: MemoryObjectSendStream[DownloadOutcome]) -> None:
        # The listing starts every fax it can without leaving the loop (its temporary file opened)
        # and queues the download; the others (a manifest entry or a file to check) go as faxes.
        send, receive = anyio.create_memory_object_stream[_Queued](self._concurrency * 2)
        # Fetched bodies wait here for a committer (fsyncs, rename, manifest line, after=).
        commit_send, commit_receive = anyio.create_memory_object_stream[FileDownload](self._concurrency * 2)
        # One worker per slot. A worker keeps its slot from one download to the next while the next
        # is queued and nobody else waits for a slot, and hands each body to the committers: so a
        # slot never waits for file work, nor for a loop iteration between two downloads
        # (benchmarks/README.md, scenario 1). Workers start one per listed fax until there are
        # enough: fifty bulk downloads starting together then do not make hundreds of tasks
        # runnable in one loop iteration (benchmarks/README.md, scenario 5).
        self._slots = anyio.CapacityLimiter(self._concurrency)
        self._sync = sync = CommitSync.start()
        sync.tail = self.manifest.fileno  # each commit's manifest line, fsynced after it is written
        self.manifest.sync = sync
        try:
            async with outcomes, receive, commit_receive, anyio.create_task_group() as tg:
                self._outcomes, self._tasks = outcomes, tg

                def spawn() -> None:
                    tg.start_soon(self._worker, receive.clone(), commit_send.clone())
                    tg.start_soon(self._committer, commit_receive.clone())

                tg.start_soon(self._list, send, commit_send, spawn, self._concurrency)
        finally:
            # Every download has ended (commits are shielded inside them): close what they kept open.
            # A download queued but never run (the run was cancelled) still has its temporary file.
            for job in self._unfinished:
                job.discard_now()
            self._unfinished.clear()
            sync.close()
            self.manifest.sync = None
            self.manifest.close()

    async def _list(
        self,
        send: MemoryObjectSendStream[_Queued],
        commits: MemoryObjectSendStream[FileDownload],
        spawn: Callable[[], None],
        workers: int,
    ) -> None:
        async with send, commits:  # the workers hold clones of ``commits`` from here on
            try:
                async for fax in self._client.received.iter(page_size=self._page_size, **self._filters):
                    if fax.id in self._seen:
                        continue
                    self._seen.add(fax.id)
                    self.progress.listed += 1
                    self.progress.listed_bytes += fax.file_size or 0
                    if workers > 0:
                        workers -= 1
                        spawn()
                    # Opening a file is tens of µs: with hundreds of downloads on the loop (many
                    # accounts), the listings take turns for it like the downloads (_pacing.py).
                    await pacer.turn()
                    step = self._start_now(fax)
                    if isinstance(step, DownloadOutcome):
                        await self._emit(step)
                    else:
                        await _send(send, fax if step is None else step)
            except AudianError as exc:
                logger.error("listing stopped after %d faxes: %s", self.progress.listed, exc)
                self._listing_error = exc
            finally:
                self.progress.listing_done = True
                self._notify()

    async def _worker(
        self,
        queue: MemoryObjectReceiveStream[_Queued],
        commits: MemoryObjectSendStream[FileDownload],
    ) -> None:
        async with queue, commits:
            item: _Queued | None = None
            while True:
                if item is None:
                    try:
                        item = await _receive(queue)
                    except anyio.EndOfStream:
                        return
                await pacer.turn()  # with many accounts in one loop, each fax takes its turn
                if isinstance(item, ReceivedFax):
                    step = await self._start(item)
                    if isinstance(step, DownloadOutcome):
                        item = None
                        await self._emit(step)
                        continue
                    item = step
                item = await self._run(item, queue, commits)

    async def _committer(self, commits: MemoryObjectReceiveStream[FileDownload]) -> None:
        async with commits:
            while True:
                try:
                    job = await _receive(commits)
                except anyio.EndOfStream:
                    return
                await self._emit(await self._finish(job, None))

    async def _emit(self, outcome: DownloadOutcome) -> None:
        assert self._outcomes is not None
        if outcome.kind is OutcomeKind.DOWNLOADED:
            self.progress.downloaded += 1
        elif outcome.kind is OutcomeKind.SKIPPED:
            self.progress.skipped += 1
        else:
            self.progress.failed += 1
        self._notify()
        await _send(self._outcomes, outcome)

    async def _run(
        self,
        job: FileDownload,
        queue: MemoryObjectReceiveStream[_Queued],
        commits: MemoryObjectSendStream[FileDownload],
    ) -> ReceivedFax | None:
        """Download ``job`` in a download slot, then the queued downloads after it in the same slot;
        return a fax taken from the queue that needs preparing first (work off the loop).

        Each body fetched goes to the committers, so the next request leaves in the same loop step
        as the last byte of the previous one arrived. The slot is let go when the queue is empty or
        holds a fax to prepare, on the first error (retries wait outside the slot, in a task of their
        own), after :data:`MAX_CHAINED` downloads, and as soon as another task waits for a slot.
        """
        client = self._client
        current: FileDownload | None = job
        failed: Exception | None = None
        pending: ReceivedFax | None = None
        chained = 0
        self.progress.in_flight += 1  # from here to the end of its commit (_finish)
        try:
            async with (
                Hold(self._slots) if self._limited and self._slots is not None else contextlib.nullcontext(),
                client.download_slot(),
            ):
                while current is not None:
                    try:
                        await current.fetch()
                    except Exception as exc:
                        failed = exc
                        break
                    try:
                        commits.send_nowait(current)
                    except anyio.WouldBlock:
                        break  # the committers are behind: this one is committed here, out of the slot
                    current = None
                    chained += 1
                    if chained >= MAX_CHAINED or self._others_waiting():
                        break
                    try:
                        item = queue.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    if isinstance(item, ReceivedFax):
                        pending = item
                        break
                    current = item
                    self.progress.in_flight += 1
        except Exception as exc:
            # The slot itself failed: it could not be taken or was lost (a LimiterError). The download
            # in it fails with that error, as a download_file attempt would.
            if current is None:
                logger.warning("a download slot ended with an error after its downloads were complete: %s", exc)
            failed = exc
        except BaseException:
            if current is not None:
                self._unfinished.discard(current)
                self.progress.in_flight -= 1
                await current.discard()
            raise
        if current is not None:
            if failed is not None:
                # Retries wait (backoff, Retry-After) in a task of their own: this worker goes on.
                assert self._tasks is not None
                self._tasks.start_soon(self._finish_and_emit, current, failed)
            else:
                await self._emit(await self._finish(current, None))
        return pending

    def _others_waiting(self) -> bool:
        """Whether another task waits for one of the slots this worker holds."""
        client = self._client
        slots = client._client_slots
        if slots is not None and slots.statistics().tasks_waiting:
            return True
        if self._limited and self._slots is not None and self._slots.statistics().tasks_waiting:
            return True
        return client.limiter.statistics(client.account).waiting > 0

    async def _finish_and_emit(self, job: FileDownload, failed: Exception | None) -> None:
        await self._emit(await self._finish(job, failed))

    async def _finish(self, job: FileDownload, failed: Exception | None) -> DownloadOutcome:
        """Commit a fetched ``job``, or retry it after ``failed`` then commit; then ``after=``."""
        fax = job.fax
        assert fax is not None
        try:
            try:
                result = await job.complete(fetched=failed is None, failed=failed)
            finally:
                self._unfinished.discard(job)
                self.progress.in_flight -= 1
            marked = None
            if self._after is not None:
                entry = ManifestEntry(
                    id=fax.id, path=self._relative_of(job.final), bytes=result.bytes, sha256=result.sha256
                )
                marked = await self._mark(fax, entry)
            return DownloadOutcome(
                fax=fax,
                kind=OutcomeKind.DOWNLOADED,
                path=job.final,
                bytes=result.bytes,
                sha256=result.sha256,
                marked=marked,
            )
        except (AudianError, OSError) as exc:
            logger.warning("fax %s failed: %s", fax.id, exc)
            return DownloadOutcome(fax=fax, kind=OutcomeKind.FAILED, path=None, error=exc)

    def _relative_path(self, fax: ReceivedFax) -> Path:
        if self._template is not None:
            return render_template(self._template, fax)
        return Path(safe_filename(fax.id, fax.format))

    def _relative_of(self, path: Path) -> str:
        return path.relative_to(self.dest_dir).as_posix()

    def _start_now(self, fax: ReceivedFax) -> FileDownload | DownloadOutcome | None:
        """Start ``fax`` without leaving the loop: its download (temporary file open), its failure,
        or None when it needs work off the loop first (a manifest entry to check, a file at its path)."""
        if fax.id in self._done:
            return None
        try:
            relative = self._relative_path(fax)
            path = self.dest_dir / relative
            self._claim(fax, relative, path)
            # Inline on purpose: mkdir of an existing folder and a stat take microseconds on a local
            # disk, while a trip to a worker thread costs ~0.2 ms and contends for the GIL with the
            # downloads' I/O (benchmarks/README.md). Only reading an existing file back goes to a thread.
            self._make_parent(path)
            if not self._overwrite and os.path.lexists(path):
                return None
            return self._open_download(fax, path, relative)
        except (AudianError, OSError) as exc:
            logger.warning("fax %s failed: %s", fax.id, exc)
            return DownloadOutcome(fax=fax, kind=OutcomeKind.FAILED, path=None, error=exc)

    def _claim(self, fax: ReceivedFax, relative: Path, path: Path) -> None:
        owner = self._claims.setdefault(relative.as_posix(), fax.id)
        if owner != fax.id:
            raise DestinationError(
                f"{path} is already the path of fax {owner}: two faxes cannot share one file "
                "(choose a path_template that includes {id})"
            )

    async def _start(self, fax: ReceivedFax) -> FileDownload | DownloadOutcome:
        """Start ``fax``: its download, or its outcome when there is nothing to download (already
        complete in the manifest or on disk) or it cannot be."""
        step = self._start_now(fax)
        if step is not None:
            return step
        try:
            relative = self._relative_path(fax)
            path = self.dest_dir / relative
            entry = self._done.get(fax.id)
            if entry is not None and await self._still_there(entry):
                marked = await self._mark(fax, entry)
                return DownloadOutcome(
                    fax=fax,
                    kind=OutcomeKind.SKIPPED,
                    path=self.dest_dir / entry.path,
                    bytes=entry.bytes,
                    sha256=entry.sha256,
                    marked=marked,
                )
            self._claim(fax, relative, path)
            existing = await self._adopt_existing(fax, path, relative)
            if existing is not None:
                marked = await self._mark(fax, existing)
                return DownloadOutcome(
                    fax=fax,
                    kind=OutcomeKind.SKIPPED,
                    path=path,
                    bytes=existing.bytes,
                    sha256=existing.sha256,
                    marked=marked,
                )
            return self._open_download(fax, path, relative)
        except (AudianError, OSError) as exc:
            logger.warning("fax %s failed: %s", fax.id, exc)
            return DownloadOutcome(fax=fax, kind=OutcomeKind.FAILED, path=None, error=exc)

    def _open_download(self, fax: ReceivedFax, path: Path, relative: Path) -> FileDownload:
        """The fax's download, its temporary file open (inline: a create is microseconds, see _download)."""
        job = FileDownload(
            self._client,
            fax.id,
            path,
            fax=fax,
            overwrite=self._overwrite,
            max_retries=self._max_retries,
            # Bound methods and a partial, not closures: one object each per fax in flight.
            on_bytes=self._count_bytes,
            on_retry=self._count_retry,
            on_commit=functools.partial(self._record, fax.id, relative.as_posix()),
            # At the client's own cap, the bulk's limiter could never bind: skip its cost per fax.
            limiter=self._slots if self._limited else None,
            sync=self._sync,
        )
        self._unfinished.add(job)
        return job

    def _make_parent(self, path: Path) -> None:
        if self._template is None:
            # The flat layout: one safe_filename() in dest_dir, which exists since _prepare; the name
            # has no separators and never starts with a dot, so it cannot point elsewhere.
            return
        if not is_inside(path.parent, self.dest_dir) and path.parent != self.dest_dir:
            raise DestinationError(f"refusing to write outside {self.dest_dir}: {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
        if not is_inside(path, self.dest_dir):
            raise DestinationError(f"refusing to write outside {self.dest_dir}: {path}")

    async def _still_there(self, entry: ManifestEntry) -> bool:
        def check() -> bool:
            try:
                return (self.dest_dir / entry.path).stat().st_size == entry.bytes
            except OSError:
                return False

        return await anyio.to_thread.run_sync(check)

    async def _adopt_existing(self, fax: ReceivedFax, path: Path, relative: Path) -> ManifestEntry | None:
        """Make the file's folder; a file already at the path (not in the manifest): keep it only if it is
        the whole document. One trip to a worker thread for both (each trip costs the event loop)."""

        # Inline on purpose: mkdir of an existing folder and a stat take microseconds on a local disk,
        # while a trip to a worker thread costs ~0.2 ms and contends for the GIL with the downloads'
        # I/O (benchmarks/README.md). Only reading an existing file back goes to a thread.
        self._make_parent(path)
        if self._overwrite or not os.path.lexists(path):  # noqa: ASYNC240 - deliberate, see above
            return None

        def inspect() -> tuple[int, str, bytes] | None:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return None
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                head = handle.read(8)
                digest.update(head)
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            return size, digest.hexdigest(), head

        found = await anyio.to_thread.run_sync(inspect)
        if found is None:
            return None
        size, sha, head = found
        if fax.file_size is not None and size == fax.file_size and head.startswith(b"%PDF"):
            entry = ManifestEntry(id=fax.id, path=relative.as_posix(), bytes=size, sha256=sha)
            await self.manifest.append(entry)
            return entry
        raise DestinationError(f"{path} exists and is not this fax's document (pass overwrite=True to replace it)")

    def _count_bytes(self, count: int) -> None:
        self.progress.bytes += count
        self._notify()

    def _count_retry(self, _: BaseException) -> None:
        self.progress.retries += 1

    def _record(self, fax_id: str, relative: str, result: DownloadResult) -> None:
        """The manifest line of a committed file: in the worker thread that committed it, or with
        kernel AIO on the loop, unsynced (the commit's ``after_commit`` fsyncs it next)."""
        entry = ManifestEntry(id=fax_id, path=relative, bytes=result.bytes, sha256=result.sha256)
        # On the loop (a kernel-AIO commit, even one whose AIO was retired on the way) the commit's
        # after_commit() fsyncs the line; in a worker thread (the one-trip commit) it is fsynced here.
        self.manifest.write(entry, fsync=not _on_event_loop())

    async def _mark(self, fax: ReceivedFax, entry: ManifestEntry) -> FaxStatus | None:
        """Mark the fax on the server once its file is durably on disk (``after=``)."""
        if self._after is None:
            return None
        target = FaxStatus(self._after)
        if entry.marked == target.value:
            return target
        if target is FaxStatus.ARCHIVED:
            await self._client.received.archive(fax.id)
        else:
            await self._client.received.mark_processed(fax.id)
        await self.manifest.append(
            ManifestEntry(id=entry.id, path=entry.path, bytes=entry.bytes, sha256=entry.sha256, marked=target.value)
        )
        return target
