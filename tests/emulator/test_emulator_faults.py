"""Faults as a plain httpx2 client meets them: statuses, cut bodies, latency, slow bytes, scripts."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from audian_fax_async.emulator import PROFILES, AdminClient, Emulator, FaultConfig, fault_profile

from .emulator_helpers import error_of

# The emulator serves from its own thread; these tests check it, not the client's loop independence.
pytestmark = pytest.mark.loops("asyncio")


async def a_fax(api: httpx2.AsyncClient) -> dict[str, Any]:
    fax: dict[str, Any] = (await api.get("/fax/received", params={"limit": 1})).json()["faxes"][0]
    return fax


async def read_until_cut(api: httpx2.AsyncClient, url: str) -> tuple[httpx2.Response, int]:
    """Stream ``url``; expect the body to end early. Returns the response and the bytes received."""
    received = bytearray()

    async def consume(response: httpx2.Response) -> None:
        async for chunk in response.aiter_raw():
            received.extend(chunk)

    async with api.stream("GET", url) as response:
        with pytest.raises(httpx2.RemoteProtocolError):
            await consume(response)
    return response, len(received)


@pytest.mark.parametrize(
    ("option", "status", "code", "retry_after"),
    [
        ("p500", 500, "internal_error", None),
        ("p503", 503, "service_unavailable", "1"),
        ("p429", 429, "rate_limited", "1"),
    ],
)
async def test_status_faults_answer_json_errors(
    api: httpx2.AsyncClient, admin: AdminClient, option: str, status: int, code: str, retry_after: str | None
) -> None:
    admin.set_faults(FaultConfig.from_json({option: 1.0}))
    for response in (await api.get("/fax/received"), await api.post("/fax/numbers", json={})):
        assert response.status_code == status
        assert error_of(response)["code"] == code
        assert response.headers.get("retry-after") == retry_after


async def test_truncated_body_raises_remote_protocol_error_after_half_the_bytes(
    api: httpx2.AsyncClient, admin: AdminClient
) -> None:
    fax = await a_fax(api)
    admin.set_faults(truncate=1.0)
    response, received = await read_until_cut(api, f"/fax/received/{fax['id']}/download")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == fax["file_size"]
    assert received == fax["file_size"] // 2


async def test_dropped_connection_ends_the_body_early_and_the_server_still_works(
    api: httpx2.AsyncClient, admin: AdminClient
) -> None:
    fax = await a_fax(api)
    admin.set_faults(drop=1.0)
    _, received = await read_until_cut(api, f"/fax/received/{fax['id']}/download")
    assert 0 < received < fax["file_size"]
    admin.set_faults()
    assert (await api.get(f"/fax/received/{fax['id']}/download")).status_code == 200


async def test_latency_is_added_to_every_api_request(api: httpx2.AsyncClient, admin: AdminClient) -> None:
    admin.set_faults(latency=0.2)
    started = time.perf_counter()
    response = await api.get("/fax/received", params={"limit": 1})
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.2


async def test_slow_first_byte_delays_the_body_not_the_headers(api: httpx2.AsyncClient, admin: AdminClient) -> None:
    fax = await a_fax(api)
    admin.set_faults(slow_first_byte=0.3)
    started = time.perf_counter()
    async with api.stream("GET", f"/fax/received/{fax['id']}/download") as response:
        headers_after = time.perf_counter() - started
        body = await response.aread()
    first_byte_after = time.perf_counter() - started
    assert headers_after < 0.25 <= 0.3 <= first_byte_after
    assert len(body) == fax["file_size"]


async def test_bandwidth_paces_a_download(api: httpx2.AsyncClient, admin: AdminClient) -> None:
    fax = await a_fax(api)
    admin.set_faults(bandwidth=fax["file_size"] * 4)  # a quarter of a second for the document
    started = time.perf_counter()
    body = (await api.get(f"/fax/received/{fax['id']}/download")).content
    assert len(body) == fax["file_size"]
    assert time.perf_counter() - started >= 0.2


async def test_admin_api_is_never_faulted(api: httpx2.AsyncClient, admin: AdminClient, key: str) -> None:
    admin.set_faults(p500=1.0, latency=0.0)
    assert (await api.get("/fax/received")).status_code == 500
    assert admin.stats(key)["requests"]["list"] == {"500": 1}


async def test_random_faults_are_reproducible_for_a_seed_and_key(emulator: Emulator, admin: AdminClient) -> None:
    admin.set_faults(p500=0.2, p503=0.2, p429=0.2)
    key = "reproducible-faults"  # a fixed key: with seed 7 its sequence is known to hold every kind

    async def statuses() -> list[int]:
        async with httpx2.AsyncClient(base_url=emulator.base_url, headers={"X-Auth-Token": key}) as client:
            return [(await client.get("/fax/received", params={"limit": 1})).status_code for _ in range(30)]

    first = await statuses()
    admin.reset(key)
    assert await statuses() == first
    assert {200, 500, 503, 429} <= set(first)


async def test_chaos_profile_is_a_moderate_mix(admin: AdminClient) -> None:
    applied = admin.set_faults("chaos")
    assert applied == PROFILES["chaos"].to_json()
    chaos = fault_profile("chaos")
    for probability in (chaos.p500, chaos.p503, chaos.p429, chaos.drop, chaos.truncate):
        assert 0 < probability <= 0.1


def test_fault_config_refuses_probabilities_adding_past_one_and_unknown_options() -> None:
    with pytest.raises(ValueError, match="add up"):
        FaultConfig(p500=0.6, p503=0.6)
    with pytest.raises(ValueError, match="unknown fault option"):
        FaultConfig.from_json({"p_500": 0.1})
    with pytest.raises(ValueError, match="unknown fault profile"):
        fault_profile("mayhem")


async def test_set_faults_rejects_bad_values_with_422(admin: AdminClient) -> None:
    with pytest.raises(httpx2.HTTPStatusError) as caught:
        admin.set_faults(p503=2.0)
    assert caught.value.response.status_code == 422


async def test_scripted_responses_come_exactly_and_in_order_then_normal_service(
    api: httpx2.AsyncClient, admin: AdminClient
) -> None:
    admin.script("list", [503, {"status": 429, "retry_after": 3}, 500, {"action": "delay", "seconds": 0.05}])
    first, second, third, fourth, fifth = [await api.get("/fax/received") for _ in range(5)]
    assert (first.status_code, first.headers.get("retry-after")) == (503, None)
    assert (second.status_code, second.headers["retry-after"]) == (429, "3")
    assert third.status_code == 500
    assert fourth.status_code == fifth.status_code == 200
    assert admin.stats_all()["scripts"] == []


async def test_scripted_faults_are_per_route(api: httpx2.AsyncClient, admin: AdminClient) -> None:
    fax = await a_fax(api)
    admin.script("get", [404, 502])
    assert (await api.get("/fax/received")).status_code == 200
    assert (await api.get(f"/fax/received/{fax['id']}/download")).status_code == 200
    assert (await api.get(f"/fax/received/{fax['id']}")).status_code == 404
    assert (await api.get(f"/fax/received/{fax['id']}")).status_code == 502
    assert (await api.get(f"/fax/received/{fax['id']}")).status_code == 200


async def test_scripted_faults_for_one_key_leave_other_accounts_alone(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    admin.script("list", [503], key=key + "-other")
    assert (await api.get("/fax/received")).status_code == 200
    admin.script("list", [503], key=key)
    assert (await api.get("/fax/received")).status_code == 503


async def test_scripted_truncate_and_drop_on_downloads(api: httpx2.AsyncClient, admin: AdminClient) -> None:
    fax = await a_fax(api)
    url = f"/fax/received/{fax['id']}/download"
    admin.script("download", ["truncate", "drop"])
    _, truncated = await read_until_cut(api, url)
    _, dropped = await read_until_cut(api, url)
    assert truncated == fax["file_size"] // 2
    assert 0 < dropped < fax["file_size"]
    assert len((await api.get(url)).content) == fax["file_size"]


async def test_scripted_drop_on_a_json_route_cuts_the_json_body(api: httpx2.AsyncClient, admin: AdminClient) -> None:
    fax = await a_fax(api)
    admin.script("update", ["drop"])
    with pytest.raises(httpx2.RemoteProtocolError):
        await api.put(f"/fax/received/{fax['id']}", json={"status": "processed"})


async def test_scripting_an_unknown_route_is_refused(admin: AdminClient) -> None:
    with pytest.raises(httpx2.HTTPStatusError, match="unknown route"):
        admin.script("delete", [500])
    with pytest.raises(httpx2.HTTPStatusError, match="unknown scripted action"):
        admin.script("list", ["explode"])


async def test_reset_clears_faults_and_scripts(api: httpx2.AsyncClient, admin: AdminClient) -> None:
    admin.set_faults(p500=1.0)
    admin.script("list", [503])
    admin.reset()
    assert (await api.get("/fax/received")).status_code == 200
    assert admin.faults() == FaultConfig().to_json()
