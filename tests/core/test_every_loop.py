"""The client on each event loop: the suite runs these on asyncio, uvloop and trio (see tests/conftest.py)."""

from __future__ import annotations

import json

import anyio
import httpx
import httpx2
import respx

from audian_fax_async import FaxClient, FaxStatus, RetryPolicy

from ._fakes import fax_json
from .conftest import API_KEY, BASE_URL, RecordingSleep


async def test_the_client_lists_gets_and_retries(api: respx.MockRouter) -> None:
    sleeps = RecordingSleep()
    api.get("/fax/received").respond(
        200, json={"faxes": [fax_json("fax_2"), fax_json("fax_1")], "total": 2, "limit": 2, "offset": 0}
    )
    api.get("/fax/received/fax_1").mock(side_effect=[httpx.Response(503), httpx.Response(200, json=fax_json("fax_1"))])

    policy = RetryPolicy(sleep=sleeps, random=lambda: 0.5)
    async with FaxClient(API_KEY, base_url=BASE_URL, retry_policy=policy) as client:
        page = await client.received.list(limit=2)
        fax = await client.received.get("fax_1")

    assert [f.id for f in page.faxes] == ["fax_2", "fax_1"]
    assert fax.status == FaxStatus.RECEIVED
    assert sleeps.delays == [0.4375]


async def test_the_client_marks_faxes_from_a_task_group_while_it_walks_the_pages() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.method == "PUT":
            fax_id = request.url.path.rsplit("/", 1)[1]
            return httpx2.Response(200, json=fax_json(fax_id, status=json.loads(request.content)["status"]))
        return httpx2.Response(200, json={"faxes": [fax_json("fax_1")], "total": 1, "limit": 100, "offset": 0})

    marked: list[str] = []
    async with (
        FaxClient(API_KEY, base_url=BASE_URL, transport=httpx2.MockTransport(handler)) as client,
        anyio.create_task_group() as tg,
    ):
        async for fax in client.received.iter():

            async def mark(fax_id: str = fax.id) -> None:
                updated = await client.received.mark_processed(fax_id)
                marked.append(str(updated.status))

            tg.start_soon(mark)

    assert marked == ["processed"]
    assert [r.method for r in seen] == ["GET", "PUT"]
    assert all(r.headers["X-Auth-Token"] == API_KEY for r in seen)
