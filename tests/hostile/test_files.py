"""Defects 2, 14 and 15, and what a crash leaves: the SDK's files in a folder an attacker (or a full
disk, or ``kill -9``) has touched.

* 2: the manifest is opened without following symlinks and must be a regular file, or the run stops
  with ``DestinationError`` before writing anything; a symlink at a document's path is never written
  through.
* 14: a manifest line that is hostile (``1e400``, ``Infinity``, deep nesting, huge) is skipped with a
  warning; the lines after it still count.
* 15: every append starts on a fresh line, so a torn last line never swallows the next entry.
* Crash leftovers: a dead process's temporary file is swept; a file that stands without its manifest
  line is adopted when it is the whole document, and never overwritten when it is not.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import anyio
import pytest

from audian_fax_async import DestinationError, DownloadOutcome, FaxClient, Manifest, OutcomeKind, RetryPolicy

from .api import Fax, Inbox, document_reply
from .conftest import ClientFactory, make_transport, no_sleep
from .helpers import BOUND, manifest_lines, partial_files, sha256
from .server import HostileServer, Reply, Request

#: A pid no process can have (above any pid_max).
DEAD_PID = 999_999_999


def manifest_path(folder: Path) -> Path:
    return Manifest(folder).path


async def run_all(client: FaxClient, folder: Path) -> dict[str, DownloadOutcome]:
    with anyio.fail_after(BOUND):
        async with client.received.download_all(folder) as outcomes:
            return {o.fax.id: o async for o in outcomes}


def _file(folder: Path, fax: Fax) -> Path:
    return folder / f"{fax.id}.pdf"


# -- 2: symlinks and other things at the manifest's path ------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
async def test_a_symlink_at_the_manifest_path_is_refused_and_never_written_through(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path, dangling: bool
) -> None:
    inbox.add(3)
    dest, outside = tmp_path / "dest", tmp_path / "elsewhere.jsonl"
    dest.mkdir()
    if not dangling:
        outside.write_bytes(b"not yours\n")
    manifest_path(dest).symlink_to(outside)
    async with make_client() as client:
        with pytest.raises(DestinationError, match="manifest"):
            await run_all(client, dest)
    if dangling:
        assert not outside.exists(), "a dangling link was followed and its target created"
    else:
        assert outside.read_bytes() == b"not yours\n"
    assert inbox.downloads.hits == 0, "nothing is downloaded into a folder whose manifest cannot be trusted"


async def test_a_directory_at_the_manifest_path_is_refused(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    inbox.add(1)
    manifest_path(tmp_path).mkdir()
    async with make_client() as client:
        with pytest.raises(DestinationError, match="not a regular file"):
            await run_all(client, tmp_path)
    assert inbox.downloads.hits == 0


async def test_a_fifo_at_the_manifest_path_is_refused_without_blocking(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    """Opening a FIFO for reading waits for a writer: a manifest planted as one must not hang the run.
    A watchdog thread unblocks it after a while, so a hang shows as a failure, not a stuck suite."""
    inbox.add(1)
    fifo = manifest_path(tmp_path)
    os.mkfifo(fifo)
    finished, unblocked = threading.Event(), threading.Event()

    def watchdog() -> None:
        if not finished.wait(1.0):  # a refusal takes milliseconds
            unblocked.set()
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # lets a reader blocked in open() go

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        async with make_client() as client:
            with pytest.raises(DestinationError, match="not a regular file"):
                await run_all(client, tmp_path)
    finally:
        finished.set()
    assert not unblocked.is_set(), "download_all blocked opening a FIFO planted at the manifest's path"
    assert inbox.downloads.hits == 0


async def test_a_symlink_planted_during_the_run_is_not_followed_by_the_first_manifest_line(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    """The manifest is opened for appending at the first line; a link planted after the run began
    is refused then too (O_NOFOLLOW at every open)."""
    inbox.add(2)
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_bytes(b"not yours\n")
    dest = tmp_path / "dest"
    planted = False

    def plant(progress: object) -> None:
        nonlocal planted
        if not planted:  # the first progress report: the folder exists, nothing is committed yet
            planted = True
            manifest_path(dest).symlink_to(outside)

    async with make_client() as client:
        with anyio.fail_after(BOUND):
            async with client.received.download_all(dest, on_progress=plant) as outcomes:
                done = [o async for o in outcomes]
    assert planted
    assert outside.read_bytes() == b"not yours\n"
    assert all(isinstance(o.error, DestinationError) for o in done), done
    assert manifest_path(dest).is_symlink()


@pytest.mark.parametrize("overwrite", [False, True])
async def test_a_symlink_at_a_documents_path_is_never_written_through(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path, overwrite: bool
) -> None:
    (fax,) = inbox.add(1)
    outside = tmp_path / "elsewhere.pdf"
    outside.write_bytes(b"not yours")
    dest = tmp_path / "dest"
    dest.mkdir()
    link = _file(dest, fax)
    link.symlink_to(outside)
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            if overwrite:
                await client.received.download(fax.id, link, overwrite=True)
                assert not link.is_symlink() and link.read_bytes() == fax.document
            else:
                with pytest.raises(DestinationError):
                    await client.received.download(fax.id, link)
                done = await run_all(client, dest)
                assert isinstance(done[fax.id].error, DestinationError)
    assert outside.read_bytes() == b"not yours"
    assert partial_files(dest) == []


# -- 14: hostile manifest lines ---------------------------------------------------------------


HOSTILE_LINES = [
    b'{"id":"fax_00001","path":"fax_00001.pdf","bytes":1e400,"sha256":"00"}',
    b'{"id":"fax_00001","path":"fax_00001.pdf","bytes":Infinity,"sha256":"00"}',
    b'{"id":"fax_00001","path":"fax_00001.pdf","bytes":-Infinity,"sha256":"00"}',
    b'{"id":"fax_00001","path":"fax_00001.pdf","bytes":NaN,"sha256":"00"}',
    b"[" * 200_000,
    b"[" * 50_000,  # small enough to be parsed, deep enough to exhaust the recursion limit
    b'{"id":"fax_00001","path":"fax_00001.pdf","bytes":' + b"9" * 5000 + b',"sha256":"00"}',
    b"\xff\xfe\x00 not utf-8",
    b'{"id":["fax_00001"],"path":"fax_00001.pdf","bytes":1,"sha256":"00"}',
]


async def test_hostile_manifest_lines_are_skipped_with_a_warning(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept, hostile = inbox.add(2)
    _file(tmp_path, kept).write_bytes(kept.document)
    good = json.dumps({"id": kept.id, "path": f"{kept.id}.pdf", "bytes": len(kept.document), "sha256": kept.sha256})
    # The good line comes last: nothing before it may stop the rest of the file from being read.
    manifest_path(tmp_path).write_bytes(b"\n".join([*HOSTILE_LINES, good.encode()]) + b"\n")
    caplog.set_level(logging.WARNING, logger="audian_fax_async")
    async with make_client() as client:
        done = await run_all(client, tmp_path)
    assert done[kept.id].kind is OutcomeKind.SKIPPED, "the good line after the hostile ones still counts"
    assert done[hostile.id].kind is OutcomeKind.DOWNLOADED
    assert _file(tmp_path, hostile).read_bytes() == hostile.document
    assert f"skipped {len(HOSTILE_LINES)} unreadable lines" in caplog.text
    assert [r.match["id"] for r in inbox.downloads.requests] == [hostile.id]


# -- 15: torn lines ---------------------------------------------------------------------------


async def test_a_torn_last_line_never_swallows_the_next_entry(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    first, *rest = inbox.add(3)
    _file(tmp_path, first).write_bytes(first.document)
    line = {"id": first.id, "path": f"{first.id}.pdf", "bytes": len(first.document), "sha256": first.sha256}
    torn = b'{"id":"fax_00001","path":"fax_0'  # a full disk stopped this append half-way
    manifest_path(tmp_path).write_bytes(json.dumps(line).encode() + b"\n" + torn)
    async with make_client() as client:
        done = await run_all(client, tmp_path)
    assert done[first.id].kind is OutcomeKind.SKIPPED
    assert all(done[fax.id].kind is OutcomeKind.DOWNLOADED for fax in rest)
    raw = manifest_path(tmp_path).read_bytes().splitlines()
    assert torn in raw, "the torn line stays a line of its own"
    recorded = {entry["id"]: entry for entry in manifest_lines(tmp_path)}
    for fax in rest:
        assert recorded[fax.id]["sha256"] == fax.sha256, f"{fax.id}'s line was glued to the torn one"

    before = inbox.downloads.hits
    async with make_client() as client:
        again = await run_all(client, tmp_path)
    assert {fax_id: o.kind for fax_id, o in again.items()} == dict.fromkeys(again, OutcomeKind.SKIPPED)
    assert inbox.downloads.hits == before, "a rerun downloads nothing that is recorded"


# -- what a crash leaves --------------------------------------------------------------------


async def test_a_dead_processs_temporary_file_is_swept_and_a_live_ones_kept(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    (fax,) = inbox.add(1)
    dead = tmp_path / f".{fax.id}.pdf.audian-{DEAD_PID}-0badf00d.part"
    live = tmp_path / f".other.pdf.audian-{os.getpid()}-0badf00d.part"
    dead.write_bytes(b"%PDF-half")
    live.write_bytes(b"%PDF-still being written")
    async with make_client() as client:
        done = await run_all(client, tmp_path)
    assert done[fax.id].kind is OutcomeKind.DOWNLOADED
    assert not dead.exists()
    assert live.exists(), "a temporary file of a live process is left alone"


async def test_a_file_without_its_manifest_line_is_adopted_when_whole(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    """What a kill between the rename and the manifest line leaves: the whole file, no line."""
    (fax,) = inbox.add(1)
    _file(tmp_path, fax).write_bytes(fax.document)
    async with make_client() as client:
        done = await run_all(client, tmp_path)
    assert done[fax.id].kind is OutcomeKind.SKIPPED
    assert done[fax.id].sha256 == fax.sha256
    assert inbox.downloads.hits == 0
    assert [(e["id"], e["sha256"]) for e in manifest_lines(tmp_path)] == [(fax.id, fax.sha256)]


@pytest.mark.parametrize("content", ["shorter", "same-size-not-pdf"])
async def test_a_file_without_its_line_that_is_not_the_document_is_never_overwritten(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path, content: str
) -> None:
    (fax,) = inbox.add(1)
    mine = fax.document[:-10] if content == "shorter" else b"X" * len(fax.document)
    _file(tmp_path, fax).write_bytes(mine)
    async with make_client() as client:
        done = await run_all(client, tmp_path)
    assert done[fax.id].kind is OutcomeKind.FAILED
    assert isinstance(done[fax.id].error, DestinationError)
    assert _file(tmp_path, fax).read_bytes() == mine
    assert not manifest_path(tmp_path).exists() or manifest_lines(tmp_path) == []


_KILLED_RUN = textwrap.dedent(
    """
    import sys, anyio
    from audian_fax_async import FaxClient

    async def main() -> None:
        async with FaxClient(sys.argv[1], base_url=sys.argv[2], max_retries=0) as client:
            async with client.received.download_all(sys.argv[3], concurrency=1) as outcomes:
                async for outcome in outcomes:
                    print(outcome.kind.value, outcome.fax.id, flush=True)

    anyio.run(main)
    """
)


def test_after_kill_9_the_next_run_sweeps_skips_and_finishes(
    server: HostileServer, inbox: Inbox, api_key: str, tmp_path: Path
) -> None:
    """A real SIGKILL in the middle of a document: the next run removes the dead process's temporary
    file, skips what the manifest records and downloads the rest; every file is its document."""
    faxes = inbox.add(3)
    served: list[str] = []  # the documents asked for, in order: the first is answered, the next stall
    lock = threading.Lock()
    reached = threading.Event()
    child_running = threading.Event()
    child_running.set()

    def first_whole_then_stall(_: Request, fax: Fax) -> Reply:
        with lock:
            served.append(fax.id)
            whole = len(served) == 1 or not child_running.is_set()
        if whole:  # the first document of the killed run, and every one of the rerun
            return document_reply(fax.document, etag=fax.etag)
        reached.set()  # the child has this document's temporary file open by now
        return document_reply(fax.document, etag=fax.etag, stall_after=1000)

    for fax in faxes:
        inbox.script(fax.id, first_whole_then_stall)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, api_key, server.base_url, str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert reached.wait(BOUND), "the child never reached a second document"
        # The slot passes to the next document as soon as the first one's bytes are in; the first is
        # committed meanwhile in a worker thread: kill once its manifest line is there.
        deadline = time.monotonic() + BOUND
        while not (tmp_path / ".audian-manifest.jsonl").exists() or not manifest_lines(tmp_path):
            assert time.monotonic() < deadline, "the first document was never committed"
            time.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(BOUND)
        child_running.clear()
    done_id, stalled_id = served[0], served[1]
    left = partial_files(tmp_path)
    # The stalled document's temporary file, and perhaps the next one's (two workers per slot).
    assert any(p.name.startswith(f".{stalled_id}.pdf.audian-{child.pid}-") for p in left)
    assert all(f".pdf.audian-{child.pid}-" in p.name for p in left)
    assert 1 <= len(left) <= 2
    assert [e["id"] for e in manifest_lines(tmp_path)] == [done_id]

    async def rerun() -> dict[str, DownloadOutcome]:
        client = FaxClient(
            api_key,
            base_url=server.base_url,
            transport=make_transport("httpx2"),
            retry_policy=RetryPolicy(sleep=no_sleep),
        )
        async with client:
            return await run_all(client, tmp_path)

    done = anyio.run(rerun)
    assert {fax_id: o.kind for fax_id, o in done.items()} == {
        fax.id: OutcomeKind.SKIPPED if fax.id == done_id else OutcomeKind.DOWNLOADED for fax in faxes
    }
    assert partial_files(tmp_path) == []
    for fax in faxes:
        assert sha256(_file(tmp_path, fax).read_bytes()) == fax.sha256
