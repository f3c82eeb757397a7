"""A saved fax survives a crash: the order of the durable commit, and what a failing fsync leaves.

Each file system call the commit makes is recorded (``os.fsync``, ``os.link``/``os.replace``,
``os.unlink``, ``os.write``, with the file each descriptor names), for the files under the test's
folder only. The order must be: the temporary file fsynced, moved to its name, the folder fsynced,
then (in ``download_all``) the manifest line written and fsynced.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from audian_fax_async import DestinationError, FaxClient, OutcomeKind, RetryPolicy
from audian_fax_async._manifest import MANIFEST_NAME

from .conftest import no_sleep

PDF = b"%PDF-1.4\n" + b"\x00\xff" * 20_000 + b"\n%%EOF\n"
FAX = {
    "id": "fax_1",
    "from_number": "+12025551234",
    "to_number": "+15551234567",
    "pages": 1,
    "received_at": "2024-02-04T13:15:00Z",
    "status": "received",
    "file_size": len(PDF),
}


async def chunks() -> AsyncIterator[bytes]:
    for start in range(0, len(PDF), 8192):
        yield PDF[start : start + 8192]


def api(request: httpx2.Request) -> httpx2.Response:
    path = request.url.path
    if path.endswith("/download"):
        return httpx2.Response(200, content=chunks(), headers={"Content-Length": str(len(PDF)), "ETag": '"v1"'})
    if path.endswith("/fax/received"):
        return httpx2.Response(200, json={"faxes": [FAX], "total": 1, "limit": 100, "offset": 0})
    if request.method == "PUT":
        return httpx2.Response(200, json={**FAX, "status": "processed"})
    return httpx2.Response(200, json=FAX)


def client() -> FaxClient:
    return FaxClient(
        "k",
        base_url="https://api.test/v2",
        transport=httpx2.MockTransport(api),
        retry_policy=RetryPolicy(max_retries=0, sleep=no_sleep),
    )


class FileCalls:
    """Records the file system calls made on paths under ``root``; ``fail`` may raise for one."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.calls: list[tuple[str, str]] = []
        self.fail: Callable[[str, str], OSError | None] = lambda op, name: None
        for name in ("fsync", "write"):
            monkeypatch.setattr(os, name, self._on_fd(name, getattr(os, name)))
        for name in ("link", "replace", "rename"):
            monkeypatch.setattr(os, name, self._on_paths(name, getattr(os, name)))
        monkeypatch.setattr(os, "unlink", self._on_path("unlink", os.unlink))

    def _name(self, path: str | os.PathLike[str]) -> str | None:
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix() or "."
        except ValueError:
            return None

    def _record(self, op: str, name: str | None) -> None:
        if name is None:
            return
        error = self.fail(op, name)
        self.calls.append((op, name))
        if error is not None:
            raise error

    def _on_fd(self, op: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(fd: int, *args: Any) -> Any:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = None
            self._record(op, self._name(target) if target else None)
            return real(fd, *args)

        return call

    def _on_paths(self, op: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            names = (self._name(src), self._name(dst))
            self._record(op, f"{names[0]} -> {names[1]}" if None not in names else None)
            return real(src, dst, *args, **kwargs)

        return call

    def _on_path(self, op: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            self._record(op, self._name(path))
            return real(path, *args, **kwargs)

        return call

    def ops(self) -> list[str]:
        """The calls as ``op name`` with temporary names shown as ``TEMP``."""
        return [f"{op} {_generic(name)}" for op, name in self.calls]


def _generic(name: str) -> str:
    return " -> ".join("TEMP" if part.endswith(".part") else part for part in name.split(" -> "))


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileCalls:
    return FileCalls(tmp_path, monkeypatch)


def placed(ops: list[str]) -> list[str]:
    """The moves into place (a hard link then the temporary name's removal, or a rename)."""
    return [op for op in ops if op.split()[0] in ("link", "replace", "rename")]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- the order ---------------------------------------------------------------------------------


async def test_one_download_fsyncs_the_file_then_moves_it_then_fsyncs_the_folder(
    tmp_path: Path, calls: FileCalls
) -> None:
    async with client() as fax_client:
        result = await fax_client.received.download("fax_1", tmp_path)

    ops = [op for op in calls.ops() if not op.startswith("write ")]
    assert placed(ops) in (["link TEMP -> fax_1.pdf"], ["replace TEMP -> fax_1.pdf"], ["rename TEMP -> fax_1.pdf"])
    move = ops.index(placed(ops)[0])
    assert ops[:move] == ["fsync TEMP"]  # the whole file is on disk before it gets its name
    assert ops[move + 1 :] in (["unlink TEMP", "fsync ."], ["fsync ."])  # then the folder's entry
    assert result.path.read_bytes() == PDF and files_in(tmp_path) == ["fax_1.pdf"]


async def test_download_all_writes_and_fsyncs_the_manifest_line_after_the_file_stands(
    tmp_path: Path, calls: FileCalls
) -> None:
    async with client() as fax_client, fax_client.received.download_all(tmp_path) as outcomes:
        kinds = [outcome.kind async for outcome in outcomes]

    assert kinds == [OutcomeKind.DOWNLOADED]
    ops = calls.ops()
    assert ops == [
        "fsync TEMP",
        *placed(ops),
        *(["unlink TEMP"] if placed(ops)[0].startswith("link") else []),
        "fsync .",
        f"write {MANIFEST_NAME}",
        f"fsync {MANIFEST_NAME}",
    ]
    [entry] = [json.loads(raw) for raw in (tmp_path / MANIFEST_NAME).read_text().splitlines()]
    assert (entry["id"], entry["path"], entry["bytes"]) == ("fax_1", "fax_1.pdf", len(PDF))


# -- a failing fsync -----------------------------------------------------------------------------


def eio_on(op: str, which: Callable[[str], bool]) -> Callable[[str, str], OSError | None]:
    def fail(called: str, name: str) -> OSError | None:
        return OSError(errno.EIO, "Input/output error") if called == op and which(name) else None

    return fail


async def test_an_eio_from_the_files_fsync_fails_the_download_and_leaves_no_file(
    tmp_path: Path, calls: FileCalls
) -> None:
    calls.fail = eio_on("fsync", lambda name: name.endswith(".part"))
    async with client() as fax_client:
        with pytest.raises(DestinationError, match="I/O error"):
            await fax_client.received.download("fax_1", tmp_path)

    assert files_in(tmp_path) == []
    assert placed(calls.ops()) == [], "a file whose data may not be on disk was given its name"


async def test_an_eio_from_the_folders_fsync_fails_the_download_and_leaves_no_temporary_file(
    tmp_path: Path, calls: FileCalls
) -> None:
    calls.fail = eio_on("fsync", lambda name: name == ".")
    async with client() as fax_client:
        with pytest.raises(DestinationError, match="I/O error"):
            await fax_client.received.download("fax_1", tmp_path)

    assert [name for name in files_in(tmp_path) if name.endswith(".part")] == []


@pytest.mark.parametrize("failing", ["file", "folder", "manifest"])
async def test_in_download_all_an_eio_fails_that_fax_and_records_no_manifest_line(
    tmp_path: Path, calls: FileCalls, failing: str
) -> None:
    which = {
        "file": lambda n: n.endswith(".part"),
        "folder": lambda n: n == ".",
        "manifest": lambda n: n == MANIFEST_NAME,
    }
    calls.fail = eio_on("fsync", which[failing])
    async with client() as fax_client, fax_client.received.download_all(tmp_path) as outcomes:
        [outcome] = [outcome async for outcome in outcomes]

    assert outcome.kind is OutcomeKind.FAILED and outcome.path is None
    assert isinstance(outcome.error, DestinationError)
    assert [name for name in files_in(tmp_path) if name.endswith(".part")] == []
    manifest = tmp_path / MANIFEST_NAME
    lines = manifest.read_text().splitlines() if manifest.exists() else []
    # A line that was written but not fsynced does not count as recorded: a rerun checks the file.
    assert lines == [] or failing == "manifest"
    if failing == "file":
        assert files_in(tmp_path) in ([], [MANIFEST_NAME])
