"""The client runs under trio, not only asyncio."""

from __future__ import annotations

import json

import httpx2
import respx
import trio

from audian_fax_async import FaxClient, FaxStatus, ReceivedFax, RetryPolicy

from ._fakes import fax_json
from .conftest import API_KEY, BASE_URL, RecordingSleep


def test_the_client_lists_gets_and_retries_under_trio_with_respx() -> None:
    sleeps = RecordingSleep()
    ids: list[str] = []
    details: list[ReceivedFax] = []

    async def main() -> None:
        assert trio.lowlevel.current_trio_token() is not None
        async with FaxClient(
            API_KEY, base_url=BASE_URL, retry_policy=RetryPolicy(sleep=sleeps, random=lambda: 0.5)
        ) as client:
            page = await client.received.list(limit=2)
            fax = await client.received.get("fax_1")
            ids.extend(f.id for f in page.faxes)
            details.append(fax)

    with respx.mock(base_url=BASE_URL) as api:
        api.get("/fax/received").respond(
            200, json={"faxes": [fax_json("fax_2"), fax_json("fax_1")], "total": 2, "limit": 2, "offset": 0}
        )
        api.get("/fax/received/fax_1").mock(
            side_effect=[httpx2.Response(503), httpx2.Response(200, json=fax_json("fax_1"))]
        )
        trio.run(main)

    assert ids == ["fax_2", "fax_1"]
    assert [fax.status for fax in details] == [FaxStatus.RECEIVED]
    assert sleeps.delays == [0.4375]


def test_the_client_walks_pages_concurrently_under_trio_with_a_mock_transport() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.method == "PUT":
            fax_id = request.url.path.rsplit("/", 1)[1]
            return httpx2.Response(200, json=fax_json(fax_id, status=json.loads(request.content)["status"]))
        return httpx2.Response(200, json={"faxes": [fax_json("fax_1")], "total": 1, "limit": 100, "offset": 0})

    marked: list[str] = []

    async def main() -> None:
        async with (
            FaxClient(API_KEY, base_url=BASE_URL, transport=httpx2.MockTransport(handler)) as client,
            trio.open_nursery() as nursery,
        ):
            async for fax in client.received.iter():

                async def mark(fax_id: str = fax.id) -> None:
                    updated = await client.received.mark_processed(fax_id)
                    marked.append(str(updated.status))

                nursery.start_soon(mark)

    trio.run(main)

    assert marked == ["processed"]
    assert [r.method for r in seen] == ["GET", "PUT"]
    assert all(r.headers["X-Auth-Token"] == API_KEY for r in seen)
