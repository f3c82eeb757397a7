"""Making a bulk download's files durable: fsync without a Python worker thread per file.

Every committed file needs three fsyncs in order: its bytes, its folder once it is renamed into
place, and the manifest once its line is written. They may block for milliseconds on a real disk,
so they never run on the event loop itself. A Python worker thread is the usual answer, and it is
the costly one while the loop is busy: the thread and the loop hand the GIL back and forth around
each of the commit's system calls, and every hand-off waits for the scheduler. Measured on scenario
2's servers (600 x 450 KB from nginx, 10 at a time, nine alternated rounds): the SDK with one
worker-thread trip per file reached 0.77x a bare httpx2 loop (3.18 ms of CPU per document), and 0.96x
(2.41 ms) with the fsyncs sent to the kernel through Linux AIO, which completes them in the
kernel's own workers and wakes the loop through an eventfd (benchmarks/README.md).

:class:`CommitSync` does that through caio (``caio.linux_aio_asyncio``, kernel AIO; not caio's
io_uring context, which kept a core busy polling). Renames, the manifest line's ``write`` and
opening folders stay on the loop: metadata calls and page-cache writes of microseconds, like the
chunk writes themselves. Where kernel AIO is not there (not Linux, not asyncio, caio missing, a
file system that refuses AIO fsync), it falls back to worker threads, for good, and the commit
takes its one trip to a thread as before.

An fsync that fails with a write-back error (EIO, ENOSPC, ...) is raised as ``OSError`` with that
errno; it is never retried in a thread, since a second fsync after a failed one may report success
for data that was dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sniffio

from ._threads import run_blocking

__all__ = ["CommitSync", "drain", "fsync_dir", "preload"]

logger = logging.getLogger("audian_fax_async")

#: errnos with which a file system or kernel refuses AIO fsync (not a failed write-back).
_UNSUPPORTED = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}

#: caio refuses a submission with ``ValueError("... [EINVAL]")`` (the errno's name in brackets) and
#: reports an operation the kernel failed as ``SystemError(strerror)`` (``SystemError(errno, ...)``
#: when a context cannot be made).
_ERRNO = re.compile(r"\[(E[A-Z0-9]+)\]\s*$")
_BY_MESSAGE = {os.strerror(code): code for code in errno.errorcode}
#: caio's words for a request the kernel never took (safe to do again elsewhere).
_NOT_SUBMITTED = "not submitted"

#: errnos of a failed write-back: a folder fsync that fails with one fails the commit (others, such
#: as a file system that cannot fsync folders, are ignored).
_WRITE_BACK = {errno.EIO, errno.ENOSPC, errno.EDQUOT}

#: Requests one event loop's shared context may have in flight (more wait their turn in caio).
_MAX_REQUESTS = 256


def fsync_dir(folder: Path) -> None:
    """fsync a folder (blocking); a file system that cannot is ignored, a failed write-back raised."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        _fsync_folder_fd(fd)
    finally:
        os.close(fd)


def _fsync_folder_fd(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in _WRITE_BACK:
            raise


class _LoopAio:
    """One event loop's kernel-AIO context, shared by every bulk run on that loop.

    Contexts are made once and never destroyed while the process runs: caio destroys one on
    deallocation with ``io_destroy``, which waits for an RCU grace period while holding the GIL
    (about 40 ms here), so fifty bulk runs ending in one process stalled the event loop for seconds
    (scenario 5: lag p99 16 -> 70-90 ms). When its loop is collected, a context that has nothing in
    flight goes back to a free list for the next loop; its wrapper only refers to the loop weakly.
    """

    __slots__ = ("__weakref__", "context", "in_flight")

    def __init__(self, context: Any) -> None:
        self.context = context
        self.in_flight = 0

    async def fsync(self, fd: int) -> None:
        self.in_flight += 1
        try:
            await self.context.fsync(fd)
        finally:
            self.in_flight -= 1


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopAio] = weakref.WeakKeyDictionary()
_free: list[Any] = []  # caio C contexts of collected loops, idle: the next loop's
_kept: list[Any] = []  # contexts that may still have requests in flight, or a parent's after fork
_pool_lock = threading.Lock()


def _recycle(entry: _LoopAio) -> None:
    """The entry's loop was collected: keep its C context for the next loop (never destroy it)."""
    with _pool_lock:
        (_free if entry.in_flight == 0 else _kept).append(entry.context.context)


def _after_fork() -> None:
    """A forked child cannot use its parent's AIO contexts: keep them (destroying costs), use none."""
    with _pool_lock:
        _kept.extend(_free)
        _free.clear()
        _kept.extend(entry.context.context for entry in list(_per_loop.values()))
        _per_loop.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _make_context(max_requests: int) -> Any:
    with _pool_lock:
        if _free:
            return _free.pop()
    from caio.linux_aio import Context

    return Context(max_requests=max_requests)


def _aio_wanted() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("AUDIAN_FAX_AIO", "1") != "0"


def preload() -> None:
    """Import caio now (about 50 ms) if bulk runs will use it, rather than inside the event loop."""
    if _aio_wanted():
        with contextlib.suppress(ImportError):
            import caio.linux_aio_asyncio  # noqa: F401


def _aio_context() -> _LoopAio | None:
    """The running asyncio loop's shared kernel-AIO context, or None where there is none."""
    if not _aio_wanted():
        return None
    try:
        if sniffio.current_async_library() != "asyncio":
            return None
        from caio.linux_aio_asyncio import AsyncioContext
    except (ImportError, sniffio.AsyncLibraryNotFoundError):
        return None
    loop = asyncio.get_running_loop()
    entry = _per_loop.get(loop)
    if entry is not None:
        return entry

    class _Recycling(AsyncioContext):
        CONTEXT_CLASS = staticmethod(_make_context)  # type: ignore[assignment]  # a factory of recycled ones

        def _on_read_event(self) -> None:
            with contextlib.suppress(BlockingIOError):  # the eventfd read as zero: drain anyway
                self.context.poll()
            drain(self.context)

    try:
        # A weak proxy: the context must not keep its loop alive (the entry is keyed by the loop).
        context = _Recycling(max_requests=_MAX_REQUESTS, loop=weakref.proxy(loop))  # type: ignore[no-untyped-call]
    except Exception as exc:  # io_setup refused (aio-max-nr reached: SystemError EAGAIN), no AIO at all
        logger.debug("kernel AIO unavailable (%s): fsync in worker threads", exc)
        return None
    entry = _per_loop[loop] = _LoopAio(context)
    weakref.finalize(loop, _recycle, entry)
    return entry


def drain(context: Any) -> None:
    """Hand out every completed request of a caio context, again after a signal interrupted it.

    caio's own loop stops at the first ``SystemError(EINTR)`` of ``io_getevents`` (a signal handler
    ran, or a profiler such as py-spy attached): the eventfd is already read by then, so the
    completions left in the ring would wait for another one to wake the loop, and the last commits
    of a run would never return.
    """
    while True:
        try:
            if not context.process_events():
                return
        except SystemError as exc:
            if _errno_of(exc) != errno.EINTR:
                raise


def _errno_of(exc: BaseException) -> int | None:
    """The errno in one of caio's errors (see ``_ERRNO``), or None."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    if exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    message = str(exc)
    match = _ERRNO.search(message)
    if match:
        code = getattr(errno, match.group(1), None)
        return code if isinstance(code, int) else None
    return _BY_MESSAGE.get(message.strip())


class _Shared:
    """The fsyncs of one descriptor that callers share (see :meth:`CommitSync.fsync_shared`)."""

    __slots__ = ("running", "running_no", "started")

    def __init__(self) -> None:
        self.started = 0  # fsyncs of this descriptor started so far
        self.running: asyncio.Future[bool] | None = None  # True: completed; False: interrupted
        self.running_no = 0  # the number of the running one (1-based, in start order)


class CommitSync:
    """One bulk run's fsyncs: kernel AIO where available, kept-open folders, the manifest's fd.

    Make it inside the event loop that will use it (:meth:`start`) and :meth:`close` it once every
    download has ended. ``tail`` names one more file descriptor to fsync after each commit's
    ``then`` (the manifest, whose line ``then`` wrote).
    """

    def __init__(self, aio: Any = None, *, owned: bool = True) -> None:
        self._aio = aio
        self._owned = owned  # close() closes it (a loop's shared context is never closed)
        self._retired: Any = None  # a context no longer used (fsyncs may still be pending on it)
        self._dirs: dict[Path, int] = {}
        self._lock = threading.Lock()  # the folders dict is shared with worker threads
        self._closed = False
        # Group commit of the folder and manifest fsyncs (see fsync_shared), with kernel AIO: on asyncio.
        self._shared: dict[int, _Shared] | None = {} if aio is not None else None
        self.tail: Callable[[], int | None] | None = None

    @classmethod
    def start(cls, *, aio: bool = True) -> CommitSync:
        """A CommitSync for the running loop (kernel AIO if ``aio`` and available)."""
        context = _aio_context() if aio else None
        # The loop's shared context outlives the run; anything else given here is the run's own.
        return cls(context, owned=not isinstance(context, _LoopAio))

    @property
    def aio(self) -> bool:
        """Whether fsyncs go to the kernel (False: worker threads)."""
        return self._aio is not None

    async def fsync(self, fd: int) -> None:
        """fsync ``fd`` without blocking the loop; ``OSError`` as :func:`os.fsync` raises it."""
        context = self._aio
        if context is not None:
            try:
                await context.fsync(fd)
                return
            except (ValueError, OSError, SystemError) as exc:
                code = _errno_of(exc)
                refused = code in _UNSUPPORTED or (code is None and _NOT_SUBMITTED in str(exc))
                if not refused:
                    # A failed write-back (or an error we cannot read): never fsync again elsewhere,
                    # where a second fsync may report success for data the kernel dropped.
                    code = code if code is not None else errno.EIO
                    raise OSError(code, f"fsync failed: {os.strerror(code)} ({exc})") from exc
                # Refused by the file system or kernel: worker threads from now on, this one there too.
                logger.debug("kernel AIO fsync refused (%s): fsync in worker threads", exc)
                self._drop_aio()
        await run_blocking(os.fsync, fd)

    async def fsync_shared(self, fd: int) -> None:
        """fsync ``fd`` for everything written to it before this call, sharing fsyncs (group commit).

        An fsync covers every write made before it starts. A caller that arrives while one of the
        same descriptor is running waits for it, then shares the next one with everybody else who
        arrived meanwhile: ten commits ending together fsync the folder and the manifest two or three
        times instead of ten (each fsync is a system call and a wake-up of the loop here, and a
        journal commit on a real disk). A failed shared fsync fails every caller that waited on it,
        since it may have covered their writes. Without kernel AIO (worker threads, trio), a plain
        :meth:`fsync`.
        """
        shared_by_fd = self._shared
        if shared_by_fd is None:
            await self.fsync(fd)
            return
        shared = shared_by_fd.get(fd)
        if shared is None:
            shared = shared_by_fd[fd] = _Shared()
        asked = shared.started
        while (running := shared.running) is not None:
            number = shared.running_no
            try:
                completed = await asyncio.shield(running)  # a cancelled waiter leaves it running
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror) from exc
            if completed and number > asked:
                return  # it started after this call: it covered this caller's writes
        shared.started += 1
        shared.running_no = shared.started
        future = shared.running = asyncio.get_running_loop().create_future()
        try:
            await self.fsync(fd)
        except OSError as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        except BaseException:
            future.set_result(False)  # interrupted (cancelled): the waiters go on and fsync themselves
            raise
        else:
            future.set_result(True)
        finally:
            shared.running = None

    async def sync_dir(self, folder: Path) -> None:
        """fsync a folder (kept open for the run); a file system that cannot is ignored."""
        fd = self._dir_fd(folder)
        if fd is None:
            await run_blocking(fsync_dir, folder)  # not kept open (closed, or cannot be opened)
            return
        try:
            await self.fsync_shared(fd)
        except OSError as exc:
            if exc.errno in _WRITE_BACK:
                raise

    def sync_dir_blocking(self, folder: Path) -> None:
        """:meth:`sync_dir` for a worker thread."""
        fd = self._dir_fd(folder)
        if fd is None:
            fsync_dir(folder)
            return
        _fsync_folder_fd(fd)

    async def after_commit(self) -> None:
        """fsync the ``tail`` file, if any (after a commit's ``then`` wrote to it)."""
        fd = self.tail() if self.tail is not None else None
        if fd is not None:
            await self.fsync_shared(fd)

    def _dir_fd(self, folder: Path) -> int | None:
        with self._lock:
            fd = self._dirs.get(folder)
            if fd is None and not self._closed:
                try:
                    fd = self._dirs[folder] = os.open(folder, os.O_RDONLY)
                except OSError:
                    return None
            return fd

    def _drop_aio(self) -> None:
        if self._aio is not None:
            self._retired, self._aio = self._aio, None

    def close(self) -> None:
        """Close the folders and the AIO context (call it once no commit is running)."""
        with self._lock:
            fds, self._dirs, self._closed = list(self._dirs.values()), {}, True
        if self._shared is not None:
            self._shared.clear()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._drop_aio()
        context, self._retired = self._retired, None
        if context is not None and self._owned:
            context.close()
