"""Documents: valid PDFs of the listed size and page count, download headers, Range and If-Range."""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import httpx2
import pypdf
import pytest

from audian_fax_async.emulator import AdminClient, EmulatorConfig, run_emulator
from audian_fax_async.emulator._documents import DocumentSpec, DocumentStore, build_layout

from .emulator_helpers import error_of

# The emulator serves from its own thread; these tests check it, not the client's loop independence.
pytestmark = pytest.mark.loops("asyncio")


def pdf_pages(data: bytes) -> int:
    return len(pypdf.PdfReader(io.BytesIO(data), strict=True).pages)


async def some_faxes(api: httpx2.AsyncClient, n: int) -> list[dict[str, Any]]:
    faxes: list[dict[str, Any]] = (await api.get("/fax/received", params={"limit": n})).json()["faxes"]
    return faxes


async def test_documents_are_valid_pdfs_with_listed_pages_and_exact_size(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    for fax in await some_faxes(api, 6):
        response = await api.get(f"/fax/received/{fax['id']}/download")
        assert response.status_code == 200
        assert len(response.content) == fax["file_size"] == int(response.headers["content-length"])
        assert pdf_pages(response.content) == fax["pages"]
        assert 80_000 * fax["pages"] < fax["file_size"] < 100_000 * fax["pages"]
        assert hashlib.sha256(response.content).hexdigest() == admin.document_sha256(key, fax["id"])


async def test_download_headers(api: httpx2.AsyncClient) -> None:
    fax = (await some_faxes(api, 1))[0]
    response = await api.get(f"/fax/received/{fax['id']}/download")
    headers = response.headers
    assert headers["content-type"] == "application/pdf"
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-disposition"] == f'attachment; filename="{fax["id"]}.pdf"'
    etag = headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    again = await api.get(f"/fax/received/{fax['id']}/download")
    assert again.headers["etag"] == etag and again.content == response.content


async def test_documents_are_deterministic_from_seed_and_key(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    fax = (await some_faxes(api, 1))[0]
    before = (await api.get(f"/fax/received/{fax['id']}/download")).content
    admin.reset()
    after = (await api.get(f"/fax/received/{fax['id']}/download")).content
    assert before == after


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 100), ("bytes=1000-", 1000, None), ("bytes=-500", -500, None), ("bytes=10-10", 10, 11)],
)
async def test_range_requests_answer_206_with_content_range(
    api: httpx2.AsyncClient, header: str, start: int, end: int | None
) -> None:
    fax = (await some_faxes(api, 1))[0]
    url = f"/fax/received/{fax['id']}/download"
    full = (await api.get(url)).content
    response = await api.get(url, headers={"Range": header})
    assert response.status_code == 206
    expected = full[start:end]
    first = start % len(full)
    assert response.content == expected
    assert response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(full)}"
    assert int(response.headers["content-length"]) == len(expected)


async def test_range_end_beyond_the_document_is_clamped(api: httpx2.AsyncClient) -> None:
    fax = (await some_faxes(api, 1))[0]
    size = fax["file_size"]
    response = await api.get(f"/fax/received/{fax['id']}/download", headers={"Range": f"bytes={size - 10}-{size * 2}"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
    assert len(response.content) == 10


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{bigger}", "bytes=-0"])
async def test_unsatisfiable_range_is_416_with_star_content_range(api: httpx2.AsyncClient, header: str) -> None:
    fax = (await some_faxes(api, 1))[0]
    size = fax["file_size"]
    spelled = header.format(size=size, bigger=size + 5)
    response = await api.get(f"/fax/received/{fax['id']}/download", headers={"Range": spelled})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert error_of(response)["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=5-2", "bytes=0-1,5-9", "pages=1-2", "bytes=abc"])
async def test_malformed_or_multiple_ranges_are_ignored(api: httpx2.AsyncClient, header: str) -> None:
    fax = (await some_faxes(api, 1))[0]
    response = await api.get(f"/fax/received/{fax['id']}/download", headers={"Range": header})
    assert response.status_code == 200
    assert len(response.content) == fax["file_size"]


async def test_if_range_with_current_etag_gives_206_and_with_another_gives_the_whole_document(
    api: httpx2.AsyncClient,
) -> None:
    fax = (await some_faxes(api, 1))[0]
    url = f"/fax/received/{fax['id']}/download"
    etag = (await api.get(url, headers={"Range": "bytes=0-0"})).headers["etag"]
    matching = await api.get(url, headers={"Range": "bytes=100-", "If-Range": etag})
    assert matching.status_code == 206
    stale = await api.get(url, headers={"Range": "bytes=100-", "If-Range": '"not-the-etag"'})
    assert stale.status_code == 200
    assert len(stale.content) == fax["file_size"]
    assert "content-range" not in stale.headers


async def test_big_injected_document_streams_a_valid_pdf_of_the_exact_size(
    api: httpx2.AsyncClient, admin: AdminClient, key: str
) -> None:
    size = 20 * 1024 * 1024 + 12345  # above the in-memory limit: streamed from its layout
    fax = admin.inject(key, faxes=[{"id": "fax_received_big", "pages": 3, "size": size}])[0]
    assert fax["file_size"] == size
    digest = hashlib.sha256()
    chunks = bytearray()
    async with api.stream("GET", "/fax/received/fax_received_big/download") as response:
        assert int(response.headers["content-length"]) == size
        async for chunk in response.aiter_raw():
            digest.update(chunk)
            chunks += chunk
    assert len(chunks) == size
    assert pdf_pages(bytes(chunks)) == 3
    assert digest.hexdigest() == admin.document_sha256(key, "fax_received_big")
    tail = await api.get("/fax/received/fax_received_big/download", headers={"Range": "bytes=-1000"})
    assert tail.content == bytes(chunks[-1000:])
    assert admin.stats_all()["documents"]["cached_bytes"] < size


@pytest.mark.parametrize("pages", [1, 3, 7])
@pytest.mark.parametrize("size", [5000, 99_999, 1_000_000, 20 * 1024 * 1024 + 12345, 64 * 1024 * 1024])
def test_layout_hits_an_exact_requested_size(size: int, pages: int) -> None:
    layout = build_layout(DocumentSpec(fax_id="fax_received_x", pages=pages, salt=1, size=size))
    assert layout.size == size


def test_every_size_from_the_minimum_up_is_reachable() -> None:
    for pages in (1, 2):
        with pytest.raises(ValueError, match="cannot hold") as caught:
            build_layout(DocumentSpec(fax_id="fax_received_z", pages=pages, salt=2, size=0))
        minimum = int(re.findall(r"need at least (\d+)", str(caught.value))[0])
        for size in range(minimum, minimum + 3000, 7):
            layout = build_layout(DocumentSpec(fax_id="fax_received_z", pages=pages, salt=2, size=size))
            assert layout.size == size


def test_layout_refuses_a_size_too_small_for_its_pages() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        build_layout(DocumentSpec(fax_id="fax_received_x", pages=10, salt=1, size=1000))


def test_streamed_ranges_equal_slices_of_the_whole_document() -> None:
    store = DocumentStore(seed=1, cache_bytes=0)
    layout = build_layout(DocumentSpec(fax_id="fax_received_y", pages=2, salt=5, image_heights=(280, 300)))
    whole = store.materialize("y", layout)
    assert whole is not None and len(whole) == layout.size
    assert store.cache_entries == 0  # a zero-byte cache holds nothing
    for start, end in [(0, layout.size), (1, 2), (500, 70_000), (layout.size - 3, layout.size)]:
        assert b"".join(store.iter_range(layout, start, end, chunk_size=4096)) == whole[start:end]


async def test_ten_thousand_fax_account_is_generated_without_any_document() -> None:
    async with run_emulator(EmulatorConfig(faxes=10_000)) as emu:
        async with httpx2.AsyncClient(base_url=emu.base_url, headers={"X-Auth-Token": "big"}) as client:
            first = (await client.get("/fax/received", params={"limit": 100})).json()
            last = (await client.get("/fax/received", params={"limit": 100, "offset": 9_900})).json()
        assert first["total"] == 10_000 and len(last["faxes"]) == 100
        account = emu.core.state.accounts["big"]
        laid_out = sum(1 for fax in account.faxes if fax._layout is not None)
        assert laid_out == 200  # only the listed faxes had their size computed
        assert emu.core.documents.cache_entries == 0
