"""What the SDK is compared with: bare httpx2 and bare aiohttp download loops, and the SDK's own loop.

The bare loops are what a user would write by hand: a fixed number of workers taking URLs from one
shared iterator, each streaming a response into a file with plain blocking writes. They do none of
the SDK's checks (no listing, byte counts, hashing, fsync, manifest or retries).

The ``checked`` loops add by hand what the SDK guarantees for each file, and nothing else: a
temporary file, the sha256 as the bytes arrive, the byte count against ``Content-Length`` and the
``%PDF`` signature, then fsync and an atomic no-clobber rename and a folder fsync in a worker
thread. They price the guarantees themselves, apart from the SDK's code around them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiohttp
import httpx2

from audian_fax_async import FaxClient, OutcomeKind

__all__ = [
    "aiohttp_checked_loop",
    "aiohttp_loop",
    "bare_aiohttp_session",
    "bare_httpx_client",
    "httpx_checked_loop",
    "httpx_loop",
    "sdk_download_all",
]

_HEADER = "X-Auth-Token"


async def _workers(
    concurrency: int, jobs: Iterator[tuple[int, str]], one: Callable[[int, str], Awaitable[None]]
) -> None:
    async def worker() -> None:
        for index, url in jobs:
            await one(index, url)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def bare_httpx_client(key: str, concurrency: int) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx2.AsyncClient(headers={_HEADER: key}, limits=limits, timeout=120)


async def httpx_loop(
    urls: Sequence[str], key: str, dest: Path, concurrency: int, *, client: httpx2.AsyncClient | None = None
) -> int:
    """Bare httpx2: ``stream``, ``aiter_raw``, blocking writes; returns the bytes written.

    A ``client`` passed in is used (and closed); otherwise one is made here.
    """
    total = 0
    async with client or bare_httpx_client(key, concurrency) as client:

        async def one(index: int, url: str) -> None:
            nonlocal total
            async with client.stream("GET", url) as response:
                response.raise_for_status()
                with open(dest / f"{index}.pdf", "wb") as handle:
                    async for chunk in response.aiter_raw():
                        handle.write(chunk)
                        total += len(chunk)

        await _workers(concurrency, iter(enumerate(urls)), one)
    return total


def bare_aiohttp_session(key: str, concurrency: int) -> aiohttp.ClientSession:
    """The bare aiohttp loops' session: ``concurrency`` connections, the key, no decompression."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    return aiohttp.ClientSession(
        connector=connector, headers={_HEADER: key}, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
    )


async def aiohttp_loop(urls: Sequence[str], key: str, dest: Path, concurrency: int) -> int:
    """Bare aiohttp: ``iter_any``, blocking writes; returns the bytes written."""
    total = 0
    async with bare_aiohttp_session(key, concurrency) as session:

        async def one(index: int, url: str) -> None:
            nonlocal total
            async with session.get(url) as response:
                response.raise_for_status()
                with open(dest / f"{index}.pdf", "wb") as handle:
                    async for chunk in response.content.iter_any():
                        handle.write(chunk)
                        total += len(chunk)

        await _workers(concurrency, iter(enumerate(urls)), one)
    return total


async def _checked_save(chunks: AsyncIterator[bytes], length: str | None, final: Path) -> int:
    """Stream into a temporary file with a sha256 and checks, then commit it atomically in a thread."""
    temp = final.with_name(f".{final.name}.part")
    digest = hashlib.sha256()
    received = 0
    head = b""
    with open(temp, "xb") as handle:
        async for chunk in chunks:
            handle.write(chunk)
            digest.update(chunk)
            if len(head) < 5:
                head = (head + chunk[:5])[:5]
            received += len(chunk)
        if length is not None and received != int(length):
            raise RuntimeError(f"{final.name}: {received} bytes, Content-Length {length}")
        if head != b"%PDF-":
            raise RuntimeError(f"{final.name}: not a PDF")

        def commit() -> None:
            handle.flush()
            os.fsync(handle.fileno())
            os.link(temp, final)  # no clobber
            os.unlink(temp)
            folder = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

        await asyncio.to_thread(commit)
    digest.hexdigest()  # the SDK reports it and keeps it in its manifest
    return received


#: Opens one download: yields its chunks and its Content-Length (the checked loops' only difference).
_Open = Callable[[str], AbstractAsyncContextManager[tuple[AsyncIterator[bytes], str | None]]]


async def _checked_loop(urls: Sequence[str], dest: Path, concurrency: int, open_body: _Open) -> int:
    total = 0

    async def one(index: int, url: str) -> None:
        nonlocal total
        async with open_body(url) as (chunks, length):
            written = await _checked_save(chunks, length, dest / f"{index}.pdf")
        total += written

    await _workers(concurrency, iter(enumerate(urls)), one)
    return total


async def httpx_checked_loop(urls: Sequence[str], key: str, dest: Path, concurrency: int) -> int:
    """Bare httpx2 plus the per-file guarantees, by hand (see the module's docstring)."""
    async with bare_httpx_client(key, concurrency) as client:

        @asynccontextmanager
        async def open_body(url: str) -> AsyncIterator[tuple[AsyncIterator[bytes], str | None]]:
            async with client.stream("GET", url) as response:
                response.raise_for_status()
                yield response.aiter_raw(), response.headers.get("Content-Length")

        return await _checked_loop(urls, dest, concurrency, open_body)


async def aiohttp_checked_loop(urls: Sequence[str], key: str, dest: Path, concurrency: int) -> int:
    """Bare aiohttp plus the per-file guarantees, by hand (see the module's docstring)."""
    async with bare_aiohttp_session(key, concurrency) as session:

        @asynccontextmanager
        async def open_body(url: str) -> AsyncIterator[tuple[AsyncIterator[bytes], str | None]]:
            async with session.get(url) as response:
                response.raise_for_status()
                yield response.content.iter_any(), response.headers.get("Content-Length")

        return await _checked_loop(urls, dest, concurrency, open_body)


async def sdk_download_all(
    base_url: str,
    key: str,
    dest: Path,
    concurrency: int,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    client: FaxClient | None = None,
) -> int:
    """The SDK: ``download_all`` (listing included); returns the bytes written, failing on any failure.

    A ``client`` passed in is used (and closed); otherwise one is made here.
    """
    total = 0
    async with (
        client or FaxClient(api_key=key, base_url=base_url, transport=transport) as client,
        client.received.download_all(dest, concurrency=concurrency) as outcomes,
    ):
        async for outcome in outcomes:
            if outcome.kind is not OutcomeKind.DOWNLOADED:
                raise RuntimeError(f"fax {outcome.fax.id}: {outcome.kind.value} {outcome.error!r}")
            total += outcome.bytes or 0
    return total
