"""The account's download limit: a small pluggable interface and the in-process implementation.

The API allows 10 concurrent downloads per account. Every download holds a slot of a
:class:`DownloadLimiter` for its whole duration. The default :class:`LocalLimiter` is shared by
every :class:`FaxClient` of the process, whatever thread or event loop (asyncio, uvloop, trio) it
runs in; the Redis one (``audian_fax_async.RedisLimiter``) holds the limit across processes and
hosts through the same interface.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio
import anyio.lowlevel
from attrs import frozen

from ._config import DEFAULT_MAX_CONCURRENT_DOWNLOADS

__all__ = ["DownloadLimiter", "LimiterStatistics", "LocalLimiter", "default_limiter"]


@frozen
class LimiterStatistics:
    """A snapshot of one account's slots."""

    limit: int
    in_use: int
    waiting: int
    highest_in_use: int
    total_acquired: int


class DownloadLimiter(abc.ABC):
    """Admits at most ``limit`` concurrent downloads per account.

    ``account`` is an opaque account name derived from the API key (never the key itself).
    Implementations must release the slot on success, error and cancellation alike, and must
    cancel the body (raising :class:`~audian_fax_async.LimiterError`) rather than let it run on
    when they lose a slot they held.
    """

    @abc.abstractmethod
    def acquire(self, account: str) -> AbstractAsyncContextManager[None]:
        """Hold one slot of ``account`` for the duration of the ``async with`` block."""

    @abc.abstractmethod
    def statistics(self, account: str) -> LimiterStatistics:
        """Current use of ``account``'s slots as seen by this process."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the limiter (connections, background tasks)."""


def _thread_safe_scheduler() -> Callable[[Callable[[], object]], object]:
    """A function that runs a callback soon on the calling task's event loop, from any thread."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # not asyncio (nor uvloop): trio
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon


class _Waiter:
    """A task waiting for a slot: woken on its own event loop by whichever thread releases one."""

    __slots__ = ("event", "granted", "schedule")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.schedule = _thread_safe_scheduler()
        self.granted = False

    def grant(self) -> bool:
        """Hand this waiter the slot (under the slots' lock); False if its event loop is gone."""
        try:
            self.schedule(self.event.set)
        except RuntimeError:  # its loop closed (asyncio) or its run finished (trio)
            return False
        self.granted = True
        return True


class _Slots:
    """One account's slots in this process: a thread-safe, first-come first-served semaphore."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.in_use = 0
        self.highest = 0
        self.total = 0
        self.waiters: collections.deque[_Waiter] = collections.deque()

    def _taken(self) -> None:
        self.total += 1
        self.highest = max(self.highest, self.in_use)

    async def acquire(self) -> None:
        with self.lock:
            free = self.in_use < self.limit and not self.waiters
            if free:
                self.in_use += 1
                self._taken()
            else:
                waiter = _Waiter()
                self.waiters.append(waiter)
        if free:
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled task does not start
            except BaseException:
                self.release()
                raise
            return
        try:
            await waiter.event.wait()
        except BaseException:
            with self.lock:
                handed = waiter.granted
                if not handed:
                    self.waiters.remove(waiter)
            if handed:  # granted while being cancelled: pass the slot on
                self.release()
            raise

    def release(self) -> None:
        with self.lock:
            while self.waiters:
                waiter = self.waiters.popleft()
                if waiter.grant():  # the slot goes to the waiter: in_use stays
                    self._taken()
                    return
            self.in_use -= 1


class LocalLimiter(DownloadLimiter):
    """An in-process limiter: ``limit`` slots per account, shared by every client, thread and event
    loop of the process (asyncio, uvloop and trio alike), handed out first come, first served."""

    def __init__(self, limit: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
        self.limit = limit
        self._lock = threading.Lock()
        self._accounts: dict[str, _Slots] = {}

    def _slots(self, account: str) -> _Slots:
        with self._lock:
            slots = self._accounts.get(account)
            if slots is None:
                slots = self._accounts[account] = _Slots(self.limit)
            return slots

    def acquire(self, account: str) -> AbstractAsyncContextManager[None]:
        return _LocalHold(self._slots(account))

    def statistics(self, account: str) -> LimiterStatistics:
        slots = self._slots(account)
        with slots.lock:
            return LimiterStatistics(
                limit=self.limit,
                in_use=slots.in_use,
                waiting=len(slots.waiters),
                highest_in_use=slots.highest,
                total_acquired=slots.total,
            )


class _LocalHold:
    """One slot of a :class:`LocalLimiter`, held for an ``async with`` block."""

    __slots__ = ("_slots",)

    def __init__(self, slots: _Slots) -> None:
        self._slots = slots

    async def __aenter__(self) -> None:
        await self._slots.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release()


_default: LocalLimiter | None = None
_default_lock = threading.Lock()


def default_limiter() -> LocalLimiter:
    """The process-wide limiter every client uses unless given another (10 slots per account)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LocalLimiter(DEFAULT_MAX_CONCURRENT_DOWNLOADS)
        return _default
