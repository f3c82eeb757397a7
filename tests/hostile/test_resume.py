"""Defect 1: a resumed download never splices two versions of a document.

After a dropped body the SDK resumes with ``Range`` + ``If-Range`` only when the first answer carried
a validator (a strong ``ETag``, else ``Last-Modified``), and keeps the bytes it holds only when the
``206`` carries that same validator and continues at the byte asked for; otherwise it starts again
from byte 0. Every check compares the bytes on disk (or streamed) with the version the server
really holds at the end: a splice of versions A and B equals neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from audian_fax_async import FaxClient, IncompleteDownloadError, OutcomeKind

from .api import Inbox, document_reply, pdf
from .conftest import ClientFactory, Net
from .helpers import BOUND, manifest_lines, partial_files, sha256

SIZE = 20_000
CUT = 8_000
A = pdf(SIZE, "A")
B = pdf(SIZE, "B")
LM_A = "Thu, 01 Jan 2026 00:00:00 GMT"
LM_B = "Fri, 02 Jan 2026 00:00:00 GMT"


@pytest.fixture(scope="module")
def anyio_backend(net: Net) -> object:
    return net.backend


# What the first answer and the lying 206 carry, and the If-Range the resume must send.
CHANGED_VERSION: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "strong-etag": ({"etag": '"A"'}, {"etag": '"B"'}, '"A"'),
    "last-modified-only": ({"last_modified": LM_A}, {"last_modified": LM_B}, LM_A),
    "weak-etag-same-last-modified-changed": (
        {"etag": 'W/"v"', "last_modified": LM_A},
        {"etag": 'W/"v"', "last_modified": LM_B},
        LM_A,
    ),
}


def _changed_version_script(inbox: Inbox, fax_id: str, first: dict[str, Any], second: dict[str, Any]) -> None:
    """A is cut at CUT; the resume gets B's tail as a 206 with B's validator; then B whole."""
    inbox.script(
        fax_id,
        document_reply(A, drop_after=CUT, **first),
        document_reply(B[CUT:], status=206, content_range=f"bytes {CUT}-{SIZE - 1}/{SIZE}", **second),
        document_reply(B, **second),
    )


@pytest.mark.parametrize("kind", list(CHANGED_VERSION))
async def test_download_restarts_from_byte_0_when_the_206_is_of_another_version(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path, kind: str
) -> None:
    first, second, if_range = CHANGED_VERSION[kind]
    fax = inbox.put("fax_changed", A)
    _changed_version_script(inbox, fax.id, first, second)
    target = tmp_path / "fax.pdf"
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            result = await client.received.download(fax.id, target)
    assert target.read_bytes() == B, "the file must be the version the server holds, never a splice of A and B"
    assert result.sha256 == sha256(B)
    assert result.bytes == SIZE
    asked = inbox.downloads_of(fax.id)
    assert len(asked) == 3
    assert asked[1].headers.get("range") == f"bytes={CUT}-"
    assert asked[1].headers.get("if-range") == if_range
    assert "range" not in asked[2].headers, "after a 206 of another version the download starts again at byte 0"
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize(
    "first",
    [{}, {"etag": '"A"', "accept_ranges": False}, {"etag": 'W/"A"'}],
    ids=["no-validator", "no-accept-ranges", "weak-etag-only"],
)
async def test_download_without_a_validator_restarts_from_byte_0(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path, first: dict[str, Any]
) -> None:
    fax = inbox.put("fax_novalidator", A)
    # A server that would hand out a tail of B to any range request: it must never be asked for one.
    inbox.script(
        fax.id,
        document_reply(A, drop_after=CUT, **first),
        document_reply(B[CUT:], status=206, content_range=f"bytes {CUT}-{SIZE - 1}/{SIZE}", etag='"A"'),
    )
    target = tmp_path / "fax.pdf"
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            result = await client.received.download(fax.id, target)
    assert target.read_bytes() in (A, B)  # B only as a whole document (the 206 refused, then a retry)
    assert result.sha256 == sha256(target.read_bytes())
    assert all("range" not in r.headers for r in inbox.downloads_of(fax.id))


async def test_download_refuses_a_206_that_starts_elsewhere(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    fax = inbox.put("fax_elsewhere", A)
    inbox.script(
        fax.id,
        document_reply(A, drop_after=CUT, etag=fax.etag),
        # Same validator, but the range starts 1,000 bytes later than asked: appending it would lose them.
        document_reply(
            A[CUT + 1000 :], status=206, content_range=f"bytes {CUT + 1000}-{SIZE - 1}/{SIZE}", etag=fax.etag
        ),
    )
    target = tmp_path / "fax.pdf"
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            await client.received.download(fax.id, target)
    assert target.read_bytes() == A
    asked = inbox.downloads_of(fax.id)
    assert "range" not in asked[-1].headers


async def test_download_refuses_a_206_whose_total_changed_under_the_same_validator(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    """A 206 that keeps the ETag but continues a longer document than the first answer promised
    contradicts that answer: its bytes are not the rest of the document the file began with."""
    longer = pdf(SIZE + 10_000, "B")
    fax = inbox.put("fax_total", A)
    inbox.script(
        fax.id,
        document_reply(A, drop_after=CUT, etag=fax.etag),
        document_reply(
            longer[CUT:], status=206, content_range=f"bytes {CUT}-{len(longer) - 1}/{len(longer)}", etag=fax.etag
        ),
    )
    target = tmp_path / "fax.pdf"  # a file path: no fax record, so no file_size to compare with
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            result = await client.received.download(fax.id, target)
    assert target.read_bytes() == A, "A's first 8,000 bytes followed by another document's tail is no document"
    assert result.bytes == SIZE


async def test_download_resumes_where_the_206_matches(make_client: ClientFactory, inbox: Inbox, tmp_path: Path) -> None:
    """The control: with a matching validator the bytes held are kept and only the rest is fetched."""
    fax = inbox.put("fax_resume", A)
    inbox.script(fax.id, document_reply(A, drop_after=CUT, etag=fax.etag, last_modified=LM_A))
    target = tmp_path / "fax.pdf"
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            result = await client.received.download(fax.id, target)
    assert target.read_bytes() == A
    assert result.resumed
    asked = inbox.downloads_of(fax.id)
    assert [r.headers.get("range") for r in asked] == [None, f"bytes={CUT}-"]
    assert asked[1].headers.get("if-range") == fax.etag


async def test_download_all_records_the_real_version_after_a_lying_206(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    others = inbox.add(3)
    fax = inbox.put("fax_changed", A)
    first, second, _ = CHANGED_VERSION["strong-etag"]
    _changed_version_script(inbox, fax.id, first, second)
    with anyio.fail_after(BOUND):
        async with make_client() as client, client.received.download_all(tmp_path) as outcomes:
            done = {o.fax.id: o async for o in outcomes}
    assert all(o.kind is OutcomeKind.DOWNLOADED for o in done.values()), done
    changed = done[fax.id]
    assert changed.path is not None and changed.path.read_bytes() == B
    assert changed.sha256 == sha256(B)
    recorded = {line["id"]: line for line in manifest_lines(tmp_path)}
    assert recorded[fax.id]["sha256"] == sha256(B) and recorded[fax.id]["bytes"] == SIZE
    for other in others:
        assert recorded[other.id]["sha256"] == other.sha256
    assert partial_files(tmp_path) == []


async def stream_into(received: bytearray, client: FaxClient, fax_id: str) -> None:
    """Stream ``fax_id`` into ``received`` (what was handed out stays there when it fails)."""
    async with client, client.received.stream(fax_id) as chunks:
        async for chunk in chunks:
            received += chunk


async def test_stream_resumes_where_the_206_matches(make_client: ClientFactory, inbox: Inbox) -> None:
    fax = inbox.put("fax_stream", A)
    inbox.script(fax.id, document_reply(A, drop_after=CUT, etag=fax.etag))
    with anyio.fail_after(BOUND):
        async with make_client() as client, client.received.stream(fax.id) as chunks:
            data = b"".join([chunk async for chunk in chunks])
    assert data == A
    assert [r.headers.get("range") for r in inbox.downloads_of(fax.id)] == [None, f"bytes={CUT}-"]


async def test_stream_never_hands_out_bytes_of_another_version(make_client: ClientFactory, inbox: Inbox) -> None:
    fax = inbox.put("fax_stream_changed", A)
    first, second, _ = CHANGED_VERSION["strong-etag"]
    _changed_version_script(inbox, fax.id, first, second)
    received = bytearray()
    with anyio.fail_after(BOUND), pytest.raises(IncompleteDownloadError):
        await stream_into(received, make_client(), fax.id)
    assert bytes(received) == A[:CUT], "only A's bytes were handed out; B's tail was refused"


async def test_stream_without_a_validator_raises_incomplete_after_a_break(
    make_client: ClientFactory, inbox: Inbox
) -> None:
    """Bytes already handed to the caller cannot be taken back: a break that cannot be resumed is an
    IncompleteDownloadError (never a silent restart that would repeat the first bytes)."""
    fax = inbox.put("fax_stream_novalidator", A)
    inbox.script(fax.id, document_reply(A, drop_after=CUT))
    received = bytearray()
    with anyio.fail_after(BOUND), pytest.raises(IncompleteDownloadError):
        await stream_into(received, make_client(), fax.id)
    assert bytes(received) == A[:CUT]
    assert all("range" not in r.headers for r in inbox.downloads_of(fax.id))
