"""``RedisLimiter``: the account's download limit held across processes and hosts, on Redis.

A counting semaphore with leases. Each holder is a member of a sorted set scored by the end of its
lease in Redis time; one Lua script drops expired holders and admits a newcomer if fewer than
``limit`` remain, atomically. While a download runs, a task renews its lease every
``renew_interval``; a holder that cannot renew in time (Redis unreachable, or its lease found gone)
cancels the download and raises :class:`~audian_fax_async.LimiterError` instead of running on over
the limit. A crashed holder's slot comes back when its lease ends.

Within a process, a local ``anyio.CapacityLimiter`` admits at most ``limit`` tasks per account to
the Redis step at all (a saturated process costs Redis nothing), and one task per account at a time
talks to Redis while waiting: it blocks on a wake list (``BLPOP``) that every release pushes to,
with a timeout bounded by the earliest lease end and ``max_poll``, so a freed slot is taken in about
one round trip and a crashed holder's slot as soon as its lease ends.

Needs asyncio (redis-py's asyncio client); one limiter belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, TypedDict, Unpack

import anyio
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from attrs import define, field

from .._config import DEFAULT_MAX_CONCURRENT_DOWNLOADS
from .._exceptions import ConfigurationError, LimiterError
from .._limiter import DownloadLimiter, LimiterStatistics
from ._connect import client_from_url
from ._scripts import ACQUIRE, INSPECT, RELEASE, RENEW, AccountKeys, account_keys

__all__ = ["OnUnavailable", "RedisLimiter", "RedisLimiterOptions"]

logger = logging.getLogger("audian_fax_async")

OnUnavailable = Literal["fail", "local"]

# Errors that mean "Redis did not answer": worth retrying while time allows.
_UNREACHABLE: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    TimeoutError,
    OSError,
)
# Any failure of a Redis call, including refusals (a script error, OOM): what renewal and release
# tolerate until their time is up.
_ANY_FAILURE: tuple[type[Exception], ...] = (*_UNREACHABLE, redis_errors.RedisError)
_MIN_BLOCK = 0.002  # BLPOP's timeout 0 means "forever": never round down to it


class RedisLimiterOptions(TypedDict, total=False):
    """The options of :class:`RedisLimiter`, accepted by :meth:`RedisLimiter.from_url` too."""

    limit: int
    lease: float
    renew_interval: float | None
    on_unavailable: OnUnavailable
    reconnect_window: float
    command_timeout: float
    max_poll: float
    quiet_period: float | None
    key_prefix: str
    random: Callable[[], float]


class _Unavailable(Exception):
    """Redis stayed unreachable for longer than ``reconnect_window``."""


@define
class _Loss:
    """Why a held slot was lost (set by the renewal task, read by the holder)."""

    reason: str | None = None
    cause: BaseException | None = None


@define
class _Account:
    keys: AccountKeys
    local: anyio.CapacityLimiter | None = None
    gate: anyio.Lock | None = None
    in_use: int = 0
    waiting: int = 0
    highest: int = 0
    total: int = 0
    fallbacks: int = 0
    lost: int = 0
    waits: list[float] = field(factory=list)

    def primitives(self, limit: int) -> tuple[anyio.CapacityLimiter, anyio.Lock]:
        # Created inside the event loop, on first use.
        if self.local is None or self.gate is None:
            self.local = anyio.CapacityLimiter(limit)
            self.gate = anyio.Lock()
        return self.local, self.gate


class RedisLimiter(DownloadLimiter):
    """At most ``limit`` concurrent downloads per account across every process sharing one Redis.

    ::

        limiter = RedisLimiter.from_url("redis://redis.internal:6379/0")
        async with FaxClient(limiter=limiter) as client:
            async with client.received.download_all("archive/") as outcomes:
                ...
        await limiter.aclose()

    or from an existing client: ``RedisLimiter(redis.asyncio.Redis(...))`` (not closed by the limiter).

    * ``lease``: seconds a slot stays held without renewal; a crashed holder's slot returns after it.
    * ``renew_interval``: seconds between renewals (default ``lease / 4``, at most ``lease / 2``).
      A holder that has not renewed by shortly before its lease ends stops its download and raises
      :class:`~audian_fax_async.LimiterError`.
    * ``on_unavailable``: ``"fail"`` (default) raises ``LimiterError`` when Redis stays unreachable
      for ``reconnect_window`` seconds; ``"local"`` then admits downloads on this process's own
      limit of ``limit`` instead, a choice that can exceed the account's limit across processes
      (the API's 429 still protects the account).
    * ``quiet_period``: after a Redis restart nobody is admitted until the server has been up for
      this long (default and at most ``lease``): by then every holder admitted before the restart has
      found its lease gone, or reached its lease's end, and stopped. A shorter one recovers sooner
      but counts on every old holder renewing within it (a stalled host would not).
    * ``command_timeout``, ``max_poll``: bound each Redis command and each wait for a wake-up.

    Every process sharing the Redis must use the same ``limit``, ``lease`` and ``key_prefix``.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        limit: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS,
        lease: float = 10.0,
        renew_interval: float | None = None,
        on_unavailable: OnUnavailable = "fail",
        reconnect_window: float = 5.0,
        command_timeout: float = 2.0,
        max_poll: float = 1.0,
        quiet_period: float | None = None,
        key_prefix: str = "audian:limiter:",
        random: Callable[[], float] = random.random,
        close_client: bool = False,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
        if lease <= 0:
            raise ValueError(f"lease must be > 0, got {lease!r}")
        renew = lease / 4 if renew_interval is None else renew_interval
        if not 0 < renew <= lease / 2:
            raise ValueError(f"renew_interval must be > 0 and at most lease / 2 ({lease / 2}), got {renew!r}")
        if on_unavailable not in ("fail", "local"):
            raise ValueError(f"on_unavailable must be 'fail' or 'local', got {on_unavailable!r}")
        if command_timeout <= 0 or max_poll <= 0 or reconnect_window < 0:
            raise ValueError("command_timeout and max_poll must be > 0, reconnect_window >= 0")
        self.client = client
        self.limit = limit
        self.lease = float(lease)
        self.renew_interval = float(renew)
        self.on_unavailable: OnUnavailable = on_unavailable
        self.reconnect_window = float(reconnect_window)
        self.command_timeout = float(command_timeout)
        self.max_poll = float(max_poll)
        if quiet_period is not None and quiet_period < 0:
            raise ValueError(f"quiet_period must be >= 0, got {quiet_period!r}")
        self.quiet_period = self.lease if quiet_period is None else min(float(quiet_period), self.lease)
        self.key_prefix = key_prefix
        self._random = random
        self._close_client = close_client
        # Stop a download this long before its lease would end unrenewed: time to cancel it.
        self._margin = min(self.renew_interval, self.lease / 10)
        # A blocking pop must end before the client's own socket timeout would call it a failure.
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._max_block = self.max_poll if not socket_timeout else min(self.max_poll, 0.5 * float(socket_timeout))
        self._accounts: dict[str, _Account] = {}
        self._down_since: float | None = None
        self._host = socket.gethostname()
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._inspect = client.register_script(INSPECT)

    @classmethod
    def from_url(
        cls, url: str, *, redis_options: dict[str, Any] | None = None, **options: Unpack[RedisLimiterOptions]
    ) -> RedisLimiter:
        """A limiter on its own Redis connection pool (closed by :meth:`aclose`).

        ``url`` is a redis-py URL (``redis://host:6379/0``, ``rediss://``, ``unix://``);
        ``redis_options`` go to ``redis.asyncio.Redis.from_url``::

            limiter = RedisLimiter.from_url("redis://localhost:6379/0", lease=10, renew_interval=2.5)
        """
        client = client_from_url(url, connect_timeout=options.get("command_timeout", 2.0), options=redis_options)
        return cls(client, **options, close_client=True)

    def __repr__(self) -> str:
        return (
            f"<RedisLimiter limit={self.limit} lease={self.lease} renew_interval={self.renew_interval} "
            f"on_unavailable={self.on_unavailable!r}>"
        )

    async def aclose(self) -> None:
        """Close the Redis connection pool if the limiter created it (:meth:`from_url`)."""
        if self._close_client:
            await self.client.aclose()

    # -- DownloadLimiter -------------------------------------------------------------------------

    def acquire(self, account: str) -> AbstractAsyncContextManager[None]:
        """Hold one of ``account``'s slots for the ``async with`` block (waiting for one if needed).

        Raises :class:`~audian_fax_async.LimiterError` if Redis is unreachable (``"fail"``), or
        from inside the block, after cancelling it, if the slot's lease is lost.
        """
        return self._hold(account)

    def statistics(self, account: str) -> LimiterStatistics:
        """This process's use of ``account``'s slots (see :meth:`global_statistics` for all)."""
        state = self._accounts.get(account)
        if state is None:
            return LimiterStatistics(self.limit, 0, 0, 0, 0)
        return LimiterStatistics(
            limit=self.limit,
            in_use=state.in_use,
            waiting=state.waiting,
            highest_in_use=state.highest,
            total_acquired=state.total,
        )

    async def global_statistics(self, account: str) -> LimiterStatistics:
        """``account``'s slots as Redis sees them: live holders of every process, the highest
        number ever held at once and the total admitted (``waiting`` counts this process only)."""
        _now, highest, total, holders = await self._inspect_account(account)
        state = self._accounts.get(account)
        return LimiterStatistics(
            limit=self.limit,
            in_use=len(holders),
            waiting=state.waiting if state is not None else 0,
            highest_in_use=highest,
            total_acquired=total,
        )

    async def holders(self, account: str) -> dict[str, float]:
        """The live holders of ``account``'s slots: token (``host:pid:random``) to seconds of lease left."""
        _now, _highest, _total, holders = await self._inspect_account(account)
        return holders

    def acquire_waits(self, account: str) -> list[float]:
        """Seconds each acquisition of ``account`` by this process waited (for measurements)."""
        state = self._accounts.get(account)
        return list(state.waits) if state is not None else []

    # -- holding a slot -----------------------------------------------------------------------

    def _account(self, account: str) -> _Account:
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = _Account(account_keys(self.key_prefix, account))
        return state

    def _token(self) -> str:
        return f"{self._host}:{os.getpid()}:{secrets.token_hex(6)}"

    @asynccontextmanager
    async def _hold(self, account: str) -> AsyncIterator[None]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "RedisLimiter needs asyncio or uvloop (redis-py's asyncio client); on trio use LocalLimiter"
            ) from None
        state = self._account(account)
        local, gate = state.primitives(self.limit)
        started = anyio.current_time()
        state.waiting += 1
        token = self._token()
        granted_at: float | None = None
        try:
            await local.acquire_on_behalf_of(token)
            try:
                async with gate:
                    granted_at = await self._admit(state.keys, token)
            except _Unavailable as exc:
                if self.on_unavailable == "fail":
                    local.release_on_behalf_of(token)
                    raise LimiterError(str(exc)) from exc.__cause__
                state.fallbacks += 1
                logger.warning("%s; admitting on this process's own limit (on_unavailable='local')", exc)
            except BaseException:
                local.release_on_behalf_of(token)
                raise
        finally:
            state.waiting -= 1
        try:
            state.waits.append(anyio.current_time() - started)
            del state.waits[:-10_000]
            state.in_use += 1
            state.total += 1
            state.highest = max(state.highest, state.in_use)
            if granted_at is None:
                yield
            else:
                async with self._leased(state, token, granted_at):
                    yield
        finally:
            state.in_use -= 1
            local.release_on_behalf_of(token)

    @asynccontextmanager
    async def _leased(self, state: _Account, token: str, granted_at: float) -> AsyncIterator[None]:
        loss = _Loss()
        completed = False
        body_error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_alive, state.keys, token, granted_at, loss, tg.cancel_scope)
                try:
                    yield
                    completed = True
                except Exception as exc:
                    # Kept out of the task group, which would wrap it in an ExceptionGroup: the
                    # caller (the retry loop) must see the body's own exception.
                    body_error = exc
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._forget(state.keys, token)
        if loss.reason is not None and not completed:
            # The renewal task cancelled the block (that cancellation ends silently at the task
            # group): say why.
            state.lost += 1
            raise LimiterError(loss.reason) from (body_error or loss.cause)
        if body_error is not None:
            raise body_error

    async def _keep_alive(
        self, keys: AccountKeys, token: str, granted_at: float, loss: _Loss, scope: anyio.CancelScope
    ) -> None:
        """Renew the lease until cancelled; on losing it, record why and cancel the holder."""
        lease_ms = _ms(self.lease)
        # The lease began at or after the request was sent, so local time ``sent + lease`` never
        # comes after its end in Redis (for clocks that run at the same rate).
        deadline = granted_at + self.lease
        next_at = granted_at + self.renew_interval
        pause = max(0.01, self.renew_interval / 4)
        try:
            while True:
                await anyio.sleep(max(0.0, next_at - anyio.current_time()))
                sent = anyio.current_time()
                budget = deadline - self._margin - sent
                if budget <= 0:
                    loss.reason = (
                        "the download slot's lease could not be renewed in time "
                        f"(Redis unreachable: {loss.cause!r}); the download was stopped so as not to "
                        "exceed the account's limit"
                    )
                    break
                try:
                    with anyio.fail_after(min(self.command_timeout, budget)):
                        renewed = await self._renew(keys=[keys.holders], args=[token, lease_ms])
                except _ANY_FAILURE as exc:
                    loss.cause = exc
                    next_at = anyio.current_time() + pause
                    continue
                if not renewed:
                    loss.reason = (
                        "the download slot's lease was lost (it ran out, or Redis lost its data); "
                        "the download was stopped so as not to exceed the account's limit"
                    )
                    break
                loss.cause = None
                deadline = sent + self.lease
                next_at = sent + self.renew_interval
        except Exception as exc:  # a bug here must stop the download too, never let it run unguarded
            loss.reason = f"renewing the download slot failed: {exc!r}"
            loss.cause = exc
        logger.warning("download slot %s lost: %s", token, loss.reason)
        scope.cancel()

    # -- talking to Redis ---------------------------------------------------------------------

    async def _admit(self, keys: AccountKeys, token: str) -> float:
        """Wait until ``token`` holds a slot; return the local time the winning request was sent."""
        args: list[str | int] = [token, self.limit, _ms(self.lease), _ms(self.quiet_period)]
        failures = 0
        try:
            while True:
                sent = anyio.current_time()
                try:
                    with anyio.fail_after(self.command_timeout):
                        admitted, _holding, wait_ms = await self._acquire(keys=[keys.holders, keys.meta], args=args)
                    self._down_since = None
                    failures = 0
                    if admitted:
                        return sent
                    await self._wait_for_release(keys, int(wait_ms) / 1000)
                except _UNREACHABLE as exc:
                    now = anyio.current_time()
                    if self._down_since is None:
                        self._down_since = now
                    if now - self._down_since >= self.reconnect_window:
                        raise _Unavailable(f"Redis is unreachable ({exc!r}); no download slot can be granted") from exc
                    failures += 1
                    await anyio.sleep(self._backoff(failures))
                except redis_errors.RedisError as exc:
                    raise LimiterError(f"Redis refused the limiter's script: {exc}") from exc
        except BaseException:
            # An attempt whose answer never came may have admitted us: give the slot back now
            # rather than when its lease ends; unless Redis is known to be down, when trying would
            # only hold the caller up (the lease ends on its own).
            if self._down_since is None:
                with anyio.CancelScope(shield=True):
                    await self._forget(keys, token)
            raise

    async def _wait_for_release(self, keys: AccountKeys, hint: float) -> None:
        """Block until a slot is released (a wake entry), the earliest lease may have ended, or
        ``max_poll`` passed; jittered so that pollers spread out."""
        timeout = min(max(hint, _MIN_BLOCK), self._max_block) * (0.8 + 0.4 * self._random())
        timeout = max(timeout, _MIN_BLOCK)
        with anyio.fail_after(timeout + self.command_timeout):
            await self.client.blpop([keys.wake], timeout=round(timeout, 3))

    def _backoff(self, failures: int) -> float:
        base: float = min(self.max_poll, 0.05 * 2 ** min(failures, 10))
        return base * (0.5 + self._random() / 2)

    async def _forget(self, keys: AccountKeys, token: str) -> None:
        """Give ``token``'s slot back (if it holds one) and wake a waiter; failure only delays it."""
        try:
            with anyio.fail_after(self.command_timeout):
                await self._release(
                    keys=[keys.holders, keys.wake], args=[token, self.limit, max(60_000, 2 * _ms(self.lease))]
                )
        except _ANY_FAILURE as exc:
            logger.warning(
                "could not release download slot %s in Redis (%r); it frees itself within %.1f s",
                token,
                exc,
                self.lease,
            )

    async def _inspect_account(self, account: str) -> tuple[float, int, int, dict[str, float]]:
        keys = account_keys(self.key_prefix, account)
        try:
            with anyio.fail_after(self.command_timeout):
                raw = await self._inspect(keys=[keys.holders, keys.meta])
        except _ANY_FAILURE as exc:
            raise LimiterError(f"cannot read the limiter's state from Redis: {exc!r}") from exc
        now, highest, total = int(raw[0]), int(raw[1]), int(raw[2])
        members = raw[3:]
        holders = {
            _text(members[i]): (float(_text(members[i + 1])) - now) / 1000 for i in range(0, len(members) - 1, 2)
        }
        return now / 1000, highest, total, holders


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
