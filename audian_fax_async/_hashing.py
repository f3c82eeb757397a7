"""sha256 of a document as it streams, with big chunks hashed beside the event loop.

hashlib releases the GIL while it hashes more than 2 KiB, so a chunk hashed in another thread costs
the event loop only a queue put. That pays for big chunks (aiohttp hands over 100-250 KB at a time:
a bare aiohttp loop that hashes ran 0.50 s for 400 documents inline and 0.37 s with the hashing
beside it) and does not for httpx2's 64 KiB ones, where the hashing thread's GIL hand-offs slow the
loop more than the hashing itself (1.05 s inline, 1.41 s beside it; benchmarks/README.md). So a
:class:`StreamHasher` hashes small chunks inline and big ones in the package's hashing thread, in
order: once a chunk went to the thread, the following ones follow it until the thread caught up.

Memory stays bounded: when more than ``max_pending`` bytes of one document wait for the thread,
:meth:`StreamHasher.update` waits for it (the caller's loop pauses exactly as long as hashing
inline would have taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import threading

__all__ = ["OFFLOAD_MIN", "StreamHasher"]

#: Chunks at least this big are hashed in the hashing thread.
OFFLOAD_MIN = 128 * 1024
#: Bytes of one document that may wait for the hashing thread.
MAX_PENDING = 2 * 1024 * 1024


class _Lane:
    """One document's hash and its backlog in the hashing thread (fresh after a restart)."""

    __slots__ = ("condition", "done", "hasher", "submitted", "waiter")

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.submitted = 0  # bytes handed to the thread (written by the caller's thread only)
        self.done = 0  # bytes the thread has hashed (written by the hashing thread only)
        # Made on the first chunk handed to the thread (a document of small chunks never needs one):
        # a Condition is half a dozen objects, and hundreds of downloads may be in flight.
        self.condition: threading.Condition | None = None
        # An event loop's future to resolve once the backlog is hashed (StreamHasher.adigest).
        self.waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    @property
    def pending(self) -> int:
        return self.submitted - self.done


class _HashThread:
    """One daemon thread, fed by a queue, started on first use; it exits when idle for a while."""

    def __init__(self, idle_timeout: float = 10.0) -> None:
        self._queue: queue.SimpleQueue[tuple[_Lane, bytes]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False
        self._idle_timeout = idle_timeout

    def _after_fork(self) -> None:
        """In a forked child the hashing thread is gone: start from nothing."""
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, lane: _Lane, chunk: bytes) -> None:
        self._queue.put((lane, chunk))
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._work, name="audian-fax-hash", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                lane, chunk = self._queue.get(timeout=self._idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._running = False
                        return
                continue
            lane.hasher.update(chunk)  # the GIL is released while this runs
            assert lane.condition is not None  # made before the chunk was queued
            with lane.condition:
                lane.done += len(chunk)
                lane.condition.notify_all()
                waiter = lane.waiter if lane.pending == 0 else None
                if waiter is not None:
                    lane.waiter = None
            if waiter is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    waiter[0].call_soon_threadsafe(_wake, waiter[1])
            del lane, chunk, waiter


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_thread = _HashThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _thread._after_fork())


class StreamHasher:
    """The sha256 of bytes fed in order with :meth:`update`; :meth:`hexdigest` waits for the backlog."""

    __slots__ = ("_lane", "_max_pending", "_offload_min")

    def __init__(self, *, offload_min: int = OFFLOAD_MIN, max_pending: int = MAX_PENDING) -> None:
        self._lane = _Lane()
        self._offload_min = offload_min
        self._max_pending = max_pending

    def update(self, chunk: bytes) -> None:
        lane = self._lane
        if lane.pending == 0 and len(chunk) < self._offload_min:
            lane.hasher.update(chunk)
            return
        condition = lane.condition
        if condition is None:
            condition = lane.condition = threading.Condition(threading.Lock())
        elif lane.pending > self._max_pending:
            with condition:  # backpressure: never more than max_pending bytes waiting
                condition.wait_for(lambda: lane.pending <= self._max_pending)
        lane.submitted += len(chunk)
        _thread.submit(lane, chunk)

    def reset(self) -> None:
        """Start over (the document restarts from byte 0); chunks still queued hash into the old lane."""
        self._lane = _Lane()

    @property
    def pending(self) -> int:
        """Bytes fed but not hashed yet (queued for the hashing thread)."""
        return self._lane.pending

    async def adigest(self) -> str:
        """:meth:`hexdigest` on an asyncio event loop: waits for the hashing thread without blocking
        the loop or taking a trip to a worker thread (the hashing thread wakes the loop)."""
        lane = self._lane
        if lane.pending:
            assert lane.condition is not None  # made with the first chunk handed to the thread
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            with lane.condition:
                waiting = lane.pending != 0
                if waiting:
                    lane.waiter = (loop, future)
            if waiting:
                await future
        return lane.hasher.hexdigest()

    def hexdigest(self) -> str:
        """The digest of everything fed so far (blocks until the hashing thread caught up)."""
        lane = self._lane
        if lane.pending:
            assert lane.condition is not None  # made with the first chunk handed to the thread
            with lane.condition:
                lane.condition.wait_for(lambda: lane.pending == 0)
        return lane.hasher.hexdigest()
