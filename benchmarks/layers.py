"""Where the SDK's CPU per document goes: the same downloads through one more layer at a time.

``python -m benchmarks.layers [documents] [size] [rounds]`` serves documents of 450 KB from nginx (as
scenario 2) and runs, alternating, on asyncio and on uvloop: a bare httpx2 loop; the checked httpx2
loop (the per-file guarantees by hand); 10 workers calling ``client.received.download`` for each fax
(the SDK's per-file path, no listing); and ``download_all`` (listing, manifest, outcomes). It prints
the median CPU milliseconds per document of each. Public APIs only. Not part of ``make bench``: a
diagnostic for the client-overhead scenario.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from ._baselines import httpx_checked_loop, httpx_loop, sdk_client, sdk_download_all
from ._harness import FAST_DIR, LOOPS, run_on
from ._servers import backend

LAYERS = ("httpx2", "httpx2_checked", "sdk_download", "sdk_download_all")


async def _per_file(base_url: str, key: str, ids: Sequence[str], dest: Path, concurrency: int = 10) -> int:
    """10 workers, each ``await client.received.download(fax_id, path)`` in turn."""
    pending = iter(ids)
    total = 0
    async with sdk_client("sdk", base_url, key) as client:

        async def worker() -> None:
            nonlocal total
            for fax_id in pending:
                result = await client.received.download(fax_id, dest / f"{fax_id}.pdf")
                total += result.bytes

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


async def _all(base_url: str, key: str, dest: Path) -> int:
    async with sdk_client("sdk", base_url, key) as client:
        return await sdk_download_all(client, dest, 10)


def run_layer(layer: str, base_url: str, key: str, ids: Sequence[str], dest: Path) -> Coroutine[Any, Any, int]:
    urls = [f"{base_url}/fax/received/{i}/download" for i in ids]
    if layer == "httpx2":
        return httpx_loop(urls, key, dest, 10)
    if layer == "httpx2_checked":
        return httpx_checked_loop(urls, key, dest, 10)
    if layer == "sdk_download":
        return _per_file(base_url, key, ids, dest)
    return _all(base_url, key, dest)


def main(documents: int = 400, size: int = 460_800, rounds: int = 3, *, nginx: bool = True) -> dict[str, float]:
    key = "bench-layers"
    cpu: dict[str, list[float]] = {}
    names = [f"{loop}/{layer}" for loop in LOOPS for layer in LAYERS]
    with backend(nginx=nginx, workdir=FAST_DIR) as server:
        ids = server.add_account(key, documents, size)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                loop, _, layer = name.partition("/")
                dest = Path(tempfile.mkdtemp(prefix=f"bench-layers-{layer}-", dir=FAST_DIR))
                try:
                    start = time.process_time()
                    done = run_on(loop, run_layer(layer, server.base_url, key, ids, dest))
                    cpu.setdefault(name, []).append(time.process_time() - start)
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
                if done != documents * size:
                    raise RuntimeError(f"{name}: {done} bytes, expected {documents * size}")
    result = {name: statistics.median(cpu[name]) / documents * 1000 for name in names}
    for name, ms in result.items():
        print(f"{name:26s} {ms:5.2f} ms CPU per document")
    return result


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
