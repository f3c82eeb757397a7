"""Download logic without the emulator: response plans, completeness, lying servers, safe names."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from audian_fax_async import (
    DestinationError,
    FaxClient,
    IncompleteDownloadError,
    ReceivedFax,
    RetryPolicy,
)
from audian_fax_async._download import _Restart, check_complete, plan_body, range_headers
from audian_fax_async._paths import cleanup_partial_files, render_template, safe_component, safe_filename

from .conftest import no_sleep

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def fax(**overrides: object) -> ReceivedFax:
    fields: dict[str, object] = {
        "id": "fax_1",
        "from_number": "+12025551234",
        "to_number": "+15551234567",
        "pages": 1,
        "received_at": datetime(2024, 2, 4, 13, 15, tzinfo=UTC),
        "status": "received",
        "file_size": len(PDF),
    }
    fields.update(overrides)
    return ReceivedFax(**fields)  # type: ignore[arg-type]


# -- pure pieces --------------------------------------------------------------------------------


def test_range_headers_ask_for_identity_and_resume_only_with_an_offset() -> None:
    assert "Range" not in range_headers(0, '"e"')
    headers = range_headers(100, '"e"')
    assert headers["Range"] == "bytes=100-" and headers["If-Range"] == '"e"'
    assert headers["Accept-Encoding"] == "identity"


def test_plan_of_a_206_must_start_where_asked() -> None:
    good = httpx2.Headers({"Content-Range": "bytes 100-199/200", "Content-Length": "100", "ETag": '"x"'})
    plan = plan_body(206, good, offset=100)
    assert (plan.start, plan.total, plan.etag) == (100, 200, '"x"')
    with pytest.raises(_Restart):
        plan_body(206, httpx2.Headers({"Content-Range": "bytes 0-199/200"}), offset=100)
    with pytest.raises(_Restart):
        plan_body(206, httpx2.Headers({"Content-Range": "garbage"}), offset=100)
    with pytest.raises(_Restart):
        plan_body(206, httpx2.Headers({"Content-Range": "bytes 100-199/200", "Content-Length": "5"}), offset=100)


def test_plan_of_a_200_ignores_weak_etags_and_chunked_lengths() -> None:
    plan = plan_body(200, httpx2.Headers({"Content-Length": "10", "ETag": 'W/"w"', "Accept-Ranges": "bytes"}), offset=0)
    assert plan.total == 10 and plan.etag is None and plan.accepts_ranges
    assert plan_body(200, httpx2.Headers({"Transfer-Encoding": "chunked"}), offset=0).total is None


@pytest.mark.parametrize(
    ("received", "total", "file_size", "head", "tail", "problem"),
    [
        (10, 11, None, b"%PDF-", b"%%EOF", "promised 11"),
        (10, 10, 12, b"%PDF-", b"%%EOF", "file_size=12"),
        (10, 10, 10, b"<html>", b"%%EOF", "does not start with %PDF"),
        (10, None, None, b"%PDF-", b"stream", "without a PDF trailer"),
    ],
)
def test_incomplete_or_wrong_bodies_are_refused(
    received: int, total: int | None, file_size: int | None, head: bytes, tail: bytes, problem: str
) -> None:
    with pytest.raises(IncompleteDownloadError, match=problem):
        check_complete(received=received, total=total, file_size=file_size, head=head, tail=tail, fmt="pdf", fax_id="f")


def test_whole_bodies_pass() -> None:
    check_complete(received=10, total=10, file_size=10, head=b"%PDF-1", tail=b"", fmt="pdf", fax_id="f")
    check_complete(received=10, total=None, file_size=None, head=b"%PDF-1", tail=b"x%%EOF\n", fmt="pdf", fax_id="f")
    check_complete(received=3, total=3, file_size=None, head=b"II*", tail=b"", fmt="tiff", fax_id="f")


@pytest.mark.parametrize("hostile", ["../x", "..", ".", "", "a/b", "a\\b", "a\x00b", "CON", "-rf", " ", "x" * 999])
def test_safe_component_is_one_plain_name_and_distinct_ids_stay_distinct(hostile: str) -> None:
    name = safe_component(hostile)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in ("", ".", "..") and not name.startswith(".")
    assert len(name) <= 200
    assert safe_component(hostile + "!") != name


def test_safe_filename_keeps_clean_ids_as_they_are() -> None:
    assert safe_filename("fax_received_123", "pdf") == "fax_received_123.pdf"
    assert safe_filename("fax_received_123", "../exe") == "fax_received_123.exe"


def test_template_renders_dates_and_refuses_attribute_access() -> None:
    f = fax(id="../../etc/x")
    path = render_template("{received_at:%Y/%m}/{id}.{ext}", f)
    assert path.parts[:2] == ("2024", "02") and ".." not in path.parts
    with pytest.raises(DestinationError):
        render_template("{id.__class__}", f)
    with pytest.raises(DestinationError):
        render_template("{nope}", f)


def test_cleanup_removes_only_temporary_files_of_dead_processes(tmp_path: Path) -> None:
    dead = tmp_path / ".a.pdf.audian-999999999-abcd.part"
    mine = tmp_path / f".b.pdf.audian-{__import__('os').getpid()}-abcd.part"
    other = tmp_path / "c.part"
    for p in (dead, mine, other):
        p.write_bytes(b"x")
    assert cleanup_partial_files(tmp_path) == [dead]
    assert mine.exists() and other.exists()


# -- against scripted transports -----------------------------------------------------------------

Handler = Callable[[httpx2.Request], httpx2.Response]


def client_for(handler: Handler, max_retries: int = 3) -> FaxClient:
    return FaxClient(
        "k",
        base_url="https://api.test/v2",
        transport=httpx2.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=max_retries, sleep=no_sleep),
    )


async def test_body_without_length_that_ends_early_is_detected(tmp_path: Path) -> None:
    async def body() -> object:
        yield PDF[:1000]  # no Content-Length, no trailer: the connection just closed

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body())  # type: ignore[arg-type]

    async with client_for(handler, max_retries=0) as client:
        with pytest.raises(IncompleteDownloadError, match="trailer"):
            await client.received.download("fax_1", tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []


async def test_server_lying_about_size_against_file_size_is_refused(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=PDF, headers={"Content-Length": str(len(PDF))})

    async with client_for(handler, max_retries=1) as client:
        with pytest.raises(IncompleteDownloadError, match="fax record says"):
            await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax(file_size=len(PDF) + 5))
    assert list(tmp_path.iterdir()) == []


async def test_a_206_starting_elsewhere_restarts_from_zero(tmp_path: Path) -> None:
    calls: list[str | None] = []

    async def first_half() -> object:
        yield PDF[:3000]
        raise httpx2.ReadError("connection reset")

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.headers.get("Range"))
        headers = {"ETag": '"v1"', "Accept-Ranges": "bytes", "Content-Length": str(len(PDF))}
        if len(calls) == 1:
            return httpx2.Response(200, content=first_half(), headers=headers)  # type: ignore[arg-type]
        if len(calls) == 2:  # a broken server: answers the range from byte 0
            bad = {"Content-Range": f"bytes 0-{len(PDF) - 1}/{len(PDF)}", "ETag": '"v1"'}
            return httpx2.Response(206, content=PDF, headers=bad)
        return httpx2.Response(200, content=PDF, headers=headers)

    async with client_for(handler) as client:
        result = await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
    assert calls == [None, "bytes=3000-", None]
    assert (tmp_path / "x.pdf").read_bytes() == PDF
    assert result.sha256 == hashlib.sha256(PDF).hexdigest() and not result.resumed


async def test_a_200_to_a_range_request_starts_the_file_over(tmp_path: Path) -> None:
    calls = 0

    async def cut() -> object:
        yield PDF[:2000]
        raise httpx2.RemoteProtocolError("peer closed")

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        headers = {"ETag": '"v1"', "Accept-Ranges": "bytes", "Content-Length": str(len(PDF))}
        if calls == 1:
            return httpx2.Response(200, content=cut(), headers=headers)  # type: ignore[arg-type]
        return httpx2.Response(200, content=PDF, headers=headers)  # If-Range did not match: whole document

    async with client_for(handler) as client:
        await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
    assert (tmp_path / "x.pdf").read_bytes() == PDF


async def test_a_body_longer_than_promised_is_cut_off(tmp_path: Path) -> None:
    async def endless() -> object:
        yield PDF
        yield b"x" * 100_000

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=endless())  # type: ignore[arg-type]

    async with client_for(handler, max_retries=0) as client:
        with pytest.raises(IncompleteDownloadError, match="more than"):
            await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
    assert list(tmp_path.iterdir()) == []


async def test_cross_origin_redirect_of_a_download_drops_the_key(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen[request.url.host] = request.headers.get("X-Auth-Token")
        if request.url.host == "api.test":
            return httpx2.Response(302, headers={"Location": "https://cdn.example/doc.pdf?sig=1"})
        return httpx2.Response(200, content=PDF, headers={"Content-Length": str(len(PDF))})

    async with client_for(handler) as client:
        await client.received.download("fax_1", tmp_path / "x.pdf")
    assert seen == {"api.test": "k", "cdn.example": None}
