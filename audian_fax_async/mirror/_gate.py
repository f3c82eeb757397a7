"""``PriorityGate``: at most N downloads at once, a freed place going to the most urgent waiter.

The account's limiter (local or Redis) admits first come, first served; this gate sits above it in
one mirror, so that when a place frees up a live download (a webhook's fax) takes it ahead of any
sweep download that was waiting longer. One event loop; no threads.
"""

from __future__ import annotations

import heapq
import itertools

import anyio
import anyio.lowlevel

__all__ = ["PriorityGate"]


class _Waiter:
    __slots__ = ("event", "gone", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False
        self.gone = False


class PriorityGate:
    """``capacity`` places; waiters are served by priority (lower first), then in arrival order."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self.in_use = 0
        self.highest_in_use = 0
        self._heap: list[tuple[int, int, _Waiter]] = []
        self._waiting = 0
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        """How many tasks wait for a place."""
        return self._waiting

    def lane(self, priority: int) -> _Hold:
        """A reusable async context manager holding one place at ``priority`` while inside."""
        return _Hold(self, priority)

    def _take(self) -> None:
        self.in_use += 1
        self.highest_in_use = max(self.highest_in_use, self.in_use)

    async def acquire(self, priority: int) -> None:
        if self.in_use < self.capacity and self._waiting == 0:
            self._take()
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()
            except BaseException:
                self.release()
                raise
            return
        waiter = _Waiter()
        heapq.heappush(self._heap, (priority, next(self._order), waiter))
        self._waiting += 1
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:  # handed the place while being cancelled: pass it on
                self.release()
            else:
                waiter.gone = True
                self._waiting -= 1
            raise

    def release(self) -> None:
        while self._heap:
            _, _, waiter = heapq.heappop(self._heap)
            if waiter.gone:
                continue
            self._waiting -= 1
            waiter.granted = True
            waiter.event.set()  # the place passes to the waiter: in_use stays
            self.highest_in_use = max(self.highest_in_use, self.in_use)
            return
        self.in_use -= 1


class _Hold:
    __slots__ = ("_gate", "_priority")

    def __init__(self, gate: PriorityGate, priority: int) -> None:
        self._gate, self._priority = gate, priority

    async def __aenter__(self) -> None:
        await self._gate.acquire(self._priority)

    async def __aexit__(self, *exc_info: object) -> None:
        self._gate.release()
