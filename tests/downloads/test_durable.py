"""Durable commits: a bulk run's fsyncs through kernel AIO (caio) on asyncio, worker threads elsewhere.

Every committed file is fsynced, linked to its name, its folder fsynced, its manifest line written
and the manifest fsynced, in that order, so that after a crash every manifest line names a whole
file. This machine is Linux with caio installed: the kernel AIO path runs for real here, beside the
worker-thread path (``AUDIAN_FAX_AIO=0``, trio) and fake AIO contexts that record the order of the
fsyncs or fail them.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import gc
import json
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import trio
from attrs import define, field, frozen
from caio.linux_aio_asyncio import AsyncioContext

from audian_fax_async import DestinationError, FaxClient, OutcomeKind, ReceivedFax, _durable, _threads
from audian_fax_async._bulk import MANIFEST_NAME
from audian_fax_async._download import _FileSink, download_file
from audian_fax_async._durable import CommitSync
from audian_fax_async.emulator import AdminClient

from .conftest import ClientFactory, assert_matches_emulator, partial_files
from .test_download_all import FAXES, assert_folder_intact, run_all

# -- spies ---------------------------------------------------------------------------------------

_in_commit: ContextVar[bool] = ContextVar("in_commit", default=False)


def _name(fn: Callable[..., Any]) -> str:
    fn = getattr(fn, "func", fn)  # a functools.partial
    return str(getattr(fn, "__qualname__", repr(fn)))


def fd_target(fd: int) -> str:
    """What an open file descriptor names (a path, ``socket:[...]``, ``anon_inode:[eventfd]``)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def open_fds() -> dict[int, str]:
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = fd_target(int(name))
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return fds


def non_socket_fds() -> dict[int, str]:
    """Open descriptors but sockets (the client's keep-alive connections come and go)."""
    return {fd: target for fd, target in open_fds().items() if not target.startswith("socket:")}


@define
class ThreadTrips:
    """Trips to worker threads: the SDK's pool (asyncio) and anyio's threads (trio, some bulk steps).

    ``in_commits`` are the ones a ``_FileSink.commit`` made (the task that submitted them was
    committing); ``pool`` counts the trips through the SDK's own pool.
    """

    in_commits: list[str] = field(factory=list)
    elsewhere: list[str] = field(factory=list)
    pool: int = 0

    def record(self, fn: Callable[..., Any]) -> None:
        (self.in_commits if _in_commit.get() else self.elsewhere).append(_name(fn))


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> ThreadTrips:
    seen = ThreadTrips()
    real_submit = _threads._pool.submit

    def submit(
        loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[..., Any], *args: Any
    ) -> None:
        seen.record(fn)
        seen.pool += 1
        real_submit(loop, future, fn, *args)

    real_run_sync = anyio.to_thread.run_sync

    async def run_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        seen.record(fn)
        return await real_run_sync(fn, *args, **kwargs)

    real_commit = _FileSink.commit

    async def commit(self: _FileSink, **kwargs: Any) -> Any:
        token = _in_commit.set(True)
        try:
            return await real_commit(self, **kwargs)
        finally:
            _in_commit.reset(token)

    monkeypatch.setattr(_threads._pool, "submit", submit)
    monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)
    monkeypatch.setattr(_FileSink, "commit", commit)
    return seen


@frozen
class FsyncCall:
    target: str
    on_loop: bool


@pytest.fixture
def os_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[FsyncCall]:
    """Every ``os.fsync`` of this process: what it named, and whether it ran on the event loop's thread."""
    calls: list[FsyncCall] = []
    real = os.fsync
    loop_thread = threading.get_ident()  # pytest-asyncio and trio.run both run their loop here

    @functools.wraps(real)
    def fsync(fd: int) -> None:
        calls.append(FsyncCall(fd_target(fd), threading.get_ident() == loop_thread))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.fixture
def folder_opens(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], int]:
    """How many times ``os.open`` opened a given folder (a run keeps its folders open: once each)."""
    opened: list[str] = []
    real = os.open

    @functools.wraps(real)
    def open_(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.path.realpath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    return lambda folder: opened.count(os.path.realpath(folder))


@define
class RealContexts:
    """The real caio contexts the runs made, the fsyncs sent through them, and their closing."""

    made: list[weakref.ref[Any]] = field(factory=list)
    fsynced: list[str] = field(factory=list)  # what each kernel fsync named
    closed: int = 0
    watched_after_close: list[bool] = field(factory=list)


@pytest.fixture
def contexts(monkeypatch: pytest.MonkeyPatch) -> RealContexts:
    seen = RealContexts()
    real_make = _durable._aio_context
    real_fsync: Callable[..., Any] = AsyncioContext.fsync
    real_close: Callable[..., Any] = AsyncioContext.close

    def make() -> Any:
        context = real_make()
        if context is not None:
            seen.made.append(weakref.ref(context))
        return context

    def fsync(context: Any, fd: int) -> Any:
        seen.fsynced.append(fd_target(fd))
        return real_fsync(context, fd)

    def close(context: Any) -> None:
        real_close(context)
        seen.closed += 1
        # The context (so its eventfd) is alive here: True would mean the loop still watched it.
        seen.watched_after_close.append(context.loop.remove_reader(context.context.fileno))

    monkeypatch.setattr(_durable, "_aio_context", make)
    monkeypatch.setattr(AsyncioContext, "fsync", fsync)
    monkeypatch.setattr(AsyncioContext, "close", close)
    return seen


class FakeAio:
    """Stands in for caio's ``AsyncioContext`` (``fsync`` and ``close``), optionally failing each fsync."""

    def __init__(self, error: Callable[[], BaseException] | None = None) -> None:
        self.error = error
        self.fds: list[int] = []
        self.closed = 0

    async def fsync(self, fd: int) -> None:
        self.fds.append(fd)
        if self.error is not None:
            raise self.error()

    def close(self) -> None:
        self.closed += 1


@frozen
class Moment:
    """One fsync seen by :class:`RecordingAio`, and the folder as it stood then."""

    task: object
    target: str
    size: int
    names: frozenset[str]
    manifest_paths: frozenset[str]


class RecordingAio(FakeAio):
    """A fake AIO context that notes, at each fsync, what the fd names and what the folder holds."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.moments: list[Moment] = []

    async def fsync(self, fd: int) -> None:
        await super().fsync(fd)
        manifest = self.folder / MANIFEST_NAME
        lines = manifest.read_text().splitlines() if manifest.exists() else []
        self.moments.append(
            Moment(
                task=asyncio.current_task(),
                target=fd_target(fd),
                size=os.fstat(fd).st_size,
                names=frozenset(os.listdir(self.folder)),
                manifest_paths=frozenset(json.loads(line)["path"] for line in lines),
            )
        )
        for _ in range(len(self.moments) % 3):  # let the other commits run in between
            await asyncio.sleep(0)


def use_aio(monkeypatch: pytest.MonkeyPatch, context: Any) -> None:
    """Bulk runs get ``context`` as their kernel AIO context."""
    monkeypatch.setattr(_durable, "_aio_context", lambda: context)


_PART = re.compile(r"^\.(?P<final>.+)\.audian-\d+-[0-9a-f]+\.part$")


def folder_and_manifest(dest: Path) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """The folder's documents, and its manifest's entries by fax id (without their timestamps)."""
    files = {p.name: p.read_bytes() for p in dest.iterdir() if p.name != MANIFEST_NAME}
    lines = [json.loads(line) for line in (dest / MANIFEST_NAME).read_text().splitlines()]
    entries = {line["id"]: {k: v for k, v in line.items() if k != "at"} for line in lines}
    assert len(entries) == len(lines), "a fax has two manifest lines"
    return files, entries


async def some_faxes(client: FaxClient, count: int) -> list[ReceivedFax]:
    page = await client.received.list(limit=count)
    assert len(page.faxes) == count
    return page.faxes


def all_downloaded(result: dict[OutcomeKind, list[Any]]) -> list[Any]:
    assert [o.error for o in result[OutcomeKind.FAILED]] == []
    downloaded = result[OutcomeKind.DOWNLOADED]
    assert len(downloaded) == FAXES
    return downloaded


# -- kernel AIO and worker threads ---------------------------------------------------------------


async def test_asyncio_commits_every_file_through_kernel_aio_without_a_worker_thread(
    client: FaxClient,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    trips: ThreadTrips,
    contexts: RealContexts,
    os_fsyncs: list[FsyncCall],
    folder_opens: Callable[[Path], int],
) -> None:
    probe = CommitSync.start()
    try:
        assert probe.aio
        assert isinstance(probe._aio, _durable._LoopAio)  # the event loop's shared context
        assert isinstance(probe._aio.context, AsyncioContext)
    finally:
        probe.close()
    contexts.made.clear()  # the probe's

    downloaded = all_downloaded(await run_all(client, tmp_path))

    assert trips.in_commits == [], "a commit took a trip to a worker thread"
    assert os_fsyncs == [], "an fsync went around kernel AIO"
    assert folder_opens(tmp_path) == 1, "the folder was not kept open for the run"
    assert len(contexts.made) == 1
    # Kernel fsyncs: each file's bytes, and the folder and the manifest, at most once per file
    # (commits ending together share them: fsync_shared).
    assert_fsync_counts(contexts.fsynced, tmp_path)
    entries = assert_folder_intact(audian_admin, audian_api_key, tmp_path)
    assert set(entries) == {o.fax.id for o in downloaded}


async def test_without_kernel_aio_commits_take_worker_threads_and_leave_the_same_folder(
    client: FaxClient,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trips: ThreadTrips,
    contexts: RealContexts,
    os_fsyncs: list[FsyncCall],
    folder_opens: Callable[[Path], int],
) -> None:
    with_aio, with_threads = tmp_path / "aio", tmp_path / "threads"
    all_downloaded(await run_all(client, with_aio))
    assert trips.in_commits == [] and len(contexts.made) == 1 and os_fsyncs == []

    monkeypatch.setenv("AUDIAN_FAX_AIO", "0")
    probe = CommitSync.start()
    probe.close()
    assert not probe.aio
    all_downloaded(await run_all(client, with_threads))

    assert trips.in_commits == ["_FileSink._commit"] * FAXES, "one worker-thread trip per committed file"
    assert len(os_fsyncs) == 3 * FAXES and not any(c.on_loop for c in os_fsyncs)
    assert folder_opens(with_aio) == folder_opens(with_threads) == 1, "a folder was not kept open for the run"
    assert len(contexts.made) == 1, "the second run made a kernel AIO context"
    assert_fsync_counts(contexts.fsynced, with_aio)  # and sent nothing through the first run's
    assert len(assert_folder_intact(audian_admin, audian_api_key, with_threads)) == FAXES
    files, entries = folder_and_manifest(with_threads)
    assert len(files) == FAXES
    assert (files, entries) == folder_and_manifest(with_aio)


def test_under_trio_commits_take_worker_threads_and_a_run_completes(
    make_client: ClientFactory,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    trips: ThreadTrips,
    contexts: RealContexts,
    os_fsyncs: list[FsyncCall],
    folder_opens: Callable[[Path], int],
) -> None:
    async def main() -> tuple[bool, dict[OutcomeKind, list[Any]]]:
        probe = CommitSync.start()
        probe.close()
        async with make_client() as client:
            return probe.aio, await run_all(client, tmp_path)

    aio, result = trio.run(main)

    assert aio is False
    assert contexts.made == [] and contexts.fsynced == []
    all_downloaded(result)
    assert trips.in_commits == ["_FileSink._commit"] * FAXES
    assert trips.pool == 0, "the SDK's pool is for asyncio: trio takes anyio's threads"
    # Each file's bytes, its folder and the manifest, in worker threads (never on trio's loop).
    assert len(os_fsyncs) == 3 * FAXES and not any(c.on_loop for c in os_fsyncs)
    assert folder_opens(tmp_path) == 1, "the folder was not kept open for the run"
    assert len(assert_folder_intact(audian_admin, audian_api_key, tmp_path)) == FAXES


# -- the order of a commit -----------------------------------------------------------------------


async def test_each_file_is_fsynced_then_named_then_its_folder_then_its_line_then_the_manifest(
    client: FaxClient,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trips: ThreadTrips,
) -> None:
    dest = tmp_path.resolve()
    aio = RecordingAio(dest)
    use_aio(monkeypatch, aio)

    downloaded = all_downloaded(await run_all(client, dest))

    assert trips.in_commits == []
    targets = [m.target for m in aio.moments]
    assert_fsync_counts(targets, dest)
    # A folder or manifest fsync may serve several commits (fsync_shared), so each file's order is
    # checked on the moments themselves: its bytes fsynced under the temporary name, then a folder
    # fsync that saw its final name and not yet its manifest line, then a manifest fsync with it.
    committed: dict[str, int] = {}
    for index, file in enumerate(aio.moments):
        temp = Path(file.target)
        match = _PART.match(temp.name)
        if match is None:
            continue
        assert temp.parent == dest
        final = match.group("final")
        assert temp.name in file.names and final not in file.names
        later = aio.moments[index + 1 :]
        folder = next((i for i, m in enumerate(later) if m.target == str(dest) and final in m.names), None)
        assert folder is not None, f"no folder fsync after {final} got its name"
        assert temp.name not in later[folder].names and final not in later[folder].manifest_paths
        assert any(m.target == str(dest / MANIFEST_NAME) and final in m.manifest_paths for m in later[folder + 1 :]), (
            f"no manifest fsync after {final}'s line"
        )
        assert final not in committed, f"{final} committed twice"
        committed[final] = file.size
    # Every file, whole when its bytes were fsynced.
    assert committed == {o.path.name: o.bytes for o in downloaded}
    assert aio.closed == 1
    assert len(assert_folder_intact(audian_admin, audian_api_key, dest)) == FAXES


def assert_fsync_counts(targets: list[str], dest: Path) -> None:
    """One fsync per file's bytes; the folder's and the manifest's at least once, at most once per file."""
    dest = dest.resolve()
    assert sum(_PART.match(Path(t).name) is not None for t in targets) == FAXES
    for shared in (str(dest), str(dest / MANIFEST_NAME)):
        assert 1 <= targets.count(shared) <= FAXES, (shared, targets.count(shared))
    assert len(targets) == FAXES + targets.count(str(dest)) + targets.count(str(dest / MANIFEST_NAME))


# -- failing fsyncs ------------------------------------------------------------------------------


async def test_a_write_back_error_fails_the_download_and_is_never_retried_in_a_thread(
    client: FaxClient,
    audian_admin: AdminClient,
    tmp_path: Path,
    trips: ThreadTrips,
    os_fsyncs: list[FsyncCall],
) -> None:
    (fax,) = await some_faxes(client, 1)
    aio = FakeAio(lambda: ValueError("fsync failed [EIO]"))
    sync = CommitSync(aio)
    try:
        with pytest.raises(DestinationError, match=re.escape(os.strerror(errno.EIO))) as caught:
            await download_file(client, fax.id, tmp_path / "x.pdf", fax=fax, sync=sync)
        assert sync.aio, "a write-back error is no reason to give kernel AIO up"
    finally:
        sync.close()
    cause = caught.value.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.EIO
    assert len(aio.fds) == 1, "only the file's own fsync, once"
    assert os_fsyncs == [], "the failed fsync was tried again with os.fsync"
    assert trips.in_commits == [] and "fsync" not in trips.elsewhere
    assert list(tmp_path.iterdir()) == [], "a temporary or final file was left behind"
    assert aio.closed == 1


async def test_a_write_back_error_in_a_bulk_run_fails_each_fax_and_leaves_the_folder_empty(
    client: FaxClient,
    audian_admin: AdminClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    os_fsyncs: list[FsyncCall],
) -> None:
    aio = FakeAio(lambda: ValueError("fsync failed [EIO]"))
    use_aio(monkeypatch, aio)

    result = await run_all(client, tmp_path)

    failed = result[OutcomeKind.FAILED]
    assert len(failed) == FAXES and not result[OutcomeKind.DOWNLOADED]
    assert all(isinstance(o.error, DestinationError) and o.path is None for o in failed)
    assert len(aio.fds) == FAXES and aio.closed == 1
    assert os_fsyncs == []
    assert list(tmp_path.iterdir()) == [], "a file or manifest line stands for a fax that failed"


async def test_aio_fsync_refused_by_the_file_system_switches_to_threads_for_good(
    client: FaxClient,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    trips: ThreadTrips,
    os_fsyncs: list[FsyncCall],
) -> None:
    first, second = await some_faxes(client, 2)
    aio = FakeAio(lambda: ValueError("The AIO context specified by ctx_id is invalid. [EINVAL]"))
    sync = CommitSync(aio)
    try:
        await download_file(client, first.id, tmp_path / "a.pdf", fax=first, sync=sync)
        assert not sync.aio
        assert len(aio.fds) == 1
        assert trips.in_commits == ["fsync", "fsync"], "the file's fsync again, then its folder's, in threads"
        await download_file(client, second.id, tmp_path / "b.pdf", fax=second, sync=sync)
        assert len(aio.fds) == 1, "the retired context was asked again"
        assert trips.in_commits == ["fsync", "fsync", "_FileSink._commit"]
    finally:
        sync.close()
    assert aio.closed == 1, "the retired context is closed with the CommitSync"
    assert [Path(c.target).name.endswith(".part") for c in os_fsyncs] == [True, False, True, False]
    assert {Path(c.target) for c in os_fsyncs[1::2]} == {tmp_path.resolve()}
    assert not any(c.on_loop for c in os_fsyncs)
    assert partial_files(tmp_path) == []
    assert_matches_emulator(audian_admin, audian_api_key, first.id, tmp_path / "a.pdf")
    assert_matches_emulator(audian_admin, audian_api_key, second.id, tmp_path / "b.pdf")


async def test_aio_fsync_refused_in_a_bulk_run_still_commits_every_fax(
    client: FaxClient,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trips: ThreadTrips,
) -> None:
    aio = FakeAio(lambda: ValueError("... [EINVAL]"))
    use_aio(monkeypatch, aio)

    downloaded = all_downloaded(await run_all(client, tmp_path))

    assert len(aio.fds) == 1 and aio.closed == 1
    # The commit that met the refusal finishes with threaded fsyncs; every later one is one trip.
    assert set(trips.in_commits) == {"fsync", "_FileSink._commit"}
    assert trips.in_commits.count("_FileSink._commit") == FAXES - 1
    entries = assert_folder_intact(audian_admin, audian_api_key, tmp_path)
    assert set(entries) == {o.fax.id for o in downloaded}


# -- resources -----------------------------------------------------------------------------------


async def test_a_run_closes_its_folders_and_manifest_and_leaves_the_loops_aio_context_open(
    client: FaxClient,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    contexts: RealContexts,
) -> None:
    await client.received.list(limit=1)  # the client's first connection: not the run's
    CommitSync.start().close()  # the loop's shared context (and its eventfd) exists from here on
    before = non_socket_fds()
    for folder in [tmp_path / "first", tmp_path / "second"]:
        all_downloaded(await run_all(client, folder))
        dest = folder.resolve()
        assert str(dest) in contexts.fsynced and str(dest / MANIFEST_NAME) in contexts.fsynced, "not kept open"
        # Every run used the loop's one context, and none closed it (destroying a kernel AIO context
        # blocks for an RCU grace period while holding the GIL: about 40 ms).
        assert len({id(ref()) for ref in contexts.made}) == 1 and contexts.made[0]() is not None
        assert contexts.closed == 0
        assert non_socket_fds() == before, "a folder or manifest descriptor stayed open"
        assert not any(t.startswith(str(tmp_path.resolve())) for t in open_fds().values())
        assert len(assert_folder_intact(audian_admin, audian_api_key, folder)) == FAXES


def test_a_collected_loops_aio_context_is_reused_by_the_next_loop_never_destroyed() -> None:
    async def commit_one(path: Path) -> int:
        sync = CommitSync.start()
        assert sync.aio
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            await sync.fsync(fd)
        finally:
            os.close(fd)
            sync.close()
        entry = _durable._per_loop[asyncio.get_running_loop()]
        return id(entry.context.context)

    with tempfile.TemporaryDirectory() as folder:
        first = asyncio.run(commit_one(Path(folder) / "a"))
        gc.collect()  # the first loop is gone: its context goes to the free list, not to io_destroy
        free = {id(c) for c in _durable._free}
        assert first in free
        second = asyncio.run(commit_one(Path(folder) / "b"))
        gc.collect()
    assert second in free  # a recycled context, not a new one


# -- bugs found in review, fixed ---------------------------------------------------------------------


async def test_a_write_back_error_in_caios_own_form_fails_the_download_cleanly(
    client: FaxClient, audian_admin: AdminClient, tmp_path: Path
) -> None:
    # How caio reports an operation the kernel completed with an error, on a real context: an
    # eventfd reads 8 bytes at a time, so a 4-byte read ends with EINVAL (io_submit accepted it).
    context: Any = AsyncioContext(max_requests=4, loop=asyncio.get_running_loop())  # type: ignore[no-untyped-call]
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        with pytest.raises(SystemError) as caught:
            await context.read(4, efd, 0)
    finally:
        context.close()
        os.close(efd)
    assert str(caught.value) == os.strerror(errno.EINVAL)

    (fax,) = await some_faxes(client, 1)
    sync = CommitSync(FakeAio(lambda: SystemError(os.strerror(errno.EIO))))  # caio's form of a write-back error
    try:
        with pytest.raises(DestinationError):
            await download_file(client, fax.id, tmp_path / "x.pdf", fax=fax, sync=sync)
    finally:
        sync.close()
    assert list(tmp_path.iterdir()) == []


async def test_the_kernel_refusing_an_aio_context_falls_back_to_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # io_setup refuses more requests than aio-max-nr with EAGAIN, as when the system's aio-nr is used up.
    limit = int(Path("/proc/sys/fs/aio-max-nr").read_text())
    monkeypatch.setattr(_durable, "_MAX_REQUESTS", limit + 1)
    sync = CommitSync.start()
    sync.close()
    assert not sync.aio


async def test_aio_retired_mid_commit_never_fsyncs_on_the_event_loop(
    client: FaxClient,
    audian_admin: AdminClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    os_fsyncs: list[FsyncCall],
) -> None:
    use_aio(monkeypatch, FakeAio(lambda: ValueError("... [EINVAL]")))
    all_downloaded(await run_all(client, tmp_path))
    assert [c.target for c in os_fsyncs if c.on_loop] == []


@pytest.mark.parametrize(("code", "raised"), [(errno.EIO, True), (errno.ENOSPC, True), (errno.EINVAL, False)])
async def test_a_folder_fsync_raises_a_failed_write_back_and_ignores_a_file_system_that_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, raised: bool
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    for aio in (False, True):
        sync = CommitSync(FakeAio(lambda: OSError(code, os.strerror(code))) if aio else None)
        try:
            if raised:
                with pytest.raises(OSError) as caught:
                    await sync.sync_dir(tmp_path)
                assert caught.value.errno == code
                with pytest.raises(OSError):
                    sync.sync_dir_blocking(tmp_path)
                with pytest.raises(OSError):
                    _durable.fsync_dir(tmp_path)
            else:
                await sync.sync_dir(tmp_path)
                sync.sync_dir_blocking(tmp_path)
                _durable.fsync_dir(tmp_path)
        finally:
            sync.close()


class _Completions:
    """A caio context's ``process_events``: each step returns a count or raises an error."""

    def __init__(self, *steps: int | BaseException) -> None:
        self.steps = list(steps)
        self.calls = 0

    def process_events(self) -> int:
        self.calls += 1
        step = self.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def test_draining_completions_goes_on_after_a_signal_interrupted_it() -> None:
    # caio's own loop stopped at the first EINTR (seen under py-spy): the completions after it
    # stayed in the ring with nothing left to wake the loop.
    eintr = SystemError(errno.EINTR, "Interrupted system call")
    context = _Completions(eintr, 3, eintr, 1, 0)

    _durable.drain(context)

    assert context.calls == 5 and context.steps == []


def test_draining_completions_raises_any_other_failure() -> None:
    context = _Completions(2, SystemError(errno.EIO, "Input/output error"), 0)

    with pytest.raises(SystemError):
        _durable.drain(context)

    assert context.steps == [0]


async def test_the_loops_aio_context_drains_through_the_signal_safe_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    sync = CommitSync.start()
    try:
        if not sync.aio:
            pytest.fail("kernel AIO is expected on this machine (Linux, caio installed)")
        drained: list[Any] = []
        monkeypatch.setattr(_durable, "drain", drained.append)
        entry = _durable._aio_context()
        assert entry is not None
        entry.context._on_read_event()
        assert drained == [entry.context.context]
    finally:
        sync.close()
