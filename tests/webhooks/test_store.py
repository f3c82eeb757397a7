"""MemoryIdempotencyStore: claim / complete / release, leases, TTLs and bounded size, on a fake clock."""

from __future__ import annotations

import anyio
import pytest

from audian_fax_async.webhooks import (
    DEFAULT_LEASE,
    DEFAULT_TTL,
    Claim,
    ClaimStatus,
    IdempotencyStore,
    MemoryIdempotencyStore,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryIdempotencyStore:
    return MemoryIdempotencyStore(clock=clock)


def test_default_ttl_outlives_the_24_hour_retry_window() -> None:
    assert 25 * 3600 <= DEFAULT_TTL <= 48 * 3600
    assert DEFAULT_LEASE < DEFAULT_TTL


async def test_first_claim_wins_and_later_ones_see_in_flight(store: MemoryIdempotencyStore) -> None:
    first = await store.claim("evt_1")
    second = await store.claim("evt_1")
    assert first.acquired and first.token
    assert second.status is ClaimStatus.IN_FLIGHT and not second.acquired and second.token is None


async def test_completed_key_reports_done_until_its_ttl_passes(store: MemoryIdempotencyStore, clock: FakeClock) -> None:
    claim = await store.claim("evt_1")
    assert await store.complete(claim, ttl=100)
    clock.now += 99
    assert (await store.claim("evt_1")).status is ClaimStatus.DONE
    clock.now += 1
    assert (await store.claim("evt_1")).acquired


async def test_release_frees_the_key_for_a_redelivery(store: MemoryIdempotencyStore) -> None:
    claim = await store.claim("evt_1")
    assert await store.release(claim)
    assert (await store.claim("evt_1")).acquired


async def test_an_expired_lease_frees_the_key(store: MemoryIdempotencyStore, clock: FakeClock) -> None:
    await store.claim("evt_1", lease=10)
    clock.now += 10
    assert (await store.claim("evt_1")).acquired


async def test_a_stale_holder_cannot_release_or_complete_a_newer_claim(
    store: MemoryIdempotencyStore, clock: FakeClock
) -> None:
    stale = await store.claim("evt_1", lease=10)
    clock.now += 11
    fresh = await store.claim("evt_1", lease=10)
    assert fresh.acquired
    assert not await store.release(stale)
    assert not await store.complete(stale)
    assert (await store.claim("evt_1")).status is ClaimStatus.IN_FLIGHT
    assert await store.complete(fresh)


async def test_release_after_complete_keeps_the_done_record(store: MemoryIdempotencyStore) -> None:
    claim = await store.claim("evt_1")
    await store.complete(claim)
    assert not await store.release(claim)
    assert (await store.claim("evt_1")).status is ClaimStatus.DONE


async def test_unacquired_claims_cannot_complete_or_release(store: MemoryIdempotencyStore) -> None:
    await store.claim("evt_1")
    loser = await store.claim("evt_1")
    assert not await store.complete(loser)
    assert not await store.release(loser)
    assert not await store.release(Claim("nope", ClaimStatus.CLAIMED, "token"))


async def test_concurrent_claims_have_exactly_one_winner(store: MemoryIdempotencyStore) -> None:
    results: list[Claim] = []

    async def claim() -> None:
        await anyio.lowlevel.checkpoint()
        results.append(await store.claim("evt_1"))

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(claim)
    assert sum(c.acquired for c in results) == 1
    assert len(results) == 100


async def test_store_is_bounded_and_evicts_oldest_first(clock: FakeClock) -> None:
    store = MemoryIdempotencyStore(max_entries=3, clock=clock)
    for i in range(5):
        claim = await store.claim(f"evt_{i}")
        await store.complete(claim)
        clock.now += 1
    assert len(store) == 3
    assert store.evicted == 2
    assert (await store.claim("evt_0")).acquired  # forgotten: the price of the bound
    assert (await store.claim("evt_4")).status is ClaimStatus.DONE


async def test_expired_entries_are_dropped_before_live_ones_are_evicted(clock: FakeClock) -> None:
    store = MemoryIdempotencyStore(max_entries=2, clock=clock)
    await store.complete(await store.claim("old"), ttl=5)
    clock.now += 10
    await store.complete(await store.claim("a"))
    await store.complete(await store.claim("b"))
    assert len(store) == 2
    assert store.evicted == 0


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryIdempotencyStore(max_entries=0)


async def test_a_custom_store_only_needs_the_three_methods() -> None:
    class Always(IdempotencyStore):
        async def claim(self, key: str, *, lease: float = DEFAULT_LEASE) -> Claim:
            return Claim(key, ClaimStatus.CLAIMED, "t")

        async def complete(self, claim: Claim, *, ttl: float = DEFAULT_TTL) -> bool:
            return True

        async def release(self, claim: Claim) -> bool:
            return True

    store = Always()
    assert (await store.claim("k")).acquired
    await store.aclose()
