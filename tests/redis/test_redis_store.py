"""RedisIdempotencyStore against a real redis-server, alone and under two WebhookReceiver replicas."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import pytest

from audian_fax_async import WebhookEvent
from audian_fax_async.redis import RedisIdempotencyStore
from audian_fax_async.webhooks import ClaimStatus, DeliveryOutcome, IdempotencyStore, WebhookReceiver

from .redis_server import RedisServer, free_port

# redis.asyncio needs asyncio: these run on asyncio and uvloop (trio is refused, tested below).
pytestmark = [pytest.mark.redis, pytest.mark.loops("asyncio", "uvloop")]


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisIdempotencyStore]:
    store = RedisIdempotencyStore.from_url(redis_server.url, key_prefix=f"t:{secrets.token_hex(4)}:")
    try:
        yield store
    finally:
        await store.aclose()


def delivery(event_id: str, attempt: int) -> tuple[bytes, dict[str, str]]:
    body = {
        "event": "fax_received",
        "id": "fax_received_123",
        "from_number": "+12025551234",
        "from_name": "John Smith",
        "to_number": "+15551234567",
        "pages": 5,
        "received_at": "2024-02-04T13:15:00Z",
        "file_size": 450000,
        "format": "pdf",
        "document_url": "https://api.audian.com:8443/v2/fax/received/fax_received_123/download",
    }
    headers = {
        "Content-Type": "application/json",
        "X-Audian-Event": "fax_received",
        "X-Audian-Event-Id": event_id,
        "X-Audian-Delivery-Id": f"dlv_{event_id}_{attempt}",
        "X-Audian-Attempt": str(attempt),
    }
    return json.dumps(body).encode(), headers


def test_the_store_implements_the_receiver_s_interface() -> None:
    assert issubclass(RedisIdempotencyStore, IdempotencyStore)


async def test_first_claim_wins_then_done_after_complete(store: RedisIdempotencyStore) -> None:
    first = await store.claim("evt_1")
    second = await store.claim("evt_1")
    assert first.acquired and first.token
    assert second.status is ClaimStatus.IN_FLIGHT and second.token is None
    assert await store.complete(first, ttl=60)
    assert (await store.claim("evt_1")).status is ClaimStatus.DONE
    assert not await store.release(first)  # a done record is never undone by its old holder


async def test_release_frees_the_key_and_a_stale_holder_cannot_touch_a_newer_claim(
    store: RedisIdempotencyStore,
) -> None:
    first = await store.claim("evt_2", lease=0.05)
    # Redis's own expiry ends the first holder's lease: until then every claim is refused.
    with anyio.fail_after(5):
        while not (second := await store.claim("evt_2")).acquired:
            assert second.status is ClaimStatus.IN_FLIGHT
            await anyio.sleep(0.01)
    assert not await store.complete(first) and not await store.release(first)
    assert await store.release(second)
    assert (await store.claim("evt_2")).acquired


async def test_concurrent_claims_from_two_stores_have_exactly_one_winner(redis_server: RedisServer) -> None:
    prefix = f"t:{secrets.token_hex(4)}:"
    stores = [RedisIdempotencyStore.from_url(redis_server.url, key_prefix=prefix) for _ in range(2)]
    statuses: Counter[ClaimStatus] = Counter()

    async def claim(store: RedisIdempotencyStore) -> None:
        statuses[(await store.claim("evt_race")).status] += 1

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(claim, stores[i % 2])
    assert statuses == {ClaimStatus.CLAIMED: 1, ClaimStatus.IN_FLIGHT: 199}
    for store in stores:
        await store.aclose()


async def test_two_receiver_replicas_sharing_redis_call_the_handler_once_for_100_duplicates(
    redis_server: RedisServer,
) -> None:
    prefix = f"t:{secrets.token_hex(4)}:"
    stores = [RedisIdempotencyStore.from_url(redis_server.url, key_prefix=prefix) for _ in range(2)]
    calls: list[WebhookEvent] = []
    others_answered = anyio.Event()

    async def on_event(event: WebhookEvent) -> None:
        calls.append(event)
        with anyio.fail_after(10):
            await others_answered.wait()  # the handler runs while every duplicate arrives

    replicas = [WebhookReceiver(on_event, store=store) for store in stores]
    outcomes: Counter[DeliveryOutcome] = Counter()

    async def deliver(attempt: int) -> None:
        body, headers = delivery("evt_dup", attempt)
        result = await replicas[attempt % 2].handle(body, headers)
        outcomes[result.outcome] += 1
        if outcomes.total() - outcomes[DeliveryOutcome.HANDLED] == 99:
            others_answered.set()

    async with anyio.create_task_group() as tg:
        for attempt in range(1, 101):
            tg.start_soon(deliver, attempt)
    assert len(calls) == 1
    assert outcomes[DeliveryOutcome.HANDLED] == 1
    assert (
        outcomes[DeliveryOutcome.HANDLED] + outcomes[DeliveryOutcome.IN_FLIGHT] + outcomes[DeliveryOutcome.DUPLICATE]
        == 100
    )
    # A late redelivery to either replica is a duplicate.
    for replica in replicas:
        late = await replica.handle(*delivery("evt_dup", 101))
        assert late.outcome is DeliveryOutcome.DUPLICATE
    assert len(calls) == 1
    for store in stores:
        await store.aclose()


async def test_unreachable_redis_makes_the_receiver_answer_503() -> None:
    store = RedisIdempotencyStore.from_url(f"redis://127.0.0.1:{free_port()}/0", command_timeout=1.0)
    calls: list[WebhookEvent] = []

    async def on_event(event: WebhookEvent) -> None:
        calls.append(event)

    result = await WebhookReceiver(on_event, store=store).handle(*delivery("evt_down", 1))
    assert (result.status_code, result.outcome) == (503, DeliveryOutcome.UNAVAILABLE)
    assert calls == []
    await store.aclose()
