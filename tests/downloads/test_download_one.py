"""One download: atomic, verified, resumable, safe with hostile ids and bad destinations."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from audian_fax_async import (
    APIConnectionError,
    DestinationError,
    FaxClient,
    IncompleteDownloadError,
    InvalidRequestError,
    NotFoundError,
)
from audian_fax_async.emulator import AdminClient

from .conftest import ClientFactory, assert_matches_emulator, partial_files


async def first_fax_id(client: FaxClient) -> str:
    page = await client.received.list(limit=1)
    return page.faxes[0].id


async def test_download_into_folder_names_file_after_fax_and_matches_document(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    fax_id = await first_fax_id(client)
    result = await client.received.download(fax_id, tmp_path)
    assert result.path == tmp_path / f"{fax_id}.pdf"
    assert result.bytes == result.path.stat().st_size
    assert result.fax is not None and result.fax.file_size == result.bytes
    assert_matches_emulator(audian_admin, audian_api_key, fax_id, result.path)
    assert result.path.read_bytes().startswith(b"%PDF-")
    assert os.listdir(tmp_path) == [result.path.name]


async def test_download_to_file_path_refuses_to_overwrite_unless_asked(client: FaxClient, tmp_path: Path) -> None:
    fax_id = await first_fax_id(client)
    target = tmp_path / "fax.pdf"
    target.write_bytes(b"keep me")
    with pytest.raises(DestinationError, match="already exists"):
        await client.received.download(fax_id, target)
    assert target.read_bytes() == b"keep me"
    result = await client.received.download(fax_id, target, overwrite=True)
    assert target.read_bytes().startswith(b"%PDF-") and result.bytes == target.stat().st_size
    assert partial_files(tmp_path) == []


async def test_dropped_connection_resumes_with_range_and_file_is_identical(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    fax_id = await first_fax_id(client)
    audian_admin.script("download", ["drop"], key=audian_api_key)
    result = await client.received.download(fax_id, tmp_path)
    assert result.resumed, "the second attempt should continue where the first broke off"
    assert result.attempts == 2
    assert_matches_emulator(audian_admin, audian_api_key, fax_id, result.path)
    statuses = audian_admin.stats(audian_api_key)["requests"]["download"]
    assert statuses.get("206") == 1


async def test_truncated_body_is_never_saved_as_good(
    make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    async with make_client(max_retries=0) as client:
        fax_id = await first_fax_id(client)
        audian_admin.script("download", ["truncate"], key=audian_api_key)
        with pytest.raises((APIConnectionError, IncompleteDownloadError)):
            await client.received.download(fax_id, tmp_path)
    assert os.listdir(tmp_path) == []


async def test_truncated_body_is_retried_to_a_whole_file(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    fax_id = await first_fax_id(client)
    audian_admin.script("download", ["truncate", "truncate", 503])
    result = await client.received.download(fax_id, tmp_path)
    assert_matches_emulator(audian_admin, audian_api_key, fax_id, result.path)


@pytest.mark.parametrize("hostile", ["..\\..\\evil", ".hidden", "CON", "a:b*?<>|", "x" * 250])
async def test_hostile_ids_never_write_outside_the_folder(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path, hostile: str
) -> None:
    inside = tmp_path / "inside"
    inside.mkdir()
    audian_admin.inject(audian_api_key, faxes=[{"id": hostile, "pages": 1}])
    result = await client.received.download(hostile, inside)
    assert result.path.parent == inside
    assert not result.path.name.startswith(".")
    assert_matches_emulator(audian_admin, audian_api_key, hostile, result.path)
    for path in tmp_path.rglob("*"):
        assert path == inside or path.parent == inside, f"{path} escaped the folder"


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    yield body


@pytest.mark.parametrize("hostile", ["../../etc/passwd_x", "a/b", "/abs", "../..", "é ü/ß"])
async def test_ids_with_separators_are_one_encoded_segment_and_one_safe_file(hostile: str, tmp_path: Path) -> None:
    pdf = b"%PDF-1.4\n" + b"x" * 100 + b"\n%%EOF\n"
    seen: list[bytes] = []

    def serve(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.raw_path)
        if request.url.raw_path.endswith(b"/download"):
            return httpx2.Response(200, content=streamed(pdf), headers={"Content-Length": str(len(pdf))})
        fax = {
            "id": hostile, "from_number": "+1", "to_number": "+2", "pages": 1,
            "received_at": "2024-02-04T13:15:00Z", "status": "received", "file_size": len(pdf),
        }  # fmt: skip
        return httpx2.Response(200, json=fax)

    inside = tmp_path / "inside"
    inside.mkdir()
    async with FaxClient("k", base_url="https://api.test/v2", transport=httpx2.MockTransport(serve)) as client:
        result = await client.received.download(hostile, inside)
    assert result.path.parent == inside
    assert result.path.read_bytes() == pdf
    assert all(path.count(b"/") == 4 + path.endswith(b"/download") for path in seen), seen
    for path in tmp_path.rglob("*"):
        assert path == inside or path.parent == inside, f"{path} escaped the folder"


@pytest.mark.parametrize("hostile", ["..", ".", "nul\x00byte", "", "line\nbreak"])
async def test_unusable_ids_are_refused_before_sending(client: FaxClient, tmp_path: Path, hostile: str) -> None:
    with pytest.raises(InvalidRequestError):
        await client.received.download(hostile, tmp_path)
    assert os.listdir(tmp_path) == []


async def test_unknown_fax_is_a_not_found_error_and_leaves_nothing(client: FaxClient, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        await client.received.download("fax_received_missing", tmp_path / "x.pdf")
    assert os.listdir(tmp_path) == []


async def test_missing_folder_is_a_destination_error(client: FaxClient, tmp_path: Path) -> None:
    fax_id = await first_fax_id(client)
    with pytest.raises(DestinationError, match="does not exist"):
        await client.received.download(fax_id, tmp_path / "nope" / "x.pdf")


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


async def test_full_disk_gives_a_clear_error_and_no_partial_file(
    client: FaxClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fax_id = await first_fax_id(client)
    small = tmp_path / "small"
    mounted = _mount_tmpfs(small, "size=64k")
    if not mounted:
        # Not root: fake a device that fills up after 64 KiB of writes.
        small.mkdir(exist_ok=True)
        import audian_fax_async._download as dl

        real_open = dl._FileSink._open

        def tiny_disk(self: dl._FileSink, *args: Any, **kwargs: Any) -> Any:
            handle = real_open(self, *args, **kwargs)
            written = 0
            real_write = handle.write

            def write(data: bytes) -> int:
                nonlocal written
                written += len(data)
                if written > 64 * 1024:
                    raise OSError(28, "No space left on device")
                return real_write(data)

            handle.write = write  # type: ignore[method-assign,assignment]
            return handle

        monkeypatch.setattr(dl._FileSink, "_open", tiny_disk)
    try:
        with pytest.raises(DestinationError, match="no space left"):
            await client.received.download(fax_id, small)
        assert os.listdir(small) == []
    finally:
        if mounted:
            _umount(small)


async def test_read_only_folder_gives_a_clear_error(client: FaxClient, tmp_path: Path) -> None:
    fax_id = await first_fax_id(client)
    folder = tmp_path / "ro"
    if _mount_tmpfs(folder, "ro,size=64k"):
        try:
            with pytest.raises(DestinationError, match=r"read-only|permission denied"):
                await client.received.download(fax_id, folder)
        finally:
            _umount(folder)
    else:
        folder.mkdir(exist_ok=True)
        folder.chmod(0o500)  # effective for a non-root user
        try:
            with pytest.raises(DestinationError, match="permission denied"):
                await client.received.download(fax_id, folder)
        finally:
            folder.chmod(0o700)


async def test_stream_yields_the_document_and_holds_a_slot(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str
) -> None:
    fax_id = await first_fax_id(client)
    audian_admin.script("download", ["drop"], key=audian_api_key)
    chunks: list[bytes] = []
    async with client.received.stream(fax_id) as document:
        assert client.limiter.statistics(client.account).in_use == 1
        async for chunk in document:
            chunks.append(chunk)
    assert client.limiter.statistics(client.account).in_use == 0
    import hashlib

    body = b"".join(chunks)
    assert hashlib.sha256(body).hexdigest() == audian_admin.document_sha256(audian_api_key, fax_id)
    assert document.sha256 == hashlib.sha256(body).hexdigest()
    assert document.bytes_read == len(body) == document.total
