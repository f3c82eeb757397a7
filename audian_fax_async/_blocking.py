"""The SDK's blocking file work (temporary files, fsyncs, renames, the manifest), in anyio's worker
threads, a few at a time per event loop.

Each trip to a worker thread competes with the event loop for the GIL. With hundreds of downloads
in flight, anyio's default of 40 threads lets dozens of commits run at once and the loop waits its
turn behind them: a heartbeat then wakes tens of milliseconds late. A few threads keep up with the
disk as well (scenario 5 of ``benchmarks/`` prices both). Urgent work (a fax a webhook announced,
which the mirror downloads ahead of everything else) does not queue behind them: it takes one of
anyio's own threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.lowlevel
import anyio.to_thread

__all__ = ["FILE_THREADS", "run_blocking"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: Worker threads the SDK's file work may use at once, per event loop.
FILE_THREADS = 4

_limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar("audian_fax_async.file_threads")


def _file_threads() -> anyio.CapacityLimiter:
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(FILE_THREADS)
        _limiter.set(limiter)
        return limiter


async def run_blocking(func: Callable[[*Ts], T], *args: *Ts, urgent: bool = False) -> T:
    """``func(*args)`` in a worker thread, among at most :data:`FILE_THREADS` of this event loop's
    (``urgent``: in one of anyio's, without waiting for those)."""
    return await anyio.to_thread.run_sync(func, *args, limiter=None if urgent else _file_threads())
