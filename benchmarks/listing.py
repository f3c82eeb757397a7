"""Scenario 6, listing: the converter's records per second, and ``received.iter()`` over 10,000 faxes.

The converter is set against the two things it cannot avoid: decoding the JSON (``json.loads`` of
the same records) and building the same models by hand (``ReceivedFax(...)`` with
``datetime.fromisoformat``). ``iter()`` is set against a bare httpx2 loop fetching the same pages
and decoding them to dicts, on asyncio and on uvloop.
"""

from __future__ import annotations

import contextlib
import functools
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx2
from attrs import frozen

from ._harness import LOOPS, Measure, alternate, clock, params_json, run_on, target
from ._servers import backend

if TYPE_CHECKING:
    from audian_fax_async import ReceivedFax

NAME = "listing"
TITLE = "6. Listing"


@frozen
class Params:
    records: int = 100_000
    faxes: int = 10_000
    page_size: int = 100
    rounds: int = 3
    loops: tuple[str, ...] = LOOPS


FULL = Params()
TINY = Params(records=500, faxes=150, page_size=50, rounds=1)


def _by_hand(item: dict[str, Any]) -> ReceivedFax:
    """What the converter does, written out for this one model (no validation of types)."""
    from audian_fax_async import FaxStatus, ReceivedFax

    status = item["status"]
    with contextlib.suppress(ValueError):
        status = FaxStatus(status)
    return ReceivedFax(
        id=item["id"],
        from_number=item["from_number"],
        to_number=item["to_number"],
        pages=item["pages"],
        received_at=datetime.fromisoformat(item["received_at"].replace("Z", "+00:00")).astimezone(UTC),
        status=status,
        from_name=item.get("from_name"),
        format=item.get("format", "pdf"),
        file_size=item.get("file_size"),
        document_url=item.get("document_url"),
        processed=item.get("processed"),
    )


def run(params: Params) -> dict[str, Any]:
    from audian_fax_async import FaxClient, FaxPage
    from audian_fax_async._converter import structure  # the SDK's own converter, as the client uses it

    with backend(nginx=False) as server:
        server.add_account("listing", params.faxes, 4096)
        with httpx2.Client(headers={"X-Auth-Token": "listing"}, timeout=60) as http:
            sample = http.get(f"{server.base_url}/fax/received", params={"limit": 100}).json()["faxes"]

        # The converter: pages of 100 records, as the client structures them.
        records = [dict(sample[n % len(sample)], id=f"fax_{n:08d}") for n in range(params.records)]
        pages: list[dict[str, Any]] = [
            {"faxes": records[i : i + 100], "total": params.records, "limit": 100, "offset": i}
            for i in range(0, params.records, 100)
        ]
        raw_pages = [json.dumps(p).encode() for p in pages]

        def converter() -> float:
            start = clock()
            for page in pages:
                structure(page, FaxPage)
            return clock() - start

        def decode() -> float:
            start = clock()
            for raw in raw_pages:
                json.loads(raw)
            return clock() - start

        def by_hand() -> float:
            start = clock()
            for page in pages:
                [_by_hand(item) for item in page["faxes"]]
            return clock() - start

        conv = alternate({"converter": converter, "json_loads": decode, "by_hand": by_hand}, params.rounds)

        # iter() over the whole account against bare pages.
        def sdk_iter(loop: str) -> Measure:
            def once() -> float:
                async def walk() -> int:
                    async with FaxClient(api_key="listing", base_url=server.base_url) as client:
                        start = clock()
                        count = 0
                        async for _ in client.received.iter(page_size=params.page_size):
                            count += 1
                        times.append(clock() - start)
                        return count

                times: list[float] = []
                if run_on(loop, walk()) != params.faxes:
                    raise RuntimeError("iter() did not yield every fax")
                return times[0]

            return once

        def bare_pages(loop: str) -> float:
            async def walk() -> int:
                async with httpx2.AsyncClient(headers={"X-Auth-Token": "listing"}, timeout=60) as http:
                    start = clock()
                    count, offset = 0, 0
                    while True:
                        response = await http.get(
                            f"{server.base_url}/fax/received", params={"limit": params.page_size, "offset": offset}
                        )
                        faxes = json.loads(response.content)["faxes"]
                        if not faxes:
                            break
                        count += len(faxes)
                        offset += len(faxes)
                    times.append(clock() - start)
                    return count

            times: list[float] = []
            if run_on(loop, walk()) != params.faxes:
                raise RuntimeError("bare pages did not see every fax")
            return times[0]

        walk_variants: dict[str, Measure] = {}
        for loop in params.loops:
            walk_variants[f"{loop}/iter"] = sdk_iter(loop)
            walk_variants[f"{loop}/bare_pages"] = functools.partial(bare_pages, loop)
        walks = alternate(walk_variants, params.rounds)

    per_s = params.records / conv.median("converter")
    metrics: dict[str, Any] = {
        "converter_records_per_s": round(per_s),
        "json_loads_records_per_s": round(params.records / conv.median("json_loads")),
        "by_hand_records_per_s": round(params.records / conv.median("by_hand")),
        "converter_vs_by_hand": round(conv.ratio("converter", "by_hand"), 3),
        "sample_fields": sorted(sample[0]),
    }
    targets = [target("converter records per second", "report (no target)", per_s, True, unit="records/s")]
    for loop in params.loops:
        ratio = walks.ratio(f"{loop}/iter", f"{loop}/bare_pages")
        metrics[loop] = {
            "iter_faxes_per_s": round(params.faxes / walks.median(f"{loop}/iter")),
            "bare_pages_faxes_per_s": round(params.faxes / walks.median(f"{loop}/bare_pages")),
            "iter_vs_bare_pages": round(ratio, 3),
        }
        targets.append(
            target(f"iter() over {params.faxes} faxes vs bare pages", "report (no target)", ratio, True, loop=loop,
                   unit="x")
        )  # fmt: skip
    return {
        "params": params_json(params),
        "timings": {**conv.to_json(), **walks.to_json()},
        "metrics": metrics,
        "targets": targets,
    }
