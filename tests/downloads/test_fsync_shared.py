"""``CommitSync.fsync_shared``: the group commit of folder and manifest fsyncs, without a disk.

The fake context below starts an fsync when asked and ends it only when the test says so, so every
interleaving is chosen by the test (no timing, no real fsync).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator

import pytest

from audian_fax_async._durable import CommitSync

FD, OTHER_FD = 7, 8


class GatedAio:
    """A stand-in for caio's context whose fsyncs end when :meth:`finish` is called, in start order."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.leaders: list[asyncio.Task[object] | None] = []  # the task that ran each fsync
        self._ends: list[asyncio.Future[BaseException | None]] = []
        self.closed = 0

    async def fsync(self, fd: int) -> None:
        self.started.append(fd)
        self.leaders.append(asyncio.current_task())
        end: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._ends.append(end)
        error = await end
        if error is not None:
            raise error

    def finish(self, number: int, error: BaseException | None = None) -> None:
        """End the ``number``-th fsync (1-based), failing it with ``error``."""
        self._ends[number - 1].set_result(error)

    def close(self) -> None:
        self.closed += 1


async def settle() -> None:
    """Let every runnable task run until it waits (a few loop passes; no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def aio() -> GatedAio:
    return GatedAio()


@pytest.fixture
def sync(aio: GatedAio) -> Iterator[CommitSync]:
    commit_sync = CommitSync(aio)
    yield commit_sync
    commit_sync.close()


async def test_callers_arriving_during_an_fsync_share_the_next_one_and_never_return_on_the_earlier(
    aio: GatedAio, sync: CommitSync
) -> None:
    first = asyncio.create_task(sync.fsync_shared(FD))
    await settle()
    assert aio.started == [FD]
    waiting = [asyncio.create_task(sync.fsync_shared(FD)) for _ in range(5)]
    await settle()
    assert aio.started == [FD], "a caller started its own fsync while one was running"

    aio.finish(1)
    await settle()
    assert first.done() and first.exception() is None
    # The first fsync may have started before their writes: none of them may return on it.
    assert not any(task.done() for task in waiting)
    assert aio.started == [FD, FD], "the five waiting callers did not share one fsync"

    aio.finish(2)
    await settle()
    assert all(task.done() and task.exception() is None for task in waiting)
    assert aio.started == [FD, FD]


async def test_a_caller_alone_fsyncs_at_once_and_descriptors_do_not_share(aio: GatedAio, sync: CommitSync) -> None:
    one = asyncio.create_task(sync.fsync_shared(FD))
    other = asyncio.create_task(sync.fsync_shared(OTHER_FD))
    await settle()
    assert aio.started == [FD, OTHER_FD]
    aio.finish(2)
    await settle()
    assert other.done() and not one.done()
    aio.finish(1)
    await settle()
    assert one.done()
    again = asyncio.create_task(sync.fsync_shared(FD))  # nothing running: its own fsync
    await settle()
    assert aio.started == [FD, OTHER_FD, FD]
    aio.finish(3)
    await again


async def test_a_failed_shared_fsync_fails_every_caller_that_waited_on_it(aio: GatedAio, sync: CommitSync) -> None:
    first = asyncio.create_task(sync.fsync_shared(FD))
    await settle()
    waiting = [asyncio.create_task(sync.fsync_shared(FD)) for _ in range(3)]
    await settle()
    aio.finish(1, OSError(errno.EIO, os.strerror(errno.EIO)))
    await settle()
    # The running fsync may have covered the waiters' writes: its failure is theirs too.
    for task in (first, *waiting):
        assert task.done()
        error = task.exception()
        assert isinstance(error, OSError) and error.errno == errno.EIO
    assert aio.started == [FD], "a write-back error was followed by another fsync (which may pass)"


async def test_the_shared_fsync_failing_fails_its_sharers(aio: GatedAio, sync: CommitSync) -> None:
    first = asyncio.create_task(sync.fsync_shared(FD))
    await settle()
    waiting = [asyncio.create_task(sync.fsync_shared(FD)) for _ in range(3)]
    await settle()
    aio.finish(1)
    await settle()
    aio.finish(2, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    await settle()
    assert first.exception() is None
    for task in waiting:
        error = task.exception()
        assert isinstance(error, OSError) and error.errno == errno.ENOSPC


async def test_a_cancelled_leader_leaves_the_waiters_to_fsync_for_themselves(aio: GatedAio, sync: CommitSync) -> None:
    first = asyncio.create_task(sync.fsync_shared(FD))
    await settle()
    waiting = [asyncio.create_task(sync.fsync_shared(FD)) for _ in range(3)]
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()
    # The interrupted fsync proves nothing: one waiter leads a new one, shared by the others.
    assert aio.started == [FD, FD]
    assert not any(task.done() for task in waiting)
    aio.finish(2)
    await settle()
    assert all(task.done() and task.exception() is None for task in waiting)


async def test_a_caller_does_not_return_on_a_shared_fsync_whose_leader_was_cancelled(
    aio: GatedAio, sync: CommitSync
) -> None:
    first = asyncio.create_task(sync.fsync_shared(FD))
    await settle()
    second, third = (asyncio.create_task(sync.fsync_shared(FD)) for _ in range(2))
    await settle()
    aio.finish(1)
    await settle()
    assert aio.started == [FD, FD]  # one of the two leads the fsync they share
    leader = aio.leaders[1]
    sharer = third if leader is second else second
    assert leader in (second, third)
    leader.cancel()
    await settle()
    # The fsync it shared was interrupted: it proves nothing, so the sharer fsyncs again.
    assert not sharer.done()
    assert aio.started == [FD, FD, FD]
    aio.finish(3)
    await settle()
    assert sharer.done() and sharer.exception() is None
    assert first.exception() is None


async def test_a_cancelled_waiter_does_not_disturb_the_running_fsync(aio: GatedAio, sync: CommitSync) -> None:
    first = asyncio.create_task(sync.fsync_shared(FD))
    await settle()
    waiter = asyncio.create_task(sync.fsync_shared(FD))
    await settle()
    waiter.cancel()
    await settle()
    assert waiter.cancelled()
    aio.finish(1)
    await settle()
    assert first.done() and first.exception() is None
    assert aio.started == [FD], "the cancelled waiter still fsynced"


async def test_without_kernel_aio_each_caller_fsyncs_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    sync = CommitSync(None)
    try:
        await asyncio.gather(*(sync.fsync_shared(FD) for _ in range(3)))
    finally:
        sync.close()
    assert calls == [FD] * 3
