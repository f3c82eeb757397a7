"""The package's worker-thread pool: results, exceptions, its thread cap, idle exit, the trio fallback."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
import trio

from audian_fax_async import _threads
from audian_fax_async._threads import ThreadPool, run_blocking

T = TypeVar("T")


async def _run(pool: ThreadPool, fn: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    pool.submit(loop, future, fn, *args)
    return await future


async def test_returns_the_result_computed_in_another_thread() -> None:
    pool = ThreadPool(max_threads=2, idle_timeout=0)
    here = threading.get_ident()
    assert await _run(pool, lambda a, b: (a + b, threading.get_ident() != here), 2, 3) == (5, True)


async def test_raises_the_exception_of_the_work_in_the_awaiting_task() -> None:
    pool = ThreadPool(idle_timeout=0)

    def fail() -> None:
        raise FileExistsError("taken")

    with pytest.raises(FileExistsError, match="taken"):
        await _run(pool, fail)


async def test_never_runs_more_threads_than_its_cap() -> None:
    pool = ThreadPool(max_threads=3, idle_timeout=0)
    release = threading.Event()
    running: list[int] = []
    lock = threading.Lock()
    highest = 0

    def work(i: int) -> int:
        nonlocal highest
        with lock:
            running.append(i)
            highest = max(highest, len(running))
        release.wait(5)
        with lock:
            running.remove(i)
        return i

    tasks = [asyncio.ensure_future(_run(pool, work, i)) for i in range(10)]
    while len(running) < 3:  # the first three run; the other seven wait in the queue
        await asyncio.sleep(0)
    assert pool.threads == 3
    release.set()
    assert sorted(await asyncio.gather(*tasks)) == list(range(10))
    assert highest == 3


async def test_idle_threads_exit_and_a_later_submit_starts_a_new_one() -> None:
    pool = ThreadPool(max_threads=2, idle_timeout=0)
    assert await _run(pool, lambda: 1) == 1
    pool.join(5)
    assert pool.threads == 0
    assert await _run(pool, lambda: 2) == 2
    pool.join(5)
    assert pool.threads == 0


async def test_a_cancelled_waiter_does_not_stop_the_work_or_break_the_pool() -> None:
    pool = ThreadPool(max_threads=1, idle_timeout=0)
    started, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)
        done.set()

    task = asyncio.ensure_future(_run(pool, slow))
    while not started.is_set():
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await _run(pool, lambda: "next") == "next"
    assert done.is_set()


async def test_run_blocking_uses_the_pool_on_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = ThreadPool(idle_timeout=0)
    monkeypatch.setattr(_threads, "_pool", pool)
    names: list[str] = []
    await run_blocking(lambda: names.append(threading.current_thread().name))
    assert names == ["audian-fax-io"]


def test_run_blocking_falls_back_to_anyio_threads_on_trio() -> None:
    async def main() -> str:
        return await run_blocking(lambda: threading.current_thread().name)

    name = trio.run(main)
    assert name != "audian-fax-io" and name != threading.current_thread().name


def test_a_pool_needs_at_least_one_thread() -> None:
    with pytest.raises(ValueError, match="max_threads"):
        ThreadPool(max_threads=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_a_forked_child_starts_its_own_threads() -> None:
    import hashlib

    from audian_fax_async._hashing import StreamHasher

    async def use_both() -> str:
        hasher = StreamHasher(offload_min=0)
        hasher.update(b"x" * 300_000)
        return await run_blocking(hasher.hexdigest)

    expected = hashlib.sha256(b"x" * 300_000).hexdigest()
    assert asyncio.run(use_both()) == expected  # the parent's worker and hashing threads now exist, idle
    pid = os.fork()
    if pid == 0:  # the child: without the at-fork reset both would wait for threads that are not there
        signal.alarm(10)
        try:
            ok = asyncio.run(use_both()) == expected
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
