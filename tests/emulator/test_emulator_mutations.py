"""Fax details, status changes, archive, webhooks, routing rules and numbers."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from audian_fax_async.emulator import AdminClient

from .emulator_helpers import error_of

# The emulator serves from its own thread; these tests check it, not the client's loop independence.
pytestmark = pytest.mark.loops("asyncio")

DETAIL_EXTRA = {"duration", "baud_rate", "created_at"}


async def first_fax(api: httpx2.AsyncClient, **params: Any) -> dict[str, Any]:
    fax: dict[str, Any] = (await api.get("/fax/received", params={"limit": 1, **params})).json()["faxes"][0]
    return fax


async def test_detail_is_the_list_item_plus_duration_baud_rate_and_created_at(api: httpx2.AsyncClient) -> None:
    listed = await first_fax(api)
    response = await api.get(f"/fax/received/{listed['id']}")
    detail = response.json()
    assert response.status_code == 200
    assert set(detail) == set(listed) | DETAIL_EXTRA
    assert {k: detail[k] for k in listed} == listed
    assert isinstance(detail["duration"], int) and detail["duration"] > 0
    assert detail["baud_rate"] in (4800, 9600, 14400, 33600)
    assert detail["created_at"].endswith("Z")


async def test_unknown_fax_is_404_on_every_fax_route(api: httpx2.AsyncClient) -> None:
    path = "/fax/received/fax_received_nope"
    responses = [
        await api.get(path),
        await api.put(path, json={"status": "processed"}),
        await api.post(path + "/archive"),
        await api.get(path + "/download"),
    ]
    for response in responses:
        assert response.status_code == 404
        assert error_of(response)["code"] == "fax_not_found"


async def test_put_status_persists_and_sets_processed(api: httpx2.AsyncClient) -> None:
    fax = await first_fax(api, status="received")
    response = await api.put(f"/fax/received/{fax['id']}", json={"status": "processed"})
    assert response.status_code == 200
    assert response.json()["status"] == "processed" and response.json()["processed"] is True
    again = (await api.get(f"/fax/received/{fax['id']}")).json()
    assert again["status"] == "processed" and again["processed"] is True
    back = await api.put(f"/fax/received/{fax['id']}", json={"status": "received"})
    assert back.json()["processed"] is False


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"status": "deleted"}', 422, "validation_error"),
        (b'{"status": 3}', 422, "validation_error"),
        (b"[]", 422, "validation_error"),
        (b"{}", 422, "validation_error"),
    ],
)
async def test_put_with_a_bad_body_is_refused_with_json_error(
    api: httpx2.AsyncClient, content: bytes, status: int, code: str
) -> None:
    fax = await first_fax(api)
    response = await api.put(
        f"/fax/received/{fax['id']}", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert error_of(response)["code"] == code


async def test_archive_moves_the_fax_to_archived(api: httpx2.AsyncClient) -> None:
    fax = await first_fax(api, status="received")
    response = await api.post(f"/fax/received/{fax['id']}/archive")
    assert response.status_code == 200
    assert response.json()["status"] == "archived" and response.json()["processed"] is True
    archived = (await api.get("/fax/received", params={"status": "archived", "limit": 100})).json()
    assert fax["id"] in {f["id"] for f in archived["faxes"]}


async def test_webhook_is_created_with_defaults(api: httpx2.AsyncClient) -> None:
    response = await api.post(
        "/fax/webhooks", json={"url": "https://your-domain.com/webhook/fax", "events": ["fax_received"]}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "url", "events", "enabled", "format", "created_at"}
    assert body["id"].startswith("wh_")
    assert (body["enabled"], body["format"], body["events"]) == (True, "json", ["fax_received"])


@pytest.mark.parametrize(
    "payload",
    [
        {"events": ["fax_received"]},
        {"url": "ftp://x.example/hook", "events": ["fax_received"]},
        {"url": "https://x.example/hook", "events": []},
        {"url": "https://x.example/hook", "events": ["fax_sent"]},
        {"url": "https://x.example/hook", "events": "fax_received"},
        {"url": "https://x.example/hook", "events": ["fax_received"], "format": "yaml"},
        {"url": "https://x.example/hook", "events": ["fax_received"], "enabled": "yes"},
    ],
)
async def test_invalid_webhook_is_422(api: httpx2.AsyncClient, payload: dict[str, Any]) -> None:
    response = await api.post("/fax/webhooks", json=payload)
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


async def test_routing_rules_are_created_for_email_and_webhook(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    email = await api.post(
        "/fax/routing",
        json={"type": "email", "destination": "receiving@company.com", "attach_document": True, "enabled": True},
    )
    hook = await api.post("/fax/routing", json={"type": "webhook", "destination": "https://your-crm.com/api/fax"})
    assert email.status_code == hook.status_code == 201
    assert set(email.json()) == {"id", "type", "destination", "attach_document", "enabled", "created_at"}
    assert email.json()["id"].startswith("rt_")
    assert (hook.json()["attach_document"], hook.json()["enabled"]) == (False, True)
    assert [r["id"] for r in admin.subscriptions(key)["routing"]] == [email.json()["id"], hook.json()["id"]]


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "fax", "destination": "a@b.co"},
        {"type": "email", "destination": "not-an-address"},
        {"type": "webhook", "destination": "crm.example"},
        {"type": "email"},
    ],
)
async def test_invalid_routing_rule_is_422(api: httpx2.AsyncClient, payload: dict[str, Any]) -> None:
    response = await api.post("/fax/routing", json=payload)
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


async def test_numbers_are_allocated_in_the_area_code(api: httpx2.AsyncClient) -> None:
    response = await api.post("/fax/numbers", json={"area_code": "202", "quantity": 3})
    assert response.status_code == 201
    numbers = response.json()["numbers"]
    assert len(numbers) == 3 == len({n["number"] for n in numbers})
    for number in numbers:
        assert set(number) == {"id", "number", "area_code", "created_at"}
        assert number["number"].startswith("+1202") and len(number["number"]) == 12
        assert number["area_code"] == "202" and number["id"].startswith("num_")


async def test_an_account_holds_at_most_100_numbers_and_the_excess_request_is_refused_whole(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    too_many_at_once = await api.post("/fax/numbers", json={"area_code": "415", "quantity": 101})
    assert too_many_at_once.status_code == 409
    assert error_of(too_many_at_once)["code"] == "number_limit_exceeded"
    assert (await api.post("/fax/numbers", json={"area_code": "415", "quantity": 99})).status_code == 201
    over = await api.post("/fax/numbers", json={"area_code": "212", "quantity": 2})
    assert over.status_code == 409 and error_of(over)["code"] == "number_limit_exceeded"
    assert (await api.post("/fax/numbers", json={"area_code": "212", "quantity": 1})).status_code == 201
    refused = await api.post("/fax/numbers", json={"area_code": "212", "quantity": 1})
    assert refused.status_code == 409
    assert len(admin.subscriptions(key)["numbers"]) == 100


@pytest.mark.parametrize(
    "payload", [{"area_code": "2O2", "quantity": 1}, {"area_code": "202", "quantity": 0}, {"area_code": 202}]
)  # an area code is any string of digits (as the SDK checks it): "2O2" has a letter O
async def test_invalid_number_request_is_422(api: httpx2.AsyncClient, payload: dict[str, Any]) -> None:
    response = await api.post("/fax/numbers", json=payload)
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


async def test_mutations_are_counted_in_stats_by_route_and_status(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    fax = await first_fax(api)
    await api.put(f"/fax/received/{fax['id']}", json={"status": "processed"})
    await api.put(f"/fax/received/{fax['id']}", json={"status": "nope"})
    await api.post(f"/fax/received/{fax['id']}/archive")
    requests = admin.stats(key)["requests"]
    assert requests["list"] == {"200": 1}
    assert requests["update"] == {"200": 1, "422": 1}
    assert requests["archive"] == {"200": 1}
