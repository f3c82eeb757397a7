"""The SDK's file work runs in at most ``FILE_THREADS`` worker threads per event loop (so hundreds of
downloads committing at once do not crowd the loop out of the GIL); urgent work never waits for them."""

from __future__ import annotations

import threading

import anyio
import pytest

from audian_fax_async._blocking import FILE_THREADS, run_blocking


async def test_at_most_file_threads_trips_run_at_once_and_an_urgent_one_never_waits() -> None:
    release = threading.Event()
    lock = threading.Lock()
    running = highest = done = 0

    def work() -> None:
        nonlocal running, highest, done
        with lock:
            running += 1
            highest = max(highest, running)
        release.wait(10)
        with lock:
            running -= 1
            done += 1

    async with anyio.create_task_group() as tg:
        for _ in range(3 * FILE_THREADS):
            tg.start_soon(run_blocking, work)
        with anyio.fail_after(5):
            while running < FILE_THREADS:
                await anyio.sleep(0.005)
        # Every file thread is taken and the rest wait: an urgent trip still runs at once.
        with anyio.fail_after(5):
            assert await run_blocking(threading.get_ident, urgent=True) != threading.get_ident()
        assert running == FILE_THREADS and done == 0
        release.set()
    assert highest == FILE_THREADS and done == 3 * FILE_THREADS


async def test_the_result_and_the_error_of_the_work_come_back_as_themselves() -> None:
    assert await run_blocking(divmod, 7, 2) == (3, 1)
    with pytest.raises(ValueError, match="not a number"):
        await run_blocking(int, "not a number")
