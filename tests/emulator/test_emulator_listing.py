"""Listing received faxes: auth, shapes, order, pagination and every filter, over real HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx2
import pytest

from audian_fax_async.emulator import AdminClient, Emulator

from .emulator_helpers import error_of

# The emulator serves from its own thread; these tests check it, not the client's loop independence.
pytestmark = pytest.mark.loops("asyncio")

LIST_FIELDS = {
    "id", "from_number", "from_name", "to_number", "pages", "received_at", "status", "format",
    "file_size", "document_url", "processed",
}  # fmt: skip


def parse(value: str) -> dt.datetime:
    assert value.endswith("Z") and len(value) == 20, value
    return dt.datetime.fromisoformat(value)


async def all_faxes(api: httpx2.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        response = await api.get("/fax/received", params={**params, "limit": 7, "offset": offset})
        assert response.status_code == 200, response.text
        page = response.json()["faxes"]
        out.extend(page)
        offset += 7
        if not page:
            return out


async def test_key_in_x_auth_token_or_bearer_reaches_the_same_account(emulator: Emulator, key: str) -> None:
    async with httpx2.AsyncClient(base_url=emulator.base_url) as client:
        by_token = await client.get("/fax/received", headers={"X-Auth-Token": key})
        by_bearer = await client.get("/fax/received", headers={"Authorization": f"Bearer {key}"})
    assert by_token.status_code == by_bearer.status_code == 200
    assert by_token.json() == by_bearer.json()


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, {"X-Auth-Token": ""}]
)
async def test_missing_key_is_401_with_json_error(emulator: Emulator, headers: dict[str, str]) -> None:
    async with httpx2.AsyncClient(base_url=emulator.base_url) as client:
        response = await client.get("/fax/received", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["x-request-id"]


async def test_list_has_reference_shape_and_defaults(api: httpx2.AsyncClient, emulator: Emulator) -> None:
    response = await api.get("/fax/received")
    body = response.json()
    assert set(body) == {"faxes", "total", "limit", "offset"}
    assert (body["total"], body["limit"], body["offset"]) == (60, 20, 0)
    assert len(body["faxes"]) == 20
    for fax in body["faxes"]:
        assert set(fax) == LIST_FIELDS
        assert fax["id"].startswith("fax_received_")
        assert fax["format"] == "pdf"
        assert fax["from_number"].startswith("+1") and fax["from_number"][1:].isdigit()
        assert fax["to_number"].startswith("+1")
        assert fax["document_url"] == f"{emulator.base_url}/fax/received/{fax['id']}/download"
        assert fax["processed"] is (fax["status"] in ("processed", "archived"))
        assert fax["file_size"] > 80_000 * fax["pages"]
        parse(fax["received_at"])


async def test_every_response_has_a_unique_request_id(api: httpx2.AsyncClient) -> None:
    ids = {(await api.get("/fax/received", params={"limit": 1})).headers["x-request-id"] for _ in range(5)}
    ids.add((await api.get("/no/such/route")).headers["x-request-id"])
    assert len(ids) == 6


async def test_listing_is_newest_first_with_ties_by_id_descending_and_pages_cover_all(
    api: httpx2.AsyncClient,
) -> None:
    faxes = await all_faxes(api)
    keys = [(parse(f["received_at"]), f["id"]) for f in faxes]
    assert len(faxes) == 60 == len({f["id"] for f in faxes})
    assert keys == sorted(keys, reverse=True)
    # The generator makes ties on purpose, so that paginating clients meet them.
    assert len({k[0] for k in keys}) < len(keys)


async def test_two_keys_are_two_accounts_and_a_key_is_reproducible(
    emulator: Emulator, admin: AdminClient, key: str
) -> None:
    async with httpx2.AsyncClient(base_url=emulator.base_url) as client:
        first = (await client.get("/fax/received", headers={"X-Auth-Token": key})).json()
        other = (await client.get("/fax/received", headers={"X-Auth-Token": key + "x"})).json()
        admin.reset(key)
        again = (await client.get("/fax/received", headers={"X-Auth-Token": key})).json()
    assert {f["id"] for f in first["faxes"]}.isdisjoint(f["id"] for f in other["faxes"])
    assert first == again


async def test_status_filter_and_total_counts_all_matches(api: httpx2.AsyncClient) -> None:
    everything = await all_faxes(api)
    for status in ("received", "processed", "archived"):
        response = await api.get("/fax/received", params={"status": status, "limit": 2})
        body = response.json()
        expected = [f for f in everything if f["status"] == status]
        assert body["total"] == len(expected)
        assert body["faxes"] == expected[:2]


async def test_date_filters_are_inclusive_and_accept_z_offsets_and_fractions(api: httpx2.AsyncClient) -> None:
    everything = await all_faxes(api)
    middle = everything[30]["received_at"]
    at = parse(middle)
    same_second = [f for f in everything if f["received_at"] == middle]
    for spelled in (middle, at.isoformat(), at.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00")):
        body = (await api.get("/fax/received", params={"from_date": spelled, "to_date": spelled})).json()
        assert body["faxes"] == same_second, spelled
    newer = (await api.get("/fax/received", params={"from_date": middle, "limit": 100})).json()
    assert newer["faxes"] == [f for f in everything if parse(f["received_at"]) >= at]
    older = (await api.get("/fax/received", params={"to_date": middle, "limit": 100})).json()
    assert older["faxes"] == [f for f in everything if parse(f["received_at"]) <= at]
    later = (at + dt.timedelta(milliseconds=500)).isoformat().replace("+00:00", "Z")
    after_fraction = (await api.get("/fax/received", params={"from_date": later, "limit": 100})).json()
    assert after_fraction["total"] == newer["total"] - len(same_second)


async def test_unencoded_plus_in_an_offset_still_parses(api: httpx2.AsyncClient) -> None:
    response = await api.get("/fax/received?from_date=2020-01-01T00:00:00+00:00")
    assert response.status_code == 200
    assert response.json()["total"] == 60


async def test_from_number_filter_matches_the_sender(api: httpx2.AsyncClient) -> None:
    everything = await all_faxes(api)
    number = everything[5]["from_number"]
    body = (await api.get("/fax/received", params={"from_number": number})).json()
    assert body["faxes"] == [f for f in everything if f["from_number"] == number][:20]
    assert body["total"] >= 1


async def test_filters_combine(api: httpx2.AsyncClient) -> None:
    everything = await all_faxes(api)
    to_date = everything[10]["received_at"]
    body = (await api.get("/fax/received", params={"status": "received", "to_date": to_date, "limit": 100})).json()
    expected = [f for f in everything if f["status"] == "received" and f["received_at"] <= to_date]
    assert body["faxes"] == expected
    assert body["total"] == len(expected)


async def test_offset_past_the_end_is_an_empty_page(api: httpx2.AsyncClient) -> None:
    body = (await api.get("/fax/received", params={"offset": 1000})).json()
    assert body == {"faxes": [], "total": 60, "limit": 20, "offset": 1000}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"limit": 0},
        {"limit": "ten"},
        {"limit": "2.5"},
        {"offset": -1},
        {"offset": "x"},
        {"status": "deleted"},
        {"from_date": "yesterday"},
        {"to_date": "2024-13-45T00:00:00Z"},
    ],
)
async def test_bad_parameters_are_400_with_json_error(api: httpx2.AsyncClient, params: dict[str, Any]) -> None:
    response = await api.get("/fax/received", params=params)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_parameter"


async def test_limit_100_is_allowed(api: httpx2.AsyncClient) -> None:
    body = (await api.get("/fax/received", params={"limit": 100})).json()
    assert body["limit"] == 100 and len(body["faxes"]) == 60


async def test_unknown_route_and_method_are_json_errors(api: httpx2.AsyncClient) -> None:
    missing = await api.get("/fax/sent")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong_method = await api.delete("/fax/received")
    assert wrong_method.status_code == 405 and error_of(wrong_method)["code"] == "method_not_allowed"
