"""The account's download limit: a small pluggable interface and the local anyio implementation.

The API allows 10 concurrent downloads per account. Every download holds a slot of a
:class:`DownloadLimiter` for its whole duration. The default :class:`LocalLimiter` is shared by
every :class:`FaxClient` of the process (per account and per event loop); the Redis one
(``audian_fax_async.RedisLimiter``) holds the limit across processes and hosts through the same
interface.
"""

from __future__ import annotations

import abc
import threading
import weakref
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.lowlevel
from attrs import define, frozen

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


@define
class _Counter:
    limiter: anyio.CapacityLimiter
    highest: int = 0
    total: int = 0


class LocalLimiter(DownloadLimiter):
    """An in-process limiter on ``anyio.CapacityLimiter``: ``limit`` slots per account.

    Slots are kept per event loop (an anyio primitive belongs to one loop); within a loop every
    client using the same account shares them.
    """

    def __init__(self, limit: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[Any, dict[str, _Counter]] = weakref.WeakKeyDictionary()
        self._fallback: dict[Any, dict[str, _Counter]] = {}

    def _accounts(self) -> dict[str, _Counter]:
        token = anyio.lowlevel.current_token()
        token = getattr(token, "native_token", token)  # anyio >= 4.11 wraps the loop's own token
        with self._lock:
            try:
                return self._loops.setdefault(token, {})
            except TypeError:  # a loop object that cannot be weakly referenced
                return self._fallback.setdefault(token, {})

    def _counter(self, account: str) -> _Counter:
        accounts = self._accounts()
        counter = accounts.get(account)
        if counter is None:
            counter = accounts[account] = _Counter(anyio.CapacityLimiter(self.limit))
        return counter

    def acquire(self, account: str) -> AbstractAsyncContextManager[None]:
        return _LocalHold(self, account)

    def statistics(self, account: str) -> LimiterStatistics:
        try:
            counter = self._counter(account)
        except Exception:  # no event loop running: nothing held from here
            return LimiterStatistics(self.limit, 0, 0, 0, 0)
        stats = counter.limiter.statistics()
        return LimiterStatistics(
            limit=self.limit,
            in_use=stats.borrowed_tokens,
            waiting=stats.tasks_waiting,
            highest_in_use=counter.highest,
            total_acquired=counter.total,
        )


class _LocalHold:
    """One slot of a :class:`LocalLimiter` (a class, not a generator: it is on every download's path)."""

    __slots__ = ("_account", "_counter", "_owner")

    def __init__(self, owner: LocalLimiter, account: str) -> None:
        self._owner = owner
        self._account = account
        self._counter: _Counter | None = None

    async def __aenter__(self) -> None:
        counter = self._owner._counter(self._account)
        await counter.limiter.acquire()
        self._counter = counter
        counter.total += 1
        counter.highest = max(counter.highest, int(counter.limiter.borrowed_tokens))

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._counter is not None
        self._counter.limiter.release()


_default: LocalLimiter | None = None
_default_lock = threading.Lock()


def default_limiter() -> LocalLimiter:
    """The process-wide limiter every client uses unless given another (10 slots per account)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = LocalLimiter(DEFAULT_MAX_CONCURRENT_DOWNLOADS)
        return _default
