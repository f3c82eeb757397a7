"""The emulator delivers real webhooks (JSON and XML) into a running receiver, failures and retries included."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import anyio
import httpx2
import pytest

from audian_fax_async import FaxClient
from audian_fax_async.emulator import AdminClient, AsyncAdminClient, Emulator, EmulatorConfig, run_emulator
from audian_fax_async.webhooks import (
    Claim,
    ClaimStatus,
    ConfirmedEvent,
    DeliveryOutcome,
    MemoryIdempotencyStore,
    WebhookEvent,
    WebhookEventType,
    WebhookReceiver,
)

from .fakes import Recorder
from .payloads import delivery_headers, json_body
from .servers import serve

# uvicorn serves the receiver inside the test's loop, and uvicorn needs asyncio (uvloop included).
pytestmark = pytest.mark.loops("asyncio", "uvloop")

Json = dict[str, Any]


@pytest.fixture
async def admin(audian_emulator: Emulator, audian_admin: AdminClient) -> AsyncIterator[AsyncAdminClient]:
    """The async admin client (the sync one would block the loop the receiver runs in)."""
    async with audian_emulator.async_admin() as client:
        yield client


async def eventually(check: Callable[[], Any], *, timeout: float = 5.0) -> Any:
    """Poll an awaitable check on the emulator until it returns something truthy (bounded)."""
    with anyio.fail_after(timeout):
        while not (result := await check()):
            await anyio.sleep(0.01)
    return result


async def delivered(admin: AsyncAdminClient, key: str, count: int = 1) -> list[Json]:
    """The account's delivery attempts, once ``count`` events ended delivered."""

    async def check() -> list[Json] | None:
        attempts = await admin.deliveries(key)
        done = [a for a in attempts if a["outcome"] == "delivered"]
        return attempts if len(done) >= count else None

    result: list[Json] = await eventually(check)
    return result


class SucceedsAfterFailing(Recorder):
    """Fails the first ``fail_times`` calls; ``succeeded`` is set once a call returns."""

    def __init__(self, fail_times: int) -> None:
        super().__init__(fail_times=fail_times)
        self.succeeded = anyio.Event()

    async def __call__(self, item: Any) -> None:
        await super().__call__(item)
        self.succeeded.set()


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_emulator_delivery_failed_twice_is_retried_and_handled_once(
    fmt: Literal["json", "xml"], fax_client: FaxClient, admin: AsyncAdminClient, audian_api_key: str
) -> None:
    handler = SucceedsAfterFailing(fail_times=2)
    receiver = WebhookReceiver(handler)
    async with serve(receiver) as url:
        await fax_client.webhooks.create(url=url + "/", events=["fax_received"], format=fmt)
        fax = await admin.arrive(audian_api_key)
        with anyio.fail_after(5):
            await handler.succeeded.wait()
        attempts = await delivered(admin, audian_api_key)
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in attempts] == [
        (1, 500, "failed"),
        (2, 500, "failed"),
        (3, 200, "delivered"),
    ]
    assert len({a["event_id"] for a in attempts}) == 1
    assert len({a["delivery_id"] for a in attempts}) == 3
    event = handler.events[-1]
    assert event.event is WebhookEventType.FAX_RECEIVED
    assert (event.event_id, event.delivery_id) == (attempts[2]["event_id"], attempts[2]["delivery_id"])
    record = await fax_client.received.get(fax["id"])
    assert (event.id, event.from_number, event.to_number, event.pages) == (
        record.id,
        record.from_number,
        record.to_number,
        record.pages,
    )
    assert (event.received_at, event.file_size, event.document_url) == (
        record.received_at,
        record.file_size,
        record.document_url,
    )
    assert receiver.statistics().count(DeliveryOutcome.FAILED) == 2


async def test_emulator_xml_delivery_confirmed_by_fetch_reaches_the_handler_with_the_apis_record(
    fax_client: FaxClient, admin: AsyncAdminClient, audian_api_key: str
) -> None:
    handler = SucceedsAfterFailing(fail_times=0)
    receiver = WebhookReceiver(handler, confirm_with=fax_client)
    async with serve(receiver) as url, httpx2.AsyncClient(base_url=url) as http:
        await fax_client.webhooks.create(url=url + "/", events=["fax_received"], format="xml")
        fax = await admin.arrive(audian_api_key)
        with anyio.fail_after(5):
            await handler.succeeded.wait()
        # A forged event: an id the API does not know.
        forged = await http.post(
            "/", content=json_body(id="fax_forged_1"), headers=delivery_headers(event_id="evt_forged")
        )
        # A forged event about a real fax, claiming another sender.
        spoofed = await http.post(
            "/",
            content=json_body(id=fax["id"], from_number="+19995550000", to_number=fax["to_number"]),
            headers=delivery_headers(event_id="evt_spoofed"),
        )
    assert (forged.status_code, forged.json()["reason"]) == (403, "the API has no such fax")
    assert (spoofed.status_code, spoofed.json()["reason"]) == (403, "from_number does not match the API's record")
    (confirmed,) = handler.calls
    assert isinstance(confirmed, ConfirmedEvent)
    assert confirmed.fax.id == confirmed.event.id == fax["id"]
    assert confirmed.fax.duration == fax["duration"]  # only the API's record has it


class ObservedStore(MemoryIdempotencyStore):
    """Remembers every claim status and wakes waiters when one appears."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[ClaimStatus] = []
        self.saw_in_flight = anyio.Event()

    async def claim(self, key: str, *, lease: float = 60.0) -> Claim:
        claim = await super().claim(key, lease=lease)
        self.seen.append(claim.status)
        if claim.status is ClaimStatus.IN_FLIGHT:
            self.saw_in_flight.set()
        return claim


async def test_retry_of_an_event_still_being_handled_is_deferred_then_acknowledged_once() -> None:
    # The emulator gives up on attempt 1 after 0.2 s while the handler is still busy; attempt 2 finds
    # the event in flight (409); once the handler finished, the next attempt is a duplicate (200).
    config = EmulatorConfig(faxes=0, time_scale=1e-5, webhook_timeout=0.2)
    store = ObservedStore()
    handler = Recorder()
    handler.gate = anyio.Event()
    receiver = WebhookReceiver(handler, store=store)
    async with (
        run_emulator(config) as emulator,
        serve(receiver) as url,
        emulator.async_admin() as admin,
        FaxClient("key_inflight", base_url=emulator.base_url) as client,
    ):
        await client.webhooks.create(url=url + "/", events=["fax_received"], format="json")
        await admin.arrive("key_inflight")
        with anyio.fail_after(5):
            await store.saw_in_flight.wait()
        handler.gate.set()
        attempts = await delivered(admin, "key_inflight")
    assert len(handler.calls) == 1
    assert store.seen[0] is ClaimStatus.CLAIMED
    assert store.seen[-1] is ClaimStatus.DONE
    outcomes = [(a["status_code"], a["outcome"]) for a in attempts]
    assert outcomes[0] == (None, "failed")  # timed out
    assert (409, "failed") in outcomes
    assert outcomes[-1] == (200, "delivered")


async def test_fax_processed_event_arrives_with_status(
    fax_client: FaxClient, admin: AsyncAdminClient, audian_api_key: str
) -> None:
    seen: list[WebhookEvent] = []
    got = anyio.Event()

    async def on_event(event: WebhookEvent) -> None:
        seen.append(event)
        if event.event == WebhookEventType.FAX_PROCESSED:
            got.set()

    async with serve(WebhookReceiver(on_event)) as url:
        await fax_client.webhooks.create(url=url + "/", events=["fax_processed"], format="xml")
        fax = await admin.arrive(audian_api_key)
        await fax_client.received.mark_processed(fax["id"])
        with anyio.fail_after(5):
            await got.wait()
    assert [(e.event, e.id, e.status) for e in seen] == [(WebhookEventType.FAX_PROCESSED, fax["id"], "processed")]
