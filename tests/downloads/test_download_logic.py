"""Download logic without the emulator: response plans, completeness, lying servers, safe names."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
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
from audian_fax_async._body import BodyPlan, Restart, check_complete, plan_body, range_headers
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


def test_range_headers_ask_for_identity_and_resume_only_with_an_offset_and_a_validator() -> None:
    assert "Range" not in range_headers(0, '"e"')
    assert "Range" not in range_headers(100, None)  # nothing to resume against: from byte 0
    headers = range_headers(100, '"e"')
    assert headers["Range"] == "bytes=100-" and headers["If-Range"] == '"e"'
    assert headers["Accept-Encoding"] == "identity"


def test_plan_of_a_206_must_start_where_asked_and_carry_the_same_validator() -> None:
    good = httpx2.Headers({"Content-Range": "bytes 100-199/200", "Content-Length": "100", "ETag": '"x"'})
    plan = plan_body(206, good, offset=100, validator='"x"')
    assert (plan.start, plan.total, plan.validator) == (100, 200, '"x"')
    refused = [
        ({"Content-Range": "bytes 0-199/200", "ETag": '"x"'}, "continue"),
        ({"Content-Range": "garbage", "ETag": '"x"'}, "Content-Range"),
        ({"Content-Range": "bytes 100-199/200", "Content-Length": "5", "ETag": '"x"'}, "Content-Length"),
        ({"Content-Range": "bytes 100-199/200", "ETag": '"y"'}, "validator changed"),
    ]
    for headers, reason in refused:
        with pytest.raises(Restart, match=reason):
            plan_body(206, httpx2.Headers(headers), offset=100, validator='"x"')
    with pytest.raises(Restart, match="whole document"):
        plan_body(206, good, offset=0)


def test_plan_of_a_200_resumes_against_a_strong_etag_or_last_modified_only() -> None:
    weak = httpx2.Headers({"Content-Length": "10", "ETag": 'W/"w"', "Accept-Ranges": "bytes"})
    assert plan_body(200, weak, offset=0) == BodyPlan(start=0, total=10, validator=None)
    dated = httpx2.Headers({"Last-Modified": "Sun, 04 Feb 2024 13:15:00 GMT", "Accept-Ranges": "bytes"})
    assert plan_body(200, dated, offset=0).validator == "Sun, 04 Feb 2024 13:15:00 GMT"
    no_ranges = httpx2.Headers({"ETag": '"s"'})
    assert plan_body(200, no_ranges, offset=0).validator is None
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


async def chunks_of(body: bytes, *, then: Exception | None = None) -> AsyncIterator[bytes]:
    """``body`` in 1 KiB chunks as a network stream gives it, then ``then`` raised if given."""
    for start in range(0, len(body), 1024):
        yield body[start : start + 1024]
    if then is not None:
        raise then


def document(
    body: bytes,
    *,
    status: int = 200,
    length: int | None = None,
    then: Exception | None = None,
    headers: Mapping[str, str] | None = None,
    **more: str,
) -> httpx2.Response:
    """A streamed document response; ``Content-Length`` is ``length`` (default: the body's).
    Header names may be spelt with underscores (``Accept_Ranges``)."""
    sent = {"Content-Length": str(len(body) if length is None else length)}
    sent.update({name.replace("_", "-"): value for name, value in {**(headers or {}), **more}.items()})
    return httpx2.Response(status, content=chunks_of(body, then=then), headers=sent)


def broken_off(at: int, **headers: str) -> httpx2.Response:
    """The first ``at`` bytes of the document under its full ``Content-Length``, then a reset."""
    return document(PDF[:at], length=len(PDF), then=httpx2.ReadError("connection reset"), headers=headers)


async def test_a_response_whose_body_the_transport_already_read_is_downloaded(tmp_path: Path) -> None:
    # httpx2.MockTransport with content=bytes (as a user's test would write it) hands over a
    # response whose body is already in memory: the SDK must still read it through the public API.
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=PDF, headers={"Content-Type": "application/pdf"})

    async with client_for(handler, max_retries=0) as client:
        result = await client.received.download("fax_1", tmp_path / "x.pdf")
        streamed = b""
        async with client.received.stream("fax_1") as chunks:
            async for chunk in chunks:
                streamed += chunk
    assert (tmp_path / "x.pdf").read_bytes() == PDF == streamed
    assert result.bytes == len(PDF)


async def test_body_without_length_that_ends_early_is_detected(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        # No Content-Length and no trailer: the connection just closed.
        return httpx2.Response(200, content=chunks_of(PDF[:1000]))

    async with client_for(handler, max_retries=0) as client:
        with pytest.raises(IncompleteDownloadError, match="trailer"):
            await client.received.download("fax_1", tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []


async def test_server_lying_about_size_against_file_size_is_refused(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return document(PDF)

    async with client_for(handler, max_retries=1) as client:
        with pytest.raises(IncompleteDownloadError, match="fax record says"):
            await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax(file_size=len(PDF) + 5))
    assert list(tmp_path.iterdir()) == []


async def test_a_dropped_body_resumes_with_range_and_if_range_and_the_file_is_whole(tmp_path: Path) -> None:
    calls: list[tuple[str | None, str | None]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append((request.headers.get("Range"), request.headers.get("If-Range")))
        if len(calls) == 1:
            return document(
                PDF[:3072], length=len(PDF), then=httpx2.ReadError("reset"), ETag='"v1"', Accept_Ranges="bytes"
            )
        rest = PDF[3072:]
        return document(rest, status=206, ETag='"v1"', Content_Range=f"bytes 3072-{len(PDF) - 1}/{len(PDF)}")

    async with client_for(handler) as client:
        result = await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
    assert calls == [(None, None), ("bytes=3072-", '"v1"')]
    assert (tmp_path / "x.pdf").read_bytes() == PDF
    assert result.resumed and result.attempts == 2 and result.sha256 == hashlib.sha256(PDF).hexdigest()


async def test_a_document_with_only_last_modified_resumes_against_it(tmp_path: Path) -> None:
    modified = "Sun, 04 Feb 2024 13:15:00 GMT"
    calls: list[str | None] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.headers.get("If-Range"))
        if len(calls) == 1:
            cut = httpx2.RemoteProtocolError("peer closed")
            return document(PDF[:2048], length=len(PDF), then=cut, Last_Modified=modified, Accept_Ranges="bytes")
        span = f"bytes 2048-{len(PDF) - 1}/{len(PDF)}"
        return document(PDF[2048:], status=206, Last_Modified=modified, Content_Range=span)

    async with client_for(handler) as client:
        result = await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
    assert calls == [None, modified]
    assert (tmp_path / "x.pdf").read_bytes() == PDF and result.resumed


async def test_without_a_validator_a_dropped_body_starts_again_from_byte_zero(tmp_path: Path) -> None:
    ranges: list[str | None] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        ranges.append(request.headers.get("Range"))
        if len(ranges) == 1:  # no ETag, no Last-Modified: nothing to resume against
            return document(PDF[:2048], length=len(PDF), then=httpx2.ReadError("reset"), Accept_Ranges="bytes")
        return document(PDF, Accept_Ranges="bytes")

    async with client_for(handler) as client:
        result = await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
    assert ranges == [None, None]
    assert (tmp_path / "x.pdf").read_bytes() == PDF and not result.resumed


@pytest.mark.parametrize(
    "bad_206",
    [
        {"Content_Range": f"bytes 0-{len(PDF) - 1}/{len(PDF)}", "ETag": '"v1"'},  # from byte 0
        {"Content_Range": f"bytes 3072-{len(PDF) - 1}/{len(PDF)}", "ETag": '"v2"'},  # another version
    ],
    ids=["starts-elsewhere", "changed-etag"],
)
async def test_a_206_that_does_not_continue_the_same_document_restarts_from_zero(
    tmp_path: Path, bad_206: dict[str, str]
) -> None:
    calls: list[str | None] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.headers.get("Range"))
        if len(calls) == 1:
            return document(
                PDF[:3072], length=len(PDF), then=httpx2.ReadError("reset"), ETag='"v1"', Accept_Ranges="bytes"
            )
        if len(calls) == 2:
            start = int(bad_206["Content_Range"].split()[1].split("-")[0])
            return document(b"X" * (len(PDF) - start), status=206, headers=bad_206)
        return document(PDF, ETag='"v2"', Accept_Ranges="bytes")

    async with client_for(handler) as client:
        result = await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
    assert calls == [None, "bytes=3072-", None]
    assert (tmp_path / "x.pdf").read_bytes() == PDF  # never a splice of two versions
    assert result.sha256 == hashlib.sha256(PDF).hexdigest() and not result.resumed


async def test_a_200_to_a_range_request_starts_the_file_over(tmp_path: Path) -> None:
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            cut = httpx2.RemoteProtocolError("peer closed")
            return document(PDF[:2048], length=len(PDF), then=cut, ETag='"v1"', Accept_Ranges="bytes")
        return document(PDF, ETag='"v1"', Accept_Ranges="bytes")  # If-Range did not match: whole document

    async with client_for(handler) as client:
        await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
    assert (tmp_path / "x.pdf").read_bytes() == PDF


async def test_a_body_longer_than_promised_is_cut_off(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=chunks_of(PDF + b"x" * 100_000))

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
        return document(PDF)

    async with client_for(handler) as client:
        await client.received.download("fax_1", tmp_path / "x.pdf")
    assert seen == {"api.test": "k", "cdn.example": None}


async def test_downloads_and_streams_retry_through_the_one_engine_and_log_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="audian_fax_async")
    served = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal served
        served += 1
        if served % 2:  # every first attempt breaks off; the second resumes
            return broken_off(4096, ETag='"v1"', Accept_Ranges="bytes")
        span = f"bytes 4096-{len(PDF) - 1}/{len(PDF)}"
        return document(PDF[4096:], status=206, ETag='"v1"', Content_Range=span)

    async with client_for(handler) as client:
        await client.received.download("fax_1", tmp_path / "x.pdf", fax=fax())
        async with client.received.stream("fax_1") as stream:
            streamed = b"".join([chunk async for chunk in stream])

    assert (tmp_path / "x.pdf").read_bytes() == PDF == streamed
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert [r.getMessage().split(" in ")[0] for r in retries] == ["retrying download fax_1", "retrying stream fax_1"]
    assert all(r.levelno == logging.INFO and "ReadError" in r.getMessage() for r in retries)
