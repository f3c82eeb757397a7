"""A SERVER span per webhook delivery, linked to the sender's trace, and deliveries counted by outcome."""

from __future__ import annotations

import json
from typing import Any

import httpx2
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, StatusCode

from audian_fax_async.emulator import AdminClient, Emulator
from audian_fax_async.webhooks import ConfirmedEvent, WebhookEvent, WebhookReceiver

from .conftest import Telemetry, all_values, attrs, make_client

SENDER = "+12025550173"


def body(fax_id: str = "fax_received_123", **changes: Any) -> bytes:
    event = {"event": "fax_received", "id": fax_id, "from_number": SENDER, "to_number": "+15551234567", "pages": 1}
    event["received_at"] = "2026-02-04T13:15:00Z"
    return json.dumps({**event, **changes}).encode()


def headers(event_id: str = "evt_1") -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Audian-Event-Id": event_id}


async def test_each_delivery_is_a_server_span_linked_to_the_senders_trace(otel: Telemetry) -> None:
    seen: list[WebhookEvent] = []

    async def on_event(event: WebhookEvent) -> None:
        seen.append(event)

    receiver = WebhookReceiver(on_event, telemetry=otel.options)
    with otel.tracer_provider.get_tracer("the API").start_as_current_span("deliver") as sender:
        traced = headers("evt_1")
        inject(traced)
    assert "traceparent" in traced
    assert (await receiver.handle(body(), traced)).status_code == 200
    assert (await receiver.handle(body(), traced)).status_code == 200  # a redelivery: duplicate
    assert (await receiver.handle(b"{", headers("evt_2"))).status_code == 400
    assert (await receiver.handle(body(), {"Content-Type": "text/plain"})).status_code == 415
    assert len(seen) == 1

    handled, duplicate, invalid, unsupported = otel.spans("webhook.delivery")
    for span in (handled, duplicate, invalid, unsupported):
        assert span.kind is SpanKind.SERVER and span.parent is None
    assert [link.context.span_id for link in handled.links] == [sender.get_span_context().span_id]
    assert invalid.links == () or list(invalid.links) == []
    assert attrs(handled) == {
        "audian.webhook.outcome": "handled",
        "http.response.status_code": 200,
        "audian.webhook.event": "fax_received",
        "audian.fax.id": "fax_received_123",
        "audian.webhook.event_id": "evt_1",
    }
    assert attrs(duplicate)["audian.webhook.outcome"] == "duplicate"
    assert attrs(invalid)["audian.webhook.outcome"] == "invalid" and "audian.fax.id" not in attrs(invalid)
    assert attrs(unsupported)["http.response.status_code"] == 415
    assert all(SENDER not in value for span in otel.spans() for value in all_values(span))
    counts = {p.attributes["audian.webhook.outcome"]: p.value for p in otel.points("audian.webhook.deliveries")}
    assert counts == {"handled": 1, "duplicate": 1, "invalid": 1, "unsupported": 1}


async def test_a_failing_handler_is_an_error_span_and_the_senders_number_only_on_request() -> None:
    async def on_event(event: WebhookEvent) -> None:
        raise RuntimeError("the handler broke")

    found = {}
    for opt_in in (False, True):
        otel = Telemetry(sender_numbers=opt_in)
        receiver = WebhookReceiver(on_event, telemetry=otel.options)
        assert (await receiver.handle(body(), headers())).status_code == 500
        [span] = otel.spans("webhook.delivery")
        assert span.status.status_code is StatusCode.ERROR and attrs(span)["audian.webhook.outcome"] == "failed"
        found[opt_in] = attrs(span).get("audian.fax.from_number")
        otel.shutdown()
    assert found == {False: None, True: SENDER}


async def test_the_asgi_app_and_the_confirming_fetch_are_one_trace(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry
) -> None:
    [fax] = admin.inject(key, count=1, pages=1)
    confirmed: list[ConfirmedEvent] = []

    async def on_event(event: ConfirmedEvent) -> None:
        confirmed.append(event)

    async with make_client(emulator, key, otel) as client:
        receiver = WebhookReceiver(on_event, confirm_with=client, telemetry=otel.options)
        payload = body(fax["id"], from_number=fax["from_number"], to_number=fax["to_number"])
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=receiver), base_url="http://hooks") as http:
            answer = await http.post("/", content=payload, headers=headers())
    assert answer.status_code == 200 and len(confirmed) == 1
    [delivery] = otel.spans("webhook.delivery")
    [get] = otel.spans("received.get")
    assert get.parent is not None and get.parent.span_id == delivery.context.span_id
    assert get.context.trace_id == delivery.context.trace_id and delivery.links == ()
    assert attrs(delivery)["audian.webhook.outcome"] == "handled"
