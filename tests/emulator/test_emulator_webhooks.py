"""Webhooks, routing and arrivals: real POSTs into a small receiver, redelivery, both formats."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from defusedxml.ElementTree import fromstring

from audian_fax_async.emulator import AdminClient, Emulator
from audian_fax_async.emulator._webhooks import render_payload

from .emulator_helpers import Receiver, free_port_url, serve_receiver

# The emulator serves from its own thread; these tests check it, not the client's loop independence.
pytestmark = pytest.mark.loops("asyncio")

PAYLOAD_FIELDS = [
    "event", "id", "from_number", "from_name", "to_number", "pages", "received_at", "file_size", "format",
    "document_url",
]  # fmt: skip


async def subscribe(api: httpx2.AsyncClient, url: str, events: list[str], fmt: str = "json", **extra: Any) -> str:
    response = await api.post("/fax/webhooks", json={"url": url, "events": events, "format": fmt, **extra})
    assert response.status_code == 201, response.text
    webhook_id: str = response.json()["id"]
    return webhook_id


async def settled(admin: AdminClient, key: str, attempts: int) -> list[dict[str, Any]]:
    """The deliveries once ``attempts`` of them have an outcome."""
    with anyio.fail_after(5):
        while True:
            deliveries = admin.deliveries(key)
            done = [d for d in deliveries if d["outcome"] != "pending"]
            if len(done) >= attempts:
                return deliveries
            await anyio.sleep(0.01)


async def no_background_work(emulator: Emulator, key: str) -> None:
    """Until the account has no background task (deliveries, arrival streams) left."""
    with anyio.fail_after(5):
        while emulator.core.state.accounts[key].scopes:
            await anyio.sleep(0.005)


async def test_arrival_is_delivered_as_json_and_redelivered_after_failures(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    async with serve_receiver(Receiver(fail_first=2)) as receiver:
        await subscribe(api, receiver.url, ["fax_received"])
        fax = admin.arrive(key, pages=2)
        with anyio.fail_after(5):
            requests = await receiver.wait_for(3)
    headers = [h for h, _ in requests]
    assert [h["x-audian-attempt"] for h in headers] == ["1", "2", "3"]
    assert {h["x-audian-event"] for h in headers} == {"fax_received"}
    assert len({h["x-audian-event-id"] for h in headers}) == 1
    assert len({h["x-audian-delivery-id"] for h in headers}) == 3
    assert headers[0]["content-type"] == "application/json"
    payload = json.loads(requests[-1][1])
    assert list(payload) == PAYLOAD_FIELDS
    assert payload["event"] == "fax_received"
    assert {k: payload[k] for k in PAYLOAD_FIELDS[1:]} == {k: fax[k] for k in PAYLOAD_FIELDS[1:]}
    deliveries = await settled(admin, key, 3)
    assert [(d["attempt"], d["outcome"], d["status_code"]) for d in deliveries] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "delivered", 204),
    ]
    stats = admin.stats(key)["webhook_deliveries"]
    assert (stats["attempts"], stats["delivered"], stats["failed"]) == (3, 1, 2)


async def test_processed_status_is_delivered_as_xml_with_status(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    async with serve_receiver(Receiver(fail_first=1)) as receiver:
        await subscribe(api, receiver.url, ["fax_processed"], fmt="xml")
        fax = (await api.get("/fax/received", params={"status": "received", "limit": 1})).json()["faxes"][0]
        await api.put(f"/fax/received/{fax['id']}", json={"status": "processed"})
        with anyio.fail_after(5):
            requests = await receiver.wait_for(2)
    headers, body = requests[-1]
    assert headers["content-type"] == "application/xml"
    assert headers["x-audian-event"] == "fax_processed"
    assert headers["x-audian-attempt"] == "2"
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><event>')
    root = fromstring(body)
    assert root.tag == "event"
    fields = {child.tag: child.text for child in root}
    assert list(fields) == [*PAYLOAD_FIELDS, "status"]
    assert fields["event"] == "fax_processed" and fields["status"] == "processed"
    assert fields["id"] == fax["id"] and fields["file_size"] == str(fax["file_size"])


async def test_delivery_gives_up_after_five_attempts(
    api: httpx2.AsyncClient, admin: AdminClient, key: str, emulator: Emulator
) -> None:
    async with serve_receiver(Receiver(always_fail=True)) as receiver:
        await subscribe(api, receiver.url, ["fax_received"])
        admin.arrive(key)
        deliveries = await settled(admin, key, 5)
        await no_background_work(emulator, key)  # the delivery task ended: nothing more comes
    assert [d["attempt"] for d in deliveries] == [1, 2, 3, 4, 5]
    assert {d["outcome"] for d in deliveries} == {"failed"}
    assert len(receiver.requests) == 5


async def test_connection_errors_are_recorded_and_retried(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    await subscribe(api, free_port_url(), ["fax_received"])
    admin.arrive(key)
    deliveries = await settled(admin, key, 5)
    assert all(d["status_code"] is None and "ConnectError" in d["error"] for d in deliveries)


async def test_only_enabled_subscribers_of_the_event_are_called(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    async with serve_receiver(Receiver()) as receiver:
        await subscribe(api, receiver.url + "?disabled", ["fax_received"], enabled=False)
        await subscribe(api, receiver.url + "?processed-only", ["fax_processed"])
        await subscribe(api, receiver.url + "?both", ["fax_received", "fax_processed"])
        admin.arrive(key)
        deliveries = await settled(admin, key, 1)
    assert [d["url"] for d in deliveries] == [receiver.url + "?both"]


async def test_email_routing_records_messages_and_webhook_routing_posts(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    async with serve_receiver(Receiver()) as receiver:
        await api.post("/fax/routing", json={"type": "email", "destination": "a@company.com", "attach_document": True})
        await api.post("/fax/routing", json={"type": "email", "destination": "b@company.com"})
        await api.post("/fax/routing", json={"type": "email", "destination": "c@company.com", "enabled": False})
        await api.post("/fax/routing", json={"type": "webhook", "destination": receiver.url})
        fax = admin.arrive(key, pages=3, from_number="+12025551234")
        with anyio.fail_after(5):
            requests = await receiver.wait_for(1)
    assert json.loads(requests[0][1])["id"] == fax["id"]
    outbox = admin.outbox(key)
    assert [m["to"] for m in outbox] == ["a@company.com", "b@company.com"]
    assert "+12025551234" in outbox[0]["subject"]
    assert outbox[0]["attachment"] == {
        "filename": f"{fax['id']}.pdf",
        "size": fax["file_size"],
        "content_type": "application/pdf",
    }
    assert outbox[1]["attachment"] is None


async def test_arrivals_with_explicit_fields_are_listed_first(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    fax = admin.arrive(key, id="fax_received_custom", from_name="ACME Billing", pages=4, size=400_000)
    listed = (await api.get("/fax/received", params={"limit": 1})).json()
    assert listed["total"] == 61
    assert listed["faxes"][0]["id"] == "fax_received_custom"
    assert (fax["from_name"], fax["pages"], fax["file_size"]) == ("ACME Billing", 4, 400_000)
    with pytest.raises(httpx2.HTTPStatusError, match="already exists"):
        admin.arrive(key, id="fax_received_custom")


async def test_inject_adds_faxes_silently(api: httpx2.AsyncClient, admin: AdminClient, key: str) -> None:
    async with serve_receiver(Receiver()) as receiver:
        await subscribe(api, receiver.url, ["fax_received"])
        injected = admin.inject(key, count=5, status="processed", received_at="2020-01-01T00:00:00Z")
        assert len(injected) == 5
        older = (await api.get("/fax/received", params={"to_date": "2020-01-01T00:00:00Z"})).json()
        assert {f["id"] for f in older["faxes"]} == {f["id"] for f in injected}
        assert all(f["status"] == "processed" for f in older["faxes"])
    assert receiver.requests == []
    assert admin.deliveries(key) == []


async def test_a_stream_of_arrivals_runs_at_a_rate_and_stops(
    api: httpx2.AsyncClient, admin: AdminClient, key: str, emulator: Emulator
) -> None:
    admin.start_arrivals(key, rate=200, count=3)
    with anyio.fail_after(5):
        while (await api.get("/fax/received", params={"limit": 1})).json()["total"] < 63:
            await anyio.sleep(0.01)
    admin.start_arrivals(key, rate=1000)
    assert admin.stop_arrivals(key)["was_streaming"] is True
    await no_background_work(emulator, key)  # the stream's task ended: nothing more arrives
    total = (await api.get("/fax/received", params={"limit": 1})).json()["total"]
    assert emulator.core.state.accounts[key].arrival_stream is None
    assert (await api.get("/fax/received", params={"limit": 1})).json()["total"] == total


async def test_reset_cancels_pending_redeliveries(
    api: httpx2.AsyncClient, admin: AdminClient, key: str, emulator: Emulator
) -> None:
    async with serve_receiver(Receiver(always_fail=True)) as receiver:
        await subscribe(api, receiver.url, ["fax_received"])
        old = emulator.core.state.accounts[key]
        admin.arrive(key)
        with anyio.fail_after(5):
            await receiver.wait_for(1)
        admin.reset(key)
        with anyio.fail_after(5):
            while old.scopes:  # every delivery task ended: no redelivery can come
                await anyio.sleep(0.005)
    assert len(receiver.requests) < 5
    assert admin.deliveries(key) == []


def test_xml_payload_escapes_text_and_keeps_field_order() -> None:
    payload = {"event": "fax_received", "id": "fax_received_1", "from_name": "Smith & Sons <Legal>", "pages": 2}
    body, content_type = render_payload(payload, "xml")
    assert content_type == "application/xml"
    root = fromstring(body)
    assert [(child.tag, child.text) for child in root] == [
        ("event", "fax_received"),
        ("id", "fax_received_1"),
        ("from_name", "Smith & Sons <Legal>"),
        ("pages", "2"),
    ]
