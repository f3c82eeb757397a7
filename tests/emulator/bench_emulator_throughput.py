"""Download throughput of the emulator on loopback (not a test; run it by hand).

    .venv/bin/python tests/emulator/bench_emulator_throughput.py [--downloads 400] [--concurrency 10]

Starts the emulator in a separate process (so client and server do not share a GIL), injects
``--downloads`` faxes of ``--size`` bytes into one account, warms the document cache, then downloads
them all ``--concurrency`` at a time with bare httpx2 and with aiohttp, reading raw chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import aiohttp
import httpx2

from audian_fax_async.emulator import AdminClient, EmulatorConfig, EmulatorThread

KEY = "bench"


async def with_httpx(base_url: str, ids: list[str], concurrency: int) -> int:
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    total = 0
    async with httpx2.AsyncClient(base_url=base_url, headers={"X-Auth-Token": KEY}, limits=limits) as client:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for fax_id in ids:
            queue.put_nowait(fax_id)

        async def worker() -> None:
            nonlocal total
            while not queue.empty():
                fax_id = queue.get_nowait()
                async with client.stream("GET", f"/fax/received/{fax_id}/download") as response:
                    assert response.status_code == 200, response.status_code
                    async for chunk in response.aiter_raw():
                        total += len(chunk)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


async def with_aiohttp(base_url: str, ids: list[str], concurrency: int) -> int:
    total = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers={"X-Auth-Token": KEY}, connector=connector) as session:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for fax_id in ids:
            queue.put_nowait(fax_id)

        async def worker() -> None:
            nonlocal total
            while not queue.empty():
                fax_id = queue.get_nowait()
                async with session.get(f"{base_url}/fax/received/{fax_id}/download") as response:
                    assert response.status == 200, response.status
                    async for chunk in response.content.iter_any():
                        total += len(chunk)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--downloads", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--size", type=int, default=450_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-thread", action="store_true", help="serve from a thread of this process instead")
    parser.add_argument("--big", type=int, default=1 << 30, help="size of one streamed document (0: skip)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.in_thread:
            emulator = stack.enter_context(EmulatorThread(EmulatorConfig(faxes=0)))
            base_url, admin_url = emulator.base_url, emulator.admin_url
        else:
            base_url, admin_url = stack.enter_context(server_process())
        measure(args, base_url, admin_url)


@contextlib.contextmanager
def server_process() -> Iterator[tuple[str, str]]:
    """The emulator in a child process; yields its API and admin URLs."""
    server = subprocess.Popen(
        [sys.executable, "-m", "audian_fax_async.emulator", "--port", "0", "--faxes", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        yield banner.split("API ")[1].split()[0], banner.split("admin ")[1].split()[0]
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure(args: argparse.Namespace, base_url: str, admin_url: str) -> None:
    """Inject the documents, then time the downloads."""
    with AdminClient(admin_url) as admin:
        faxes = admin.inject(KEY, count=args.downloads, pages=5, size=args.size)
    ids = [f["id"] for f in faxes]
    started = time.perf_counter()
    total = asyncio.run(with_httpx(base_url, ids, args.concurrency))  # also fills the document cache
    elapsed = time.perf_counter() - started
    print(f"httpx2    cold cache (documents produced on first download): {total / 1e6 / elapsed:.0f} MB/s")
    for name, run in (("httpx2", with_httpx), ("aiohttp", with_aiohttp)):
        for _ in range(args.rounds):
            started = time.perf_counter()
            total = asyncio.run(run(base_url, ids, args.concurrency))
            elapsed = time.perf_counter() - started
            print(
                f"{name:8} {len(ids)} downloads, {total / 1e6:.1f} MB in {elapsed:.2f} s: "
                f"{len(ids) / elapsed:.0f} downloads/s, {total / 1e6 / elapsed:.0f} MB/s"
            )
    if args.big:
        with AdminClient(admin_url) as admin:
            big = admin.inject(KEY, faxes=[{"pages": 100, "size": args.big}])[0]["id"]
        for name, run in (("httpx2", with_httpx), ("aiohttp", with_aiohttp)):
            started = time.perf_counter()
            total = asyncio.run(run(base_url, [big], 1))
            elapsed = time.perf_counter() - started
            print(f"{name:8} one streamed document of {total / 2**20:.0f} MiB: {total / 1e6 / elapsed:.0f} MB/s")


if __name__ == "__main__":
    main()
