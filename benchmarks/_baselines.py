"""What the SDK is compared with: bare and checked download loops on httpx2 and on aiohttp, and the SDK.

The **bare** loops are what a user would write by hand: a fixed number of workers taking URLs from
one shared iterator, each streaming a response into a file with plain blocking writes. They do none
of the SDK's work (no listing, checks, hashing, fsync, manifest or retries).

The **checked** loops add by hand what the SDK guarantees for each file, and nothing else: a
temporary file beside the destination (``O_EXCL | O_NOFOLLOW``), the sha256 as the bytes arrive, the
byte count against ``Content-Length`` and the ``%PDF`` signature, then, in one worker thread
(``asyncio.to_thread``), fsync, an atomic no-clobber rename, an fsync of the folder and a manifest
line (JSON) appended and fsynced. No listing, retries or account slots.

The SDK runs as a user runs it (:func:`sdk_client`): ``FaxClient(...)`` with its own client,
``FaxClient(http_client=httpx2.AsyncClient())`` with a stock client the user made, or
``FaxClient(transport=AiohttpTransport())``; ``sdk_otel`` is the first with an OpenTelemetry SDK
tracer and meter configured (:func:`otel_options`). The SDK is imported only when an SDK variant runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx2

if TYPE_CHECKING:
    from audian_fax_async import FaxClient, TelemetryOptions

__all__ = [
    "BASELINES",
    "SDK_STACKS",
    "aiohttp_checked_loop",
    "aiohttp_loop",
    "bare_aiohttp_session",
    "bare_httpx_client",
    "httpx_checked_loop",
    "httpx_loop",
    "otel_options",
    "sdk_client",
    "sdk_download_all",
    "sdk_stack_download_all",
]

_HEADER = "X-Auth-Token"

#: The ways a user runs the SDK, compared side by side (see :func:`sdk_client`).
SDK_STACKS = ("sdk", "sdk_http_client", "sdk_aiohttp")

Baseline = Callable[[Sequence[str], str, Path, int], Coroutine[Any, Any, int]]
"""A baseline: ``(urls, key, dest, concurrency)`` -> bytes written."""


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
    """The aiohttp loops' session: ``concurrency`` connections, the key, no decompression."""
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


class _Manifest:
    """JSON lines appended to ``folder/.manifest.jsonl``, each fsynced (from worker threads)."""

    def __init__(self, folder: Path) -> None:
        self._path = folder / ".manifest.jsonl"
        self._lock = threading.Lock()
        self._fd: int | None = None

    def append(self, entry: dict[str, object]) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _commit(fd: int, temp: Path, final: Path, manifest: _Manifest, entry: dict[str, object]) -> None:
    """fsync the file, rename it into place without clobbering, fsync the folder, record it."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(temp, final)  # fails if ``final`` exists: never clobbers
    os.unlink(temp)
    folder = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    manifest.append(entry)


async def _checked_save(
    chunks: AsyncIterator[bytes], length: str | None, final: Path, fax_id: str, manifest: _Manifest
) -> int:
    """Stream into a temporary file with a sha256 and checks, then commit it in a worker thread."""
    temp = final.with_name(f".{final.name}.part")
    fd = os.open(temp, _TEMP_FLAGS, 0o644)
    digest = hashlib.sha256()
    received = 0
    head = b""
    try:
        with os.fdopen(fd, "wb", closefd=False) as handle:
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
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    entry: dict[str, object] = {"id": fax_id, "path": final.name, "bytes": received, "sha256": digest.hexdigest()}
    await asyncio.to_thread(_commit, fd, temp, final, manifest, entry)
    return received


#: Opens one download: yields its chunks and its Content-Length (the checked loops' only difference).
_Open = Callable[[str], AbstractAsyncContextManager[tuple[AsyncIterator[bytes], str | None]]]


async def _checked_loop(urls: Sequence[str], dest: Path, concurrency: int, open_body: _Open) -> int:
    total = 0
    manifest = _Manifest(dest)

    async def one(index: int, url: str) -> None:
        nonlocal total
        async with open_body(url) as (chunks, length):
            written = await _checked_save(chunks, length, dest / f"{index}.pdf", str(index), manifest)
        total += written  # not ``total += await ...``: that reads ``total`` before the await

    try:
        await _workers(concurrency, iter(enumerate(urls)), one)
    finally:
        manifest.close()
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


#: The baselines by name.
BASELINES: dict[str, Baseline] = {
    "httpx2": httpx_loop,
    "httpx2_checked": httpx_checked_loop,
    "aiohttp": aiohttp_loop,
    "aiohttp_checked": aiohttp_checked_loop,
}


_otel: TelemetryOptions | None = None


def otel_options() -> TelemetryOptions:
    """What an instrumented service runs (made once per process, as a service does): an SDK tracer
    provider whose batch processor hands every span to an exporter that drops it (the export itself
    is not the SDK's cost), and a meter provider with a reader, so every instrument aggregates."""
    global _otel
    if _otel is None:
        from collections.abc import Sequence as Spans

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from audian_fax_async import TelemetryOptions

        class Dropping(SpanExporter):
            def export(self, spans: Spans[ReadableSpan]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(Dropping()))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        _otel = TelemetryOptions(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return _otel


@asynccontextmanager
async def sdk_client(stack: str, base_url: str, key: str) -> AsyncIterator[FaxClient]:
    """A ``FaxClient`` as a user makes one, for ``stack`` (one of :data:`SDK_STACKS`).

    ``sdk``: its own client. ``sdk_http_client``: a stock ``httpx2.AsyncClient()`` passed as
    ``http_client=`` (the user's, closed here after the SDK). ``sdk_aiohttp``: ``AiohttpTransport()``.
    ``sdk_otel``: its own client, reporting to :func:`otel_options`' tracer and meter.
    """
    from audian_fax_async import FaxClient

    if stack == "sdk":
        async with FaxClient(api_key=key, base_url=base_url) as client:
            yield client
    elif stack == "sdk_otel":
        async with FaxClient(api_key=key, base_url=base_url, telemetry=otel_options()) as client:
            yield client
    elif stack == "sdk_http_client":
        async with httpx2.AsyncClient() as http, FaxClient(api_key=key, base_url=base_url, http_client=http) as client:
            yield client
    elif stack in ("sdk_aiohttp", "sdk_aiohttp_64k"):
        from audian_fax_async import AiohttpTransport

        # sdk_aiohttp_64k: aiohttp's own read buffer, to price the transport's larger default.
        transport = AiohttpTransport(read_bufsize=64 * 1024) if stack == "sdk_aiohttp_64k" else AiohttpTransport()
        async with FaxClient(api_key=key, base_url=base_url, transport=transport) as client:
            yield client
    else:
        raise ValueError(f"unknown SDK stack {stack!r} (one of {', '.join(SDK_STACKS)})")


async def sdk_download_all(client: FaxClient, dest: Path, concurrency: int) -> int:
    """``client.received.download_all`` (listing included); returns the bytes written, failing on any failure."""
    from audian_fax_async import OutcomeKind

    total = 0
    async with client.received.download_all(dest, concurrency=concurrency) as outcomes:
        async for outcome in outcomes:
            if outcome.kind is not OutcomeKind.DOWNLOADED:
                raise RuntimeError(f"fax {outcome.fax.id}: {outcome.kind.value} {outcome.error!r}")
            total += outcome.bytes or 0
    return total


async def sdk_stack_download_all(stack: str, base_url: str, key: str, dest: Path, concurrency: int) -> int:
    """:func:`sdk_download_all` on a client made for ``stack`` (and closed after)."""
    async with sdk_client(stack, base_url, key) as client:
        return await sdk_download_all(client, dest, concurrency)
