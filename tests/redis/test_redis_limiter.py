"""RedisLimiter against a real redis-server: admission, release, leases, loss, outages, statistics."""

from __future__ import annotations

import inspect
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Unpack

import anyio
import pytest
import redis.asyncio as aioredis

import audian_fax_async
import audian_fax_async.redis
from audian_fax_async import ConfigurationError, FaxClient, LimiterError, LimiterStatistics
from audian_fax_async._redis._scripts import ACQUIRE, account_keys
from audian_fax_async.redis import RedisLimiter, RedisLimiterOptions

from .redis_server import RedisServer, free_port

# redis.asyncio needs asyncio: these run on asyncio and uvloop (trio is refused, tested below).
pytestmark = [pytest.mark.redis, pytest.mark.loops("asyncio", "uvloop")]

FAST: RedisLimiterOptions = {"lease": 0.6, "renew_interval": 0.1, "quiet_period": 0.0}


def fast_limiter(url: str, **options: Unpack[RedisLimiterOptions]) -> RedisLimiter:
    """A limiter with leases of 0.6 s renewed every 0.1 s (and no quiet period)."""
    merged: RedisLimiterOptions = {**FAST, **options}
    return RedisLimiter.from_url(url, **merged)


@pytest.fixture
async def limiter(redis_server: RedisServer) -> AsyncIterator[RedisLimiter]:
    limiter = fast_limiter(redis_server.url)
    try:
        yield limiter
    finally:
        await limiter.aclose()


async def test_many_limiters_never_hold_more_than_the_limit_together(
    redis_server: RedisServer, redis_account: str
) -> None:
    # Three limiters stand for three processes: each has its own connections and local state.
    limiters = [fast_limiter(redis_server.url, limit=4) for _ in range(3)]
    inside = highest = 0

    async def download(limiter: RedisLimiter) -> None:
        nonlocal inside, highest
        async with limiter.acquire(redis_account):
            inside += 1
            highest = max(highest, inside)
            await anyio.sleep(0.005)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(download, limiters[i % 3])
    stats = await limiters[0].global_statistics(redis_account)
    assert highest == 4
    assert (stats.in_use, stats.highest_in_use, stats.total_acquired) == (0, 4, 60)
    assert sum(limiter.statistics(redis_account).total_acquired for limiter in limiters) == 60
    for limiter in limiters:
        await limiter.aclose()


async def test_a_slot_is_released_on_error_and_on_cancellation(limiter: RedisLimiter, redis_account: str) -> None:
    with pytest.raises(ValueError, match="boom"):  # the body's own exception, not an ExceptionGroup
        async with limiter.acquire(redis_account):
            raise ValueError("boom")
    with anyio.move_on_after(0.05):
        async with limiter.acquire(redis_account):
            await anyio.sleep(10)
    assert await limiter.holders(redis_account) == {}
    assert limiter.statistics(redis_account) == LimiterStatistics(10, 0, 0, 1, 2)


async def test_a_cancelled_waiter_leaves_no_slot_behind(redis_server: RedisServer, redis_account: str) -> None:
    limiter = fast_limiter(redis_server.url, limit=1)
    async with limiter.acquire(redis_account):
        with anyio.move_on_after(0.05):
            async with limiter.acquire(redis_account):
                pytest.fail("admitted over the limit")
        assert limiter.statistics(redis_account).waiting == 0
    assert await limiter.holders(redis_account) == {}
    with anyio.fail_after(0.5):  # the slot is free at once, not after a lease
        async with limiter.acquire(redis_account):
            pass
    await limiter.aclose()


@pytest.mark.loops("trio")
async def test_on_trio_the_limiter_refuses_with_a_configuration_error(
    redis_server: RedisServer, redis_account: str
) -> None:
    async def acquire_once() -> None:
        limiter = RedisLimiter.from_url(redis_server.url)
        async with limiter.acquire(redis_account):
            pytest.fail("admitted on trio")

    # redis.asyncio needs asyncio: refused clearly, whether at construction or at the first acquire.
    with pytest.raises(ConfigurationError, match="asyncio"):
        await acquire_once()


@pytest.mark.loops("trio")
async def test_on_trio_a_download_through_the_redis_limiter_raises_the_configuration_error_itself(
    redis_server: RedisServer, redis_emulator: audian_fax_async.emulator.Emulator, tmp_path: Path
) -> None:
    from audian_fax_async.emulator import AdminClient

    with AdminClient(redis_emulator.admin_url) as admin:
        [fax] = admin.inject("test_redis_trio", count=1, size=20_000)

    async def download() -> None:
        limiter = RedisLimiter.from_url(redis_server.url)
        async with FaxClient(api_key="test_redis_trio", base_url=redis_emulator.base_url, limiter=limiter) as client:
            await client.received.download(fax["id"], tmp_path)

    with pytest.raises(ConfigurationError, match="asyncio"):  # the error itself, not an ExceptionGroup
        await download()
    assert list(tmp_path.iterdir()) == []


async def test_a_waiter_is_woken_by_a_release_without_polling(redis_server: RedisServer, redis_account: str) -> None:
    one = fast_limiter(redis_server.url, limit=1, max_poll=5.0)
    other = fast_limiter(redis_server.url, limit=1, max_poll=5.0)
    release = anyio.Event()
    got_it_after: list[float] = []

    async def hold() -> None:
        async with one.acquire(redis_account):
            await release.wait()

    async def wait() -> None:
        async with other.acquire(redis_account):
            got_it_after.append(anyio.current_time() - released_at)

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        with anyio.fail_after(5):
            while one.statistics(redis_account).in_use != 1:
                await anyio.sleep(0.005)
        tg.start_soon(wait)
        with anyio.fail_after(5):
            while other.statistics(redis_account).waiting != 1:
                await anyio.sleep(0.005)
        released_at = anyio.current_time()
        release.set()
    assert got_it_after[0] < 1.0  # woken by the release, far below max_poll (5 s)
    await one.aclose()
    await other.aclose()


async def test_a_crashed_holder_s_slot_returns_when_its_lease_ends(
    limiter: RedisLimiter, redis_client: aioredis.Redis, redis_account: str
) -> None:
    # A holder that took every slot and died: nobody renews or releases its leases (300 ms).
    keys = account_keys(limiter.key_prefix, redis_account)
    acquire = redis_client.register_script(ACQUIRE)
    for i in range(10):
        admitted, _, _ = await acquire(keys=[keys.holders, keys.meta], args=[f"dead:1:{i}", 10, 300, 0])
        assert admitted == 1
    started = anyio.current_time()
    with anyio.fail_after(2):
        async with limiter.acquire(redis_account):
            waited = anyio.current_time() - started
    # Woken at the lease's end by the expiry hint, not at the next max_poll (1 s).
    assert 0.2 <= waited <= 0.9


async def test_a_lost_lease_cancels_the_body_and_raises_limiter_error(
    limiter: RedisLimiter, redis_client: aioredis.Redis, redis_account: str
) -> None:
    keys = account_keys(limiter.key_prefix, redis_account)
    reached_end = False

    async def download() -> None:
        nonlocal reached_end
        async with limiter.acquire(redis_account):
            await redis_client.delete(keys.holders)  # another party took the slot away
            await anyio.sleep(5)
            reached_end = True

    started = anyio.current_time()
    with pytest.raises(LimiterError, match="lease was lost"):
        await download()
    assert not reached_end
    # Found at a renewal (the message), well before the 5 s body or the 0.6 s lease would end.
    assert anyio.current_time() - started < 0.5


async def test_a_holder_that_cannot_renew_stops_before_its_lease_ends(
    own_redis_server: RedisServer, redis_account: str
) -> None:
    limiter = fast_limiter(own_redis_server.url)
    entered = 0.0

    async def download() -> None:
        nonlocal entered
        async with limiter.acquire(redis_account):
            entered = anyio.current_time()
            own_redis_server.stop()
            await anyio.sleep(5)

    with pytest.raises(LimiterError, match="could not be renewed in time"):
        await download()
    # Stopped (and the error raised) before the lease could end in Redis: 0.6 s after the grant.
    assert anyio.current_time() - entered < FAST["lease"]
    await limiter.aclose()


async def test_a_frozen_redis_stops_the_holder_in_time_and_fails_new_acquires(
    own_redis_server: RedisServer, redis_account: str
) -> None:
    # SIGSTOP: connections stay open but nothing answers, the worst kind of outage for a client.
    limiter = fast_limiter(own_redis_server.url, command_timeout=0.2, reconnect_window=0.3)
    entered = stopped = 0.0

    async def download() -> None:
        nonlocal entered, stopped
        async with limiter.acquire(redis_account):
            entered = anyio.current_time()
            assert own_redis_server.process is not None
            own_redis_server.process.send_signal(signal.SIGSTOP)
            try:
                await anyio.sleep(5)
            finally:
                stopped = anyio.current_time()

    try:
        with pytest.raises(LimiterError, match="could not be renewed in time"):
            await download()
        assert stopped - entered < FAST["lease"]  # the body stopped before its lease could end
        with anyio.fail_after(2), pytest.raises(LimiterError, match="unreachable"):
            await timed_acquire(limiter, redis_account)
    finally:
        assert own_redis_server.process is not None
        own_redis_server.process.send_signal(signal.SIGCONT)
    await limiter.aclose()


async def test_unreachable_redis_fails_clearly_by_default(redis_account: str) -> None:
    limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0", reconnect_window=0.1)
    with anyio.fail_after(5), pytest.raises(LimiterError, match="Redis is unreachable"):
        async with limiter.acquire(redis_account):
            pytest.fail("admitted without Redis")
    assert limiter.statistics(redis_account).in_use == 0
    await limiter.aclose()


async def test_unreachable_redis_with_local_fallback_admits_on_the_process_limit(redis_account: str) -> None:
    limiter = RedisLimiter.from_url(
        f"redis://127.0.0.1:{free_port()}/0", limit=3, reconnect_window=0.0, on_unavailable="local"
    )
    inside = highest = 0

    async def download() -> None:
        nonlocal inside, highest
        async with limiter.acquire(redis_account):
            inside += 1
            highest = max(highest, inside)
            await anyio.sleep(0.01)
            inside -= 1

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(9):
                tg.start_soon(download)
    assert highest == 3
    await limiter.aclose()


async def timed_acquire(limiter: RedisLimiter, account: str) -> float:
    started = anyio.current_time()
    with anyio.fail_after(5):
        async with limiter.acquire(account):
            return anyio.current_time() - started


async def test_after_a_redis_restart_nobody_is_admitted_during_the_quiet_period(
    own_redis_server: RedisServer, redis_account: str
) -> None:
    limiter = RedisLimiter.from_url(own_redis_server.url, lease=2.0, renew_interval=0.1, quiet_period=0.3)
    await timed_acquire(limiter, redis_account)
    own_redis_server.restart()  # no persistence: every key is gone
    # Holders from before the restart get one renewal interval (x2) to notice and stop.
    assert 0.25 <= await timed_acquire(limiter, redis_account) <= 0.7
    assert await timed_acquire(limiter, redis_account) < 0.2  # once only
    await limiter.aclose()


async def test_by_default_a_restarted_redis_admits_nobody_until_it_has_been_up_for_a_lease(
    own_redis_server: RedisServer, redis_account: str
) -> None:
    # By then every holder from before the restart has found its lease gone or reached its end and
    # stopped, however late its renewals ran (a stalled host): the safe default.
    limiter = RedisLimiter.from_url(own_redis_server.url, lease=0.8, renew_interval=0.1)
    assert limiter.quiet_period == 0.8
    await timed_acquire(limiter, redis_account)
    own_redis_server.restart()
    restarted = anyio.current_time()
    await timed_acquire(limiter, redis_account)
    assert 0.75 <= anyio.current_time() - restarted <= 1.5
    assert await timed_acquire(limiter, redis_account) < 0.2  # once only
    await limiter.aclose()
    with pytest.raises(ValueError, match="quiet_period"):
        RedisLimiter.from_url(own_redis_server.url, quiet_period=-1)
    assert RedisLimiter(limiter.client, lease=2.0, quiet_period=5.0).quiet_period == 2.0  # never past a lease


async def test_a_redis_started_just_before_a_wall_clock_second_ends_is_quiet_too(
    own_redis_server: RedisServer, redis_account: str
) -> None:
    # INFO's uptime_in_seconds is the difference of two truncated wall-clock seconds: started at
    # x.65 it reads 1 at (x+1).0, after 0.35 s. Taken at its word it ended the quiet period at
    # once (CI saw 14 downloads at once after a restart).
    limiter = RedisLimiter.from_url(own_redis_server.url, lease=1.0, renew_interval=0.1)
    await timed_acquire(limiter, redis_account)
    own_redis_server.stop()
    with anyio.fail_after(2):
        while not 0.6 <= time.time() % 1 < 0.7:
            await anyio.sleep(0.01)
    own_redis_server.start()
    started = anyio.current_time()
    client = aioredis.Redis.from_url(own_redis_server.url)
    with anyio.fail_after(2):
        while (await client.info("server"))["uptime_in_seconds"] < 1:
            await anyio.sleep(0.01)
    await client.aclose()
    assert anyio.current_time() - started < 0.6  # the case in question: uptime reads 1, it is not
    await timed_acquire(limiter, redis_account)
    assert anyio.current_time() - started >= 1.0  # not admitted before the server has been up a lease
    await limiter.aclose()


async def test_a_redis_restarted_with_its_data_restored_is_quiet_too(
    own_redis_server: RedisServer, redis_account: str
) -> None:
    limiter = RedisLimiter.from_url(own_redis_server.url, lease=2.0, renew_interval=0.1, quiet_period=0.3)
    client = aioredis.Redis.from_url(own_redis_server.url)
    await timed_acquire(limiter, redis_account)
    meta = account_keys(limiter.key_prefix, redis_account).meta
    record = await client.hgetall(meta)
    assert record.get(b"run_id")
    await client.aclose()
    own_redis_server.restart()
    client = aioredis.Redis.from_url(own_redis_server.url)
    # The record comes back from a snapshot: it names the server process (run id) that admitted the
    # holders, which may still be running.
    for name, value in record.items():
        await client.hset(meta, name, value)
    assert 0.25 <= await timed_acquire(limiter, redis_account) <= 0.7
    await client.aclose()
    await limiter.aclose()


async def test_where_scripts_may_not_call_info_a_missing_record_starts_the_quiet_period(
    redis_account: str,
) -> None:
    server = RedisServer(extra_args=("--rename-command", "INFO", ""))  # as some managed services do
    server.start()
    try:
        limiter = RedisLimiter.from_url(server.url, lease=2.0, renew_interval=0.1, quiet_period=0.3)
        assert 0.25 <= await timed_acquire(limiter, redis_account) <= 0.7
        assert await timed_acquire(limiter, redis_account) < 0.2
        await limiter.aclose()
    finally:
        server.close()


async def test_a_first_use_on_a_redis_up_for_longer_than_a_lease_does_not_wait(
    redis_server: RedisServer, redis_client: aioredis.Redis, redis_account: str
) -> None:
    limiter = RedisLimiter.from_url(redis_server.url, lease=0.6, renew_interval=0.1)
    with anyio.fail_after(3):  # uptime 2 means more than 1 s (see the test above)
        while (await redis_client.info("server"))["uptime_in_seconds"] < 2:
            await anyio.sleep(0.05)
    # Any holder of an earlier server has stopped by its start + lease: nothing to wait for.
    assert await timed_acquire(limiter, redis_account) < 0.2
    await limiter.aclose()


async def test_fax_client_downloads_through_the_redis_limiter(
    redis_server: RedisServer, redis_emulator: audian_fax_async.emulator.Emulator, tmp_path: object
) -> None:
    from audian_fax_async.emulator import AdminClient

    key = "test_redis_client_" + secrets.token_hex(4)  # a fresh account on the session's emulator
    with AdminClient(redis_emulator.admin_url) as redis_admin:
        redis_admin.inject(key, count=3, size=20_000)
    limiter = fast_limiter(redis_server.url)
    async with FaxClient(api_key=key, base_url=redis_emulator.base_url, limiter=limiter) as client:
        results = [r async for r in client.received.download_all(str(tmp_path))]
        assert [r.kind.value for r in results] == ["downloaded"] * 3
        stats = await limiter.global_statistics(client.account)
        assert stats.total_acquired == 3 and stats.in_use == 0
    await limiter.aclose()


def test_redis_limiter_is_importable_from_the_package_root() -> None:
    assert audian_fax_async.RedisLimiter is RedisLimiter
    from audian_fax_async import RedisLimiter as again

    assert again is RedisLimiter
    with pytest.raises(AttributeError):
        audian_fax_async.NoSuchThing  # noqa: B018


@pytest.mark.parametrize(
    "options",
    [
        {"limit": 0},
        {"lease": 0},
        {"lease": 1.0, "renew_interval": 0.6},
        {"on_unavailable": "ignore"},
        {"command_timeout": 0},
    ],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    client = aioredis.Redis()
    with pytest.raises(ValueError):
        RedisLimiter(client, **options)  # type: ignore[arg-type]


def test_account_keys_share_one_cluster_hash_tag() -> None:
    keys = account_keys("p:", "abc123")
    assert (keys.holders, keys.wake, keys.meta) == ("p:{abc123}:holders", "p:{abc123}:wake", "p:{abc123}:meta")
    odd = account_keys("p:", "a}b{c")
    assert odd.holders.count("{") == 1 and odd.holders.count("}") == 1


def test_tokens_name_the_host_and_process() -> None:
    limiter = RedisLimiter(aioredis.Redis())
    host, pid, _ = limiter._token().split(":")
    assert host == socket.gethostname() and pid.isdigit()


def test_the_redis_module_exports_exactly_its_public_names() -> None:
    module = audian_fax_async.redis
    public = {n for n, v in vars(module).items() if not n.startswith("_") and not inspect.ismodule(v)}
    assert public == set(module.__all__)
    assert module.__all__ == sorted(module.__all__)
