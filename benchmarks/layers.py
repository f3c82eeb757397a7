"""Where the SDK's CPU per document goes: the same downloads through one more SDK layer at a time.

``python -m benchmarks.layers`` serves 400 documents of 450 KB from nginx (as scenario 2) and runs,
alternating, in 3 rounds: a bare httpx2 loop; the same loop on the SDK's own ``httpx2.AsyncClient``;
with ``FaxClient.build_request`` and ``send``; inside ``download_slot()``; inside ``call_with_retries``;
``download_file`` (temporary file, sha256, checks, fsync and rename); ``download_all`` (listing,
manifest, outcomes). It prints the median CPU milliseconds per document of each. Not part of
``make bench``: a diagnostic for the client-overhead scenario.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx2

from audian_fax_async import FaxClient
from audian_fax_async._download import download_file
from audian_fax_async._retry import call_with_retries
from audian_fax_async.resources._base import fax_path

from ._harness import FAST_DIR
from ._servers import backend

LAYERS = ("bare", "sdk_http_client", "sdk_send", "download_slot", "retries", "download_file", "download_all")


async def _workers(ids: Sequence[str], one: Callable[[str], Awaitable[None]], concurrency: int = 10) -> None:
    pending = iter(ids)

    async def worker() -> None:
        for fax_id in pending:
            await one(fax_id)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _save(response: httpx2.Response, path: Path) -> None:
    with path.open("wb") as handle:
        async for chunk in response.aiter_raw():
            handle.write(chunk)


async def run_layer(layer: str, base_url: str, key: str, ids: Sequence[str], dest: Path) -> None:
    async with FaxClient(key, base_url=base_url) as client:
        url = f"{base_url}/fax/received/{{}}/download"
        if layer == "bare":
            limits = httpx2.Limits(max_connections=10, max_keepalive_connections=10)
            async with httpx2.AsyncClient(headers={"X-Auth-Token": key}, limits=limits, timeout=120) as bare:

                async def bare_one(fax_id: str) -> None:
                    async with bare.stream("GET", url.format(fax_id)) as response:
                        await _save(response, dest / fax_id)

                await _workers(ids, bare_one)
            return
        if layer == "sdk_http_client":

            async def http_one(fax_id: str) -> None:
                async with client._http.stream("GET", url.format(fax_id), headers={"X-Auth-Token": key}) as response:
                    await _save(response, dest / fax_id)

            await _workers(ids, http_one)
            return
        if layer == "download_all":
            async with client.received.download_all(dest, concurrency=10) as outcomes:
                async for _ in outcomes:
                    pass
            return
        if layer == "download_file":

            async def file_one(fax_id: str) -> None:
                await download_file(client, fax_id, dest / fax_id)

            await _workers(ids, file_one)
            return

        async def fetch(fax_id: str) -> None:
            response = await client.send(client.build_request("GET", fax_path(fax_id, "download")), stream=True)
            try:
                await _save(response, dest / fax_id)
            finally:
                await response.aclose()

        async def layered_one(fax_id: str) -> None:
            if layer == "sdk_send":
                await fetch(fax_id)
            elif layer == "download_slot":
                async with client.download_slot():
                    await fetch(fax_id)
            else:

                async def in_slot() -> None:
                    async with client.download_slot():
                        await fetch(fax_id)

                await call_with_retries(in_slot, client.retry_policy, idempotent=True, operation="layers")

        await _workers(ids, layered_one)


def main(documents: int = 400, size: int = 460_800, rounds: int = 3, *, nginx: bool = True) -> dict[str, float]:
    key = "bench-layers"
    cpu: dict[str, list[float]] = {}
    with backend(nginx=nginx, workdir=FAST_DIR) as server:
        ids = server.add_account(key, documents, size)
        for _ in range(rounds):
            for layer in LAYERS:
                dest = Path(tempfile.mkdtemp(prefix=f"bench-layers-{layer}-", dir=FAST_DIR))
                try:
                    start = time.process_time()
                    asyncio.run(run_layer(layer, server.base_url, key, ids, dest))
                    cpu.setdefault(layer, []).append(time.process_time() - start)
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
    result = {layer: statistics.median(cpu[layer]) / documents * 1000 for layer in LAYERS}
    for layer, ms in result.items():
        print(f"{layer:16s} {ms:5.2f} ms CPU per document")
    return result


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
