"""The SDK on the aiohttp-backed transport (``httpx_aiohttp.AiohttpTransport``) keeps the download
guarantees the benchmarks would trade for speed: streaming to disk, resuming a dropped body with
``Range``, refusing a short body, and never sending the key to another origin on a redirect."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
import pytest_asyncio
from httpx_aiohttp import AiohttpTransport

from audian_fax_async import FaxClient, RetryPolicy
from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig, EmulatorThread

KEY = "bench-aiohttp"
PDF = b"%PDF-1.7\n" + b"x" * 200_000 + b"\n%%EOF\n"


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with EmulatorThread(EmulatorConfig(faxes=0, seed=3)) as emu:
        yield emu


@pytest.fixture
def admin(emulator: Emulator) -> Iterator[AdminClient]:
    with emulator.admin() as client:
        client.reset()
        yield client


@pytest_asyncio.fixture
async def client(emulator: Emulator) -> AsyncIterator[FaxClient]:
    retry = RetryPolicy(max_retries=4, sleep=_no_sleep)
    async with FaxClient(KEY, base_url=emulator.base_url, transport=AiohttpTransport(), retry_policy=retry) as c:
        yield c


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_dropped_body_resumes_with_range_and_the_file_is_whole(
    client: FaxClient, admin: AdminClient, tmp_path: Path
) -> None:
    [fax] = admin.inject(KEY, count=1, size=600_000)
    admin.script("download", ["drop"], key=KEY)
    result = await client.received.download(fax["id"], tmp_path)
    assert result.resumed and result.attempts == 2
    assert result.sha256 == _sha(result.path) == admin.document_sha256(KEY, fax["id"])
    assert result.path.stat().st_size == 600_000


async def test_a_short_body_is_refused_and_downloaded_again(
    client: FaxClient, admin: AdminClient, tmp_path: Path
) -> None:
    [fax] = admin.inject(KEY, count=1, size=300_000)
    admin.script("download", ["truncate"], key=KEY)
    result = await client.received.download(fax["id"], tmp_path)
    assert result.attempts == 2
    assert _sha(result.path) == admin.document_sha256(KEY, fax["id"])


async def test_download_all_streams_every_fax_to_disk(client: FaxClient, admin: AdminClient, tmp_path: Path) -> None:
    faxes = admin.inject(KEY, count=12, size=150_000)
    async with client.received.download_all(tmp_path) as outcomes:
        done = {o.fax.id: o async for o in outcomes}
    assert set(done) == {f["id"] for f in faxes}
    for fax_id, outcome in done.items():
        assert outcome.ok and outcome.path is not None
        assert _sha(outcome.path) == admin.document_sha256(KEY, fax_id)


def _origins(seen: dict[str, str | None]) -> tuple[http.server.ThreadingHTTPServer, http.server.ThreadingHTTPServer]:
    """Two origins: the API redirects every download to the second (a CDN), which serves the document."""
    cdn_url: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen[str(cast(http.server.HTTPServer, self.server).server_port)] = self.headers.get("X-Auth-Token")
            if self.path.endswith("/download"):
                self.send_response(302)
                self.send_header("Location", f"{cdn_url[0]}/doc.pdf?sig=1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/pdf")
            self.send_header("Content-Length", str(len(PDF)))
            self.end_headers()
            self.wfile.write(PDF)

        def log_message(self, *args: object) -> None:
            pass

    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    cdn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    cdn_url.append(f"http://127.0.0.1:{cdn.server_address[1]}")
    return api, cdn


async def test_a_redirect_to_another_origin_does_not_carry_the_key(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}
    api, cdn = _origins(seen)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (api, cdn)]
    for thread in threads:
        thread.start()
    try:
        async with FaxClient(
            "secret-key", base_url=f"http://127.0.0.1:{api.server_address[1]}/v2", transport=AiohttpTransport()
        ) as client:
            result = await client.received.download("fax_1", tmp_path / "x.pdf")
    finally:
        for server in (api, cdn):
            server.shutdown()
            server.server_close()
    assert result.path.read_bytes() == PDF
    assert seen == {str(api.server_address[1]): "secret-key", str(cdn.server_address[1]): None}
