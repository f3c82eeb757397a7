"""Scenario 2, client overhead: 2,000 documents of 450 KB from nginx on loopback, 10 at a time.

The server is not the bottleneck, so what differs between the variants is the client: the SDK's
``download_all`` (listing, checks, sha256, fsync, manifest included), the same with the aiohttp-backed
transport, a bare httpx2 loop and a bare aiohttp loop, and both bare loops with the SDK's per-file
guarantees added by hand (temporary file, sha256, length and ``%PDF`` checks, fsync, atomic rename:
``*_checked``), which price the guarantees apart from the SDK's own code. Files go to ``/dev/shm`` so that the disk does
not hide the client's cost (fsync is free there; on a real disk it is the same for every variant
that does it).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from attrs import asdict, frozen

from audian_fax_async import AiohttpTransport

from ._baselines import aiohttp_checked_loop, aiohttp_loop, httpx_checked_loop, httpx_loop, sdk_download_all
from ._harness import FAST_DIR, Measure, alternate, clock, target
from ._servers import backend

NAME = "overhead"
TITLE = "2. Client overhead"


@frozen
class Params:
    faxes: int = 2000
    size: int = 460_800
    concurrency: int = 10
    rounds: int = 5
    nginx: bool = True
    workdir: str = FAST_DIR


FULL = Params()
TINY = Params(faxes=12, size=20_000, concurrency=4, rounds=1, nginx=False, workdir=tempfile.gettempdir())


def run(params: Params) -> dict[str, Any]:
    key = "bench-overhead"
    with backend(nginx=params.nginx, workdir=params.workdir) as server:
        ids = server.add_account(key, params.faxes, params.size)
        urls = [server.download_url(i) for i in ids]
        expected = params.faxes * params.size

        cpu: dict[str, list[float]] = {}

        def measured(kind: str) -> Measure:
            def once() -> float:
                dest = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=params.workdir))
                try:
                    cpu_start = time.process_time()
                    start = clock()
                    if kind == "sdk":
                        done = asyncio.run(sdk_download_all(server.base_url, key, dest, params.concurrency))
                    elif kind == "sdk_aiohttp":
                        done = asyncio.run(
                            sdk_download_all(
                                server.base_url, key, dest, params.concurrency, transport=AiohttpTransport()
                            )
                        )
                    elif kind == "httpx2":
                        done = asyncio.run(httpx_loop(urls, key, dest, params.concurrency))
                    elif kind == "httpx_checked":
                        done = asyncio.run(httpx_checked_loop(urls, key, dest, params.concurrency))
                    elif kind == "aiohttp_checked":
                        done = asyncio.run(aiohttp_checked_loop(urls, key, dest, params.concurrency))
                    else:
                        done = asyncio.run(aiohttp_loop(urls, key, dest, params.concurrency))
                    elapsed = clock() - start
                    cpu.setdefault(kind, []).append(time.process_time() - cpu_start)
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
                if done != expected:
                    raise RuntimeError(f"{kind}: {done} bytes, expected {expected}")
                return elapsed

            return once

        kinds = ("httpx2", "sdk", "aiohttp", "sdk_aiohttp", "httpx_checked", "aiohttp_checked")
        timings = alternate({k: measured(k) for k in kinds}, params.rounds)

    megabytes = expected / 1e6
    vs_httpx = timings.ratio("sdk", "httpx2")
    aio_vs_httpx = timings.ratio("sdk_aiohttp", "httpx2")
    return {
        "params": {**asdict(params), "server": "nginx" if params.nginx else "emulator"},
        "timings": timings.to_json(),
        "metrics": {
            **{f"{k}_MBps": round(megabytes / timings.median(k), 1) for k in kinds},
            **{f"{k}_faxes_per_s": round(params.faxes / timings.median(k), 1) for k in kinds},
            "sdk_vs_httpx": round(vs_httpx, 3),
            "sdk_aiohttp_vs_httpx": round(aio_vs_httpx, 3),
            "aiohttp_vs_httpx": round(timings.ratio("aiohttp", "httpx2"), 3),
            "sdk_aiohttp_vs_aiohttp": round(timings.ratio("sdk_aiohttp", "aiohttp"), 3),
            # The guarantees priced apart from the SDK: a bare loop that does them by hand.
            "httpx_checked_vs_httpx": round(timings.ratio("httpx_checked", "httpx2"), 3),
            "aiohttp_checked_vs_httpx": round(timings.ratio("aiohttp_checked", "httpx2"), 3),
            "sdk_vs_httpx_checked": round(timings.ratio("sdk", "httpx_checked"), 3),
            "sdk_aiohttp_vs_aiohttp_checked": round(timings.ratio("sdk_aiohttp", "aiohttp_checked"), 3),
            # CPU (all threads of this process) per document: steadier than wall time on a busy machine.
            **{f"{k}_cpu_ms_per_doc": round(statistics.median(cpu[k]) / params.faxes * 1000, 3) for k in kinds},
            "sdk_vs_httpx_by_cpu": round(statistics.median(cpu["httpx2"]) / statistics.median(cpu["sdk"]), 3),
        },
        "targets": [
            target("SDK vs bare httpx2", "≥ 0.9x", vs_httpx, vs_httpx >= 0.9, unit="x"),
            target(
                "SDK on the aiohttp transport vs bare httpx2",
                "≥ 1.5x to offer it",
                aio_vs_httpx,
                aio_vs_httpx >= 1.5,
                unit="x",
            ),
        ],
    }
