"""WebhookReceiver without sockets: the pipeline through ``handle`` and the ASGI entry called directly."""

from __future__ import annotations

import logging

import anyio
import pytest

from audian_fax_async import InvalidRequestError, ReceivedFax
from audian_fax_async.webhooks import (
    Claim,
    ClaimStatus,
    ConfirmedEvent,
    DeliveryOutcome,
    DeliveryResult,
    MemoryIdempotencyStore,
    WebhookEvent,
    WebhookReceiver,
)

from .fakes import ASGIDriver, FakeFaxAPI, Recorder, decode, fax_record, lifespan
from .payloads import delivery_headers, json_body, xml_body

JSON = delivery_headers()


async def test_first_delivery_is_handled_and_redeliveries_are_duplicates() -> None:
    handler = Recorder()
    receiver = WebhookReceiver(handler)
    first = await receiver.handle(json_body(), delivery_headers(attempt=1))
    again = await receiver.handle(xml_body(), delivery_headers("application/xml", attempt=2))
    assert (first.status_code, first.outcome) == (200, DeliveryOutcome.HANDLED)
    assert (again.status_code, again.outcome) == (200, DeliveryOutcome.DUPLICATE)
    assert [e.id for e in handler.events] == ["fax_received_123"]
    assert isinstance(handler.calls[0], WebhookEvent)


async def test_events_without_an_event_id_header_are_deduplicated_by_derived_key() -> None:
    handler = Recorder()
    receiver = WebhookReceiver(handler)
    for _ in range(3):
        await receiver.handle(json_body(), {"Content-Type": "application/json"})
    await receiver.handle(json_body(id="fax_other"), {"Content-Type": "application/json"})
    assert [e.id for e in handler.events] == ["fax_received_123", "fax_other"]


async def test_handler_failure_answers_500_and_the_redelivery_runs_it_again(caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder(fail_times=1)
    receiver = WebhookReceiver(handler)
    with caplog.at_level(logging.ERROR, logger="audian_fax_async.webhooks"):
        failed = await receiver.handle(json_body(), delivery_headers(attempt=1))
    retried = await receiver.handle(json_body(), delivery_headers(attempt=2))
    late = await receiver.handle(json_body(), delivery_headers(attempt=3))
    assert (failed.status_code, decode(failed.body)) == (500, {"outcome": "failed", "reason": "handler failed"})
    assert "handler exploded" in caplog.text
    assert retried.outcome is DeliveryOutcome.HANDLED
    assert late.outcome is DeliveryOutcome.DUPLICATE
    assert len(handler.calls) == 2


async def test_concurrent_duplicates_call_the_handler_once_and_others_get_409() -> None:
    handler = Recorder()
    handler.gate = anyio.Event()
    receiver = WebhookReceiver(handler)
    results: list[DeliveryResult] = []

    async def deliver(attempt: int) -> None:
        results.append(await receiver.handle(json_body(), delivery_headers(attempt=attempt)))

    async with anyio.create_task_group() as tg:
        for attempt in range(100):
            tg.start_soon(deliver, attempt)
        await handler.entered.wait()
        # Let every other delivery reach the store while the first is still inside the handler.
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        handler.gate.set()
    outcomes = sorted(r.outcome for r in results)
    assert len(handler.calls) == 1
    assert outcomes.count(DeliveryOutcome.HANDLED) == 1
    assert outcomes.count(DeliveryOutcome.IN_FLIGHT) == 99
    in_flight = next(r for r in results if r.outcome is DeliveryOutcome.IN_FLIGHT)
    assert (in_flight.status_code, in_flight.headers["retry-after"]) == (409, "30")


async def test_when_the_first_of_concurrent_duplicates_fails_a_later_redelivery_is_handled() -> None:
    handler = Recorder(fail_times=1)
    handler.gate = anyio.Event()
    receiver = WebhookReceiver(handler)
    results: list[DeliveryResult] = []

    async def deliver() -> None:
        results.append(await receiver.handle(json_body(), JSON))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(deliver)
        await handler.entered.wait()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        handler.gate.set()
    assert sorted(r.status_code for r in results) == [409, 409, 409, 409, 500]
    handler.gate = None
    assert (await receiver.handle(json_body(), JSON)).outcome is DeliveryOutcome.HANDLED
    assert len(handler.calls) == 2


async def test_cancelled_handler_releases_its_claim() -> None:
    handler = Recorder()
    handler.gate = anyio.Event()  # never set: the handler blocks until cancelled
    receiver = WebhookReceiver(handler)
    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver.handle, json_body(), JSON)
            await handler.entered.wait()
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    handler.gate = None
    assert (await receiver.handle(json_body(), JSON)).outcome is DeliveryOutcome.HANDLED


async def test_unknown_event_types_are_acknowledged_and_skipped_by_default() -> None:
    handler = Recorder()
    receiver = WebhookReceiver(handler)
    result = await receiver.handle(json_body(event="fax_teleported"), {"Content-Type": "application/json"})
    assert (result.status_code, result.outcome) == (200, DeliveryOutcome.IGNORED)
    assert handler.calls == []
    opted_in = WebhookReceiver(handler, handle_unknown=True)
    result = await opted_in.handle(json_body(event="fax_teleported"), {"Content-Type": "application/json"})
    assert result.outcome is DeliveryOutcome.HANDLED
    assert handler.events[0].is_known is False


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"{oops", JSON, 400, "malformed JSON"),
        (json_body(id=...), JSON, 400, "missing required field 'id'"),
        (json_body(), {"Content-Type": "text/plain"}, 415, "content type 'text/plain'"),
        (json_body(), {}, 415, "content type 'none'"),
        (json_body(), {**JSON, "Content-Length": "abc"}, 400, "invalid Content-Length"),
        (b"x" * 2048, JSON, 413, "body over 1024 bytes"),
        (json_body(), {**JSON, "Content-Length": "999999"}, 413, "body over 1024 bytes"),
    ],
)
async def test_bad_deliveries_get_short_reasons_and_never_reach_the_handler(
    body: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    handler = Recorder()
    receiver = WebhookReceiver(handler, max_body_bytes=1024)
    result = await receiver.handle(body, headers)
    assert result.status_code == status
    assert reason in decode(result.body)["reason"]
    assert len(result.body) < 300
    assert handler.calls == []


async def test_invalid_deliveries_do_not_poison_the_store() -> None:
    store = MemoryIdempotencyStore()
    receiver = WebhookReceiver(Recorder(), store=store)
    await receiver.handle(b"{oops", JSON)
    assert len(store) == 0


async def test_allow_list_refuses_other_senders_with_403() -> None:
    handler = Recorder()
    store = MemoryIdempotencyStore()
    receiver = WebhookReceiver(handler, allow_senders={"+1 (202) 555-1234"}, store=store)
    allowed = await receiver.handle(json_body(), JSON)
    refused = await receiver.handle(json_body(id="fax_2", from_number="+19998887777"), delivery_headers(event_id="e2"))
    no_number = await receiver.handle(
        json_body(event="fax_new_kind", from_number=...), {"Content-Type": "application/json"}
    )
    assert allowed.outcome is DeliveryOutcome.HANDLED
    assert (refused.status_code, decode(refused.body)["reason"]) == (403, "sender not allowed")
    assert no_number.outcome is DeliveryOutcome.IGNORED
    assert len(handler.calls) == 1
    assert len(store) == 1  # refused events are never claimed


@pytest.mark.parametrize("bad", [["2025551234"], ["+0123"], "+12025551234", [""]])
def test_allow_list_entries_must_be_e164(bad: object) -> None:
    with pytest.raises(InvalidRequestError):
        WebhookReceiver(Recorder(), allow_senders=bad)  # type: ignore[call-overload]


async def test_confirm_by_fetch_hands_the_handler_the_apis_record() -> None:
    api = FakeFaxAPI([fax_record(pages=6)])
    handler = Recorder()
    async with api.client() as client:
        receiver = WebhookReceiver(handler, confirm_with=client)
        result = await receiver.handle(json_body(), JSON)
        duplicate = await receiver.handle(json_body(), JSON)
    assert result.outcome is DeliveryOutcome.HANDLED
    assert duplicate.outcome is DeliveryOutcome.DUPLICATE
    (confirmed,) = handler.calls
    assert isinstance(confirmed, ConfirmedEvent)
    assert isinstance(confirmed.fax, ReceivedFax)
    assert (confirmed.fax.pages, confirmed.event.pages) == (6, 5)  # the API's word, not the sender's
    assert api.lookups == ["fax_received_123"]


async def test_confirm_by_fetch_refuses_a_forged_event() -> None:
    api = FakeFaxAPI([fax_record()])
    handler = Recorder()
    async with api.client() as client:
        receiver = WebhookReceiver(handler, confirm_with=client)
        forged_id = await receiver.handle(json_body(id="fax_forged"), delivery_headers(event_id="evt_f1"))
        forged_sender = await receiver.handle(json_body(from_number="+16665554444"), delivery_headers(event_id="e2"))
        genuine = await receiver.handle(json_body(), delivery_headers(event_id="evt_g"))
    assert (forged_id.status_code, decode(forged_id.body)["reason"]) == (403, "the API has no such fax")
    assert (forged_sender.status_code, decode(forged_sender.body)["reason"]) == (
        403,
        "from_number does not match the API's record",
    )
    assert genuine.outcome is DeliveryOutcome.HANDLED
    assert [c.event.event_id for c in handler.calls] == ["evt_g"]


async def test_confirm_checks_the_allow_list_against_the_apis_record() -> None:
    api = FakeFaxAPI([fax_record(from_number="+13334445555")])
    handler = Recorder()
    async with api.client() as client:
        receiver = WebhookReceiver(handler, confirm_with=client, allow_senders=["+12025551234"])
        # The payload claims an allowed sender; the API knows better.
        result = await receiver.handle(json_body(from_number="+12025551234"), JSON)
    assert result.status_code == 403
    assert handler.calls == []


async def test_api_unavailable_during_confirmation_answers_503_and_frees_the_event() -> None:
    api = FakeFaxAPI([fax_record()])
    api.fail_status = 503
    handler = Recorder()
    async with api.client() as client:
        receiver = WebhookReceiver(handler, confirm_with=client)
        unavailable = await receiver.handle(json_body(), JSON)
        api.fail_status = None
        retried = await receiver.handle(json_body(), JSON)
    assert (unavailable.status_code, unavailable.headers.get("retry-after")) == (503, "30")
    assert retried.outcome is DeliveryOutcome.HANDLED
    assert len(handler.calls) == 1


async def test_store_failure_answers_503() -> None:
    class Broken(MemoryIdempotencyStore):
        async def claim(self, key: str, *, lease: float = 0) -> Claim:
            raise ConnectionError("redis is down")

    handler = Recorder()
    result = await WebhookReceiver(handler, store=Broken()).handle(json_body(), JSON)
    assert result.status_code == 503
    assert handler.calls == []


async def test_failure_to_record_completion_still_answers_200(caplog: pytest.LogCaptureFixture) -> None:
    class Forgetful(MemoryIdempotencyStore):
        async def complete(self, claim: Claim, *, ttl: float = 0) -> bool:
            raise ConnectionError("redis is down")

    with caplog.at_level(logging.ERROR, logger="audian_fax_async.webhooks"):
        result = await WebhookReceiver(Recorder(), store=Forgetful()).handle(json_body(), JSON)
    assert result.outcome is DeliveryOutcome.HANDLED
    assert "failed to record" in caplog.text


async def test_background_mode_answers_202_and_runs_the_handler_in_its_task_group() -> None:
    handler = Recorder()
    handler.gate = anyio.Event()
    receiver = WebhookReceiver(handler, background=True)
    async with receiver:
        accepted = await receiver.handle(json_body(), JSON)
        in_flight = await receiver.handle(json_body(), JSON)
        await handler.entered.wait()
        assert receiver.statistics().background_pending == 1
        handler.gate.set()
    # Leaving the block waited for the handler.
    assert (accepted.status_code, in_flight.status_code) == (202, 409)
    assert receiver.statistics().background_pending == 0
    async with receiver:
        assert (await receiver.handle(json_body(), JSON)).outcome is DeliveryOutcome.DUPLICATE


async def test_background_failure_is_logged_and_released(caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder(fail_times=1)
    receiver = WebhookReceiver(handler, background=True)
    with caplog.at_level(logging.ERROR, logger="audian_fax_async.webhooks"):
        async with receiver:
            assert (await receiver.handle(json_body(), JSON)).status_code == 202
    assert "background webhook handler failed" in caplog.text
    assert receiver.statistics().count(DeliveryOutcome.FAILED) == 1
    async with receiver:
        assert (await receiver.handle(json_body(), JSON)).status_code == 202
    assert len(handler.calls) == 2


async def test_background_mode_sheds_load_beyond_max_pending() -> None:
    handler = Recorder()
    handler.gate = anyio.Event()
    receiver = WebhookReceiver(handler, background=True, max_pending=2)
    async with receiver:
        codes = []
        for i in range(3):
            result = await receiver.handle(json_body(id=f"fax_{i}"), delivery_headers(event_id=f"e{i}"))
            codes.append(result.status_code)
        handler.gate.set()
    assert codes == [202, 202, 503]
    async with receiver:
        assert (await receiver.handle(json_body(id="fax_2"), delivery_headers(event_id="e2"))).status_code == 202


async def test_background_cancellation_releases_claims_and_propagates() -> None:
    handler = Recorder()
    handler.gate = anyio.Event()
    store = MemoryIdempotencyStore()
    receiver = WebhookReceiver(handler, background=True, store=store)
    with anyio.CancelScope() as scope:
        async with receiver:
            await receiver.handle(json_body(), JSON)
            await handler.entered.wait()
            scope.cancel()
    assert scope.cancelled_caught
    assert len(store) == 0


async def test_background_mode_must_be_running() -> None:
    receiver = WebhookReceiver(Recorder(), background=True)
    with pytest.raises(RuntimeError, match="async with receiver"):
        await receiver.handle(json_body(), JSON)


async def test_receiver_cannot_be_entered_twice() -> None:
    receiver = WebhookReceiver(Recorder())
    async with receiver:
        with pytest.raises(RuntimeError, match="already running"):
            await receiver.__aenter__()


# -- the ASGI entry, called directly ---------------------------------------------------------


async def test_asgi_post_is_handled() -> None:
    handler = Recorder()
    status, headers, body, _ = await ASGIDriver(WebhookReceiver(handler)).post([json_body()], JSON)
    assert (status, headers["content-type"], decode(body)) == (200, "application/json", {"outcome": "handled"})
    assert len(handler.calls) == 1


async def test_asgi_other_methods_get_405() -> None:
    status, headers, _, _ = await ASGIDriver(WebhookReceiver(Recorder())).post([], {}, method="GET")
    assert (status, headers["allow"]) == (405, "POST")


async def test_asgi_wrong_content_type_is_refused_before_the_body_is_read() -> None:
    driver = ASGIDriver(WebhookReceiver(Recorder()))
    status, _, _, pulled = await driver.post([b"x" * 1000] * 10, {"Content-Type": "text/plain"})
    assert (status, pulled) == (415, 0)


async def test_asgi_content_length_over_the_cap_is_refused_before_reading() -> None:
    driver = ASGIDriver(WebhookReceiver(Recorder()))
    size = 10 * 1024 * 1024
    status, headers, _, pulled = await driver.post(
        [b"x" * 65536] * (size // 65536), {**JSON, "Content-Length": str(size)}
    )
    assert (status, headers["connection"], pulled) == (413, "close", 0)


async def test_asgi_streamed_10_mib_body_is_refused_after_reading_little_more_than_the_cap() -> None:
    receiver = WebhookReceiver(Recorder())
    chunk = b"x" * 65536
    status, _, _, pulled = await ASGIDriver(receiver).post([chunk] * 160, JSON)  # 10 MiB, no Content-Length
    assert status == 413
    assert pulled <= receiver.max_body_bytes + len(chunk)
    assert receiver.statistics().bytes_received == pulled


async def test_asgi_body_in_many_small_chunks_is_reassembled() -> None:
    body = xml_body()
    handler = Recorder()
    status, _, _, _ = await ASGIDriver(WebhookReceiver(handler)).post(
        [body[i : i + 7] for i in range(0, len(body), 7)], delivery_headers("application/xml")
    )
    assert status == 200
    assert handler.events[0].pages == 5


async def test_asgi_lifespan_runs_the_background_task_group() -> None:
    handler = Recorder()
    receiver = WebhookReceiver(handler, background=True)
    async with lifespan(receiver):
        status, _, body, _ = await ASGIDriver(receiver).post([json_body()], JSON)
        assert (status, decode(body)) == (202, {"outcome": "accepted"})
    assert len(handler.calls) == 1


async def test_statistics_count_outcomes() -> None:
    receiver = WebhookReceiver(Recorder())
    await receiver.handle(json_body(), JSON)
    await receiver.handle(json_body(), JSON)
    await receiver.handle(b"{", JSON)
    stats = receiver.statistics()
    assert stats.count(DeliveryOutcome.HANDLED) == 1
    assert stats.count(DeliveryOutcome.DUPLICATE) == 1
    assert stats.count(DeliveryOutcome.INVALID) == 1
    assert stats.count(DeliveryOutcome.REFUSED) == 0


def test_claim_status_values_are_stable() -> None:
    assert [s.value for s in ClaimStatus] == ["claimed", "in_flight", "done"]


async def test_lifespan_leaves_a_receiver_the_application_already_entered_alone() -> None:
    handler = Recorder()
    receiver = WebhookReceiver(handler, background=True)
    async with receiver:
        async with lifespan(receiver):
            assert (await receiver.handle(json_body(), JSON)).status_code == 202
        # still running after the lifespan ended: the application owns it
        assert (await receiver.handle(json_body(id="fax_2"), delivery_headers(event_id="e2"))).status_code == 202
    assert len(handler.calls) == 2
