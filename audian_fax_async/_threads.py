"""Blocking file work off the event loop, at a fraction of the cost of ``anyio.to_thread``.

Every downloaded file makes one trip to a worker thread (fsync, rename, folder fsync, manifest line).
``anyio.to_thread.run_sync`` costs about 130 µs of CPU per trip on this kind of machine and
``loop.run_in_executor`` about 65 µs; a plain queue into a few long-lived threads that answer with
``call_soon_threadsafe`` costs about 20 µs (benchmarks/README.md). On asyncio, :func:`run_blocking`
uses such a pool, shared by the process; on any other backend (trio) it falls back to
``anyio.to_thread.run_sync``.

Callers shield the await when the work must finish (a commit); the work itself always runs to its
end in its thread, as with ``anyio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import sniffio

__all__ = ["ThreadPool", "run_blocking"]

T = TypeVar("T")

_Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _deliver(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class ThreadPool:
    """Up to ``max_threads`` daemon threads fed by one queue; a thread idle for ``idle_timeout`` seconds exits."""

    def __init__(self, max_threads: int = 8, idle_timeout: float = 10.0) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be >= 1")
        self.max_threads = max_threads
        self.idle_timeout = idle_timeout
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._started: list[threading.Thread] = []

    def _after_fork(self) -> None:
        """In a forked child no worker thread survives: start from nothing (items queued by the
        parent belong to the parent's loops)."""
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._started = []

    @property
    def threads(self) -> int:
        """How many worker threads are alive."""
        return self._threads

    def join(self, timeout: float | None = None) -> None:
        """Wait for the threads that already exited or are exiting (tests)."""
        for thread in list(self._started):
            thread.join(timeout)

    def submit(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[..., Any], *args: Any
    ) -> None:
        self._queue.put((loop, future, fn, args))
        with self._lock:
            # A thread that is idle (or about to look at the queue again) takes the item; otherwise
            # start one, up to the cap (items then wait for the next free thread).
            if self._idle > 0 or self._threads >= self.max_threads:
                return
            self._threads += 1
            self._started = [thread for thread in self._started if thread.is_alive()]
            thread = threading.Thread(target=self._work, name="audian-fax-io", daemon=True)
            self._started.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                item = self._queue.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._queue.empty():
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
            loop, future, fn, args = item
            try:
                result: tuple[bool, Any] = (True, fn(*args))
            except BaseException as exc:  # delivered to the awaiting task, raised there
                result = (False, exc)
            del fn, args, item
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_deliver, future, *result)
            del result, future, loop


_pool = ThreadPool()
if hasattr(os, "register_at_fork"):  # a forked child (gunicorn --preload, multiprocessing) has no threads
    os.register_at_fork(after_in_child=lambda: _pool._after_fork())


def on_asyncio() -> bool:
    """True inside an asyncio event loop (not trio, not outside any loop)."""
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread and return its result (its exception is raised here)."""
    if not on_asyncio():
        return await anyio.to_thread.run_sync(fn, *args)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    _pool.submit(loop, future, fn, *args)
    return await future
