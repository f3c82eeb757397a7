"""Bulk downloads against the emulator: intact under faults, within the limit, resumable, cancellable."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from audian_fax_async import BulkProgress, FaxClient, FaxStatus, InvalidRequestError, OutcomeKind
from audian_fax_async._manifest import MANIFEST_NAME
from audian_fax_async.emulator import AdminClient, Emulator

from .conftest import ClientFactory, assert_matches_emulator, partial_files, sha256_file

FAXES = 20  # per account, from the download tests' emulator config


async def run_all(client: FaxClient, dest: Path, **kwargs: Any) -> dict[OutcomeKind, list[Any]]:
    by_kind: dict[OutcomeKind, list[Any]] = {kind: [] for kind in OutcomeKind}
    async with client.received.download_all(dest, **kwargs) as outcomes:
        async for outcome in outcomes:
            by_kind[outcome.kind].append(outcome)
    return by_kind


def assert_folder_intact(admin: AdminClient, key: str, dest: Path) -> dict[str, Any]:
    """Every file named in the manifest matches the emulator, and nothing partial is left."""
    assert partial_files(dest) == []
    entries: dict[str, Any] = {}
    manifest = dest / MANIFEST_NAME
    for line in manifest.read_text().splitlines() if manifest.exists() else []:
        entry = json.loads(line)
        entries[entry["id"]] = entry
    for fax_id, entry in entries.items():
        path = dest / entry["path"]
        assert path.stat().st_size == entry["bytes"]
        assert sha256_file(path) == entry["sha256"]
        assert_matches_emulator(admin, key, fax_id, path)
    files = {p for p in dest.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}
    assert files == {dest / e["path"] for e in entries.values()}, "a file stands outside the manifest"
    return entries


class TrackingTransport(httpx2.AsyncBaseTransport):
    """httpx2's own transport, counting the responses whose body is still open."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.open = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        self.open += 1
        stream = _TrackedStream(response.stream, self)
        return httpx2.Response(
            response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _TrackedStream(httpx2.AsyncByteStream):
    def __init__(self, stream: httpx2.AsyncByteStream | Any, owner: TrackingTransport) -> None:
        self.stream, self.owner, self.closed = stream, owner, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            yield chunk

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner.open -= 1
        await self.stream.aclose()


async def test_download_all_saves_every_fax_once_and_intact(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    seen: list[BulkProgress] = []
    result = await run_all(client, tmp_path, on_progress=seen.append)
    downloaded = result[OutcomeKind.DOWNLOADED]
    assert len(downloaded) == FAXES and not result[OutcomeKind.FAILED]
    assert len({o.fax.id for o in downloaded}) == FAXES
    entries = assert_folder_intact(audian_admin, audian_api_key, tmp_path)
    assert set(entries) == {o.fax.id for o in downloaded}
    assert seen and seen[-1].finished == FAXES and seen[-1].bytes == sum(o.bytes for o in downloaded)


@pytest.mark.parametrize(
    "faults",
    [
        {"p500": 0.3},
        {"p503": 0.3},
        {"p429": 0.3},
        {"drop": 0.3},
        {"truncate": 0.3},
        {"slow_first_byte": 0.02},
        {"bandwidth": 4_000_000},
        {"latency": 0.01},
        {"profile": "chaos"},
    ],
    ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()),
)
async def test_files_are_byte_identical_under_each_fault(
    make_client: ClientFactory,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    faults: dict[str, Any],
) -> None:
    options = dict(faults)
    audian_admin.set_faults(options.pop("profile", None), **options)
    async with make_client(max_retries=10) as client:
        result = await run_all(client, tmp_path)
    assert [o.error for o in result[OutcomeKind.FAILED]] == []
    assert len(result[OutcomeKind.DOWNLOADED]) == FAXES
    assert_folder_intact(audian_admin, audian_api_key, tmp_path)
    assert audian_admin.stats(audian_api_key)["downloads"]["highest"] <= 10


async def test_fifty_tasks_on_three_clients_never_exceed_ten_downloads(
    make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.inject(audian_api_key, count=30, pages=1)
    audian_admin.set_faults(bandwidth=1_000_000)  # ~0.1 s per page: downloads overlap
    clients = [make_client() for _ in range(3)]
    async with clients[0], clients[1], clients[2]:
        page = await clients[0].received.list(limit=50)
        assert len(page.faxes) == 50

        async def one(i: int) -> None:
            fax = page.faxes[i]
            folder = tmp_path / str(i)
            folder.mkdir()
            await clients[i % 3].received.download(fax.id, folder, fax=fax)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
    downloads = audian_admin.stats(audian_api_key)["downloads"]
    assert downloads["highest"] == 10, downloads
    assert downloads["refused"] == 0, "the SDK should never make the API refuse a download"


@pytest.mark.parametrize("seed", range(8))
async def test_cancellation_at_random_points_leaves_no_partial_file_and_rerun_completes(
    make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path, seed: int
) -> None:
    transport = TrackingTransport()
    async with make_client(transport=transport) as client:
        await _cancel_at_a_random_point_then_rerun(client, transport, audian_admin, audian_api_key, tmp_path, seed)


async def _cancel_at_a_random_point_then_rerun(
    client: FaxClient, transport: TrackingTransport, audian_admin: AdminClient, key: str, tmp_path: Path, seed: int
) -> None:
    audian_admin.set_faults(bandwidth=20_000_000)
    total = sum(f.file_size or 0 for f in (await client.received.list(limit=100)).faxes)
    threshold = random.Random(seed).randrange(1, total)
    with anyio.CancelScope() as scope:

        def maybe_cancel(progress: BulkProgress) -> None:
            if progress.bytes >= threshold:
                scope.cancel()

        await run_all(client, tmp_path, on_progress=maybe_cancel)
    assert scope.cancelled_caught
    assert client.limiter.statistics(client.account).in_use == 0
    assert transport.open == 0, "a cancelled download left a response open"
    finished_before = assert_folder_intact(audian_admin, key, tmp_path)

    result = await run_all(client, tmp_path)
    assert {o.fax.id for o in result[OutcomeKind.SKIPPED]} == set(finished_before)
    downloaded = {o.fax.id for o in result[OutcomeKind.DOWNLOADED]}
    assert not downloaded & set(finished_before), "re-downloaded a finished fax"
    assert len(downloaded) == FAXES - len(finished_before) and not result[OutcomeKind.FAILED]
    assert len(assert_folder_intact(audian_admin, key, tmp_path)) == FAXES
    assert transport.open == 0


async def test_leaving_the_loop_early_stops_workers_and_removes_temporary_files(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.set_faults(bandwidth=2_000_000)
    got = 0
    async with client.received.download_all(tmp_path) as outcomes:
        async for _ in outcomes:
            got += 1
            if got == 3:
                break
    assert client.limiter.statistics(client.account).in_use == 0
    entries = assert_folder_intact(audian_admin, audian_api_key, tmp_path)
    assert 3 <= len(entries) < FAXES


async def test_plain_async_for_runs_to_the_end(client: FaxClient, tmp_path: Path) -> None:
    kinds = [o.kind async for o in client.received.download_all(tmp_path)]
    assert kinds == [OutcomeKind.DOWNLOADED] * FAXES


async def test_one_failing_fax_does_not_stop_the_others_and_rerun_finishes_it(
    make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.script("download", [500], key=audian_api_key)
    async with make_client(max_retries=0) as client:
        result = await run_all(client, tmp_path)
        assert len(result[OutcomeKind.FAILED]) == 1
        assert len(result[OutcomeKind.DOWNLOADED]) == FAXES - 1
        failed = result[OutcomeKind.FAILED][0]
        assert failed.path is None and "500" in str(failed.error)
        again = await run_all(client, tmp_path)
    assert [o.fax.id for o in again[OutcomeKind.DOWNLOADED]] == [failed.fax.id]
    assert len(again[OutcomeKind.SKIPPED]) == FAXES - 1
    assert_folder_intact(audian_admin, audian_api_key, tmp_path)


async def test_after_processed_marks_each_fax_once_it_is_on_disk_and_walk_misses_none(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    initially = await client.received.list(limit=100, status="received")
    assert initially.total > 6
    for fax in initially.faxes[1:7:2]:
        await client.received.mark_processed(fax.id)
    received = await client.received.list(limit=100, status="received")
    assert received.total == initially.total - 3
    # A walk filtered on status=received while this very run marks faxes processed.
    result = await run_all(client, tmp_path, status="received", after="processed", page_size=4)
    assert {o.fax.id for o in result[OutcomeKind.DOWNLOADED]} == {f.id for f in received.faxes}
    assert all(o.marked is FaxStatus.PROCESSED for o in result[OutcomeKind.DOWNLOADED])
    assert (await client.received.list(limit=100, status="received")).total == 0
    updates = sum(audian_admin.stats(audian_api_key)["requests"]["update"].values())
    assert updates == 3 + received.total


async def test_after_archived_is_retried_on_rerun_when_marking_failed(
    make_client: ClientFactory, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.script("archive", [500], key=audian_api_key)
    async with make_client(max_retries=0) as client:
        result = await run_all(client, tmp_path, after="archived")
        assert len(result[OutcomeKind.FAILED]) == 1
        failed = result[OutcomeKind.FAILED][0]
        assert (tmp_path / f"{failed.fax.id}.pdf").exists(), "the file stays: it was durably saved"
        again = await run_all(client, tmp_path, after="archived")
    assert len(again[OutcomeKind.SKIPPED]) == FAXES and not again[OutcomeKind.FAILED]
    archived = [o for o in again[OutcomeKind.SKIPPED] if o.marked is FaxStatus.ARCHIVED]
    assert len(archived) == FAXES
    assert sum(audian_admin.stats(audian_api_key)["requests"]["archive"].values()) == FAXES + 1


async def test_path_template_lays_files_out_by_date_inside_the_folder(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    result = await run_all(client, tmp_path, path_template="{received_at:%Y/%m/%d}/{from_number}-{id}.{ext}")
    for outcome in result[OutcomeKind.DOWNLOADED]:
        fax = outcome.fax
        expected = tmp_path / fax.received_at.strftime("%Y/%m/%d") / f"{fax.from_number}-{fax.id}.pdf"
        assert outcome.path == expected and expected.exists()
    assert_folder_intact(audian_admin, audian_api_key, tmp_path)


@pytest.mark.parametrize("template", ["{id.__class__}", "{nope}", "{received_at:%Q%"])
async def test_a_template_that_cannot_lay_out_a_fax_is_refused_before_anything_is_listed(
    client: FaxClient, tmp_path: Path, template: str
) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(InvalidRequestError, match="path_template"):
        client.received.download_all(dest, path_template=template)
    assert not dest.exists()


@pytest.mark.parametrize("template", ["../{id}.pdf", "/etc/{id}", "{received_at:%Y}/../../x"])
async def test_hostile_templates_stay_inside_or_fail_per_fax(client: FaxClient, tmp_path: Path, template: str) -> None:
    dest = tmp_path / "dest"
    result = await run_all(client, dest, path_template=template)
    for outcome in result[OutcomeKind.DOWNLOADED]:
        assert outcome.path is not None and outcome.path.resolve().is_relative_to(dest.resolve())
    assert all(p.is_relative_to(dest) for p in tmp_path.rglob("*") if p != dest)
    assert len(result[OutcomeKind.DOWNLOADED]) + len(result[OutcomeKind.FAILED]) == FAXES


async def test_faxes_a_template_sends_to_one_path_fail_instead_of_taking_each_others_file(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    # Six faxes of one size and one sender: "{from_number}.pdf" sends them to one path. One at a time,
    # so each later one finds the first one's whole file there, which adoption would take for its own.
    number = "+15550100999"
    six = {f["id"] for f in audian_admin.inject(audian_api_key, count=6, size=40_000, from_number=number)}
    template = "{from_number}.pdf"
    first = await run_all(client, tmp_path, path_template=template, concurrency=1)
    [owner] = [o.fax.id for o in first[OutcomeKind.DOWNLOADED] if o.fax.id in six]
    refused = [o for o in first[OutcomeKind.FAILED] if o.fax.id in six]
    assert len(refused) == 5 and not first[OutcomeKind.SKIPPED]
    assert all(f"already the path of fax {owner}" in str(o.error) for o in refused)
    assert sha256_file(tmp_path / f"{number}.pdf") == audian_admin.document_sha256(audian_api_key, owner)
    # A rerun knows the owner from the manifest and still refuses the other five.
    again = await run_all(client, tmp_path, path_template=template, concurrency=1)
    assert owner in {o.fax.id for o in again[OutcomeKind.SKIPPED]}
    assert {o.fax.id for o in again[OutcomeKind.FAILED]} == six - {owner}


def read_lines(worker: subprocess.Popen[bytes], count: int, *, timeout: float) -> list[bytes]:
    """Up to ``count`` lines of the worker's stdout, waiting at most ``timeout`` seconds for them."""
    assert worker.stdout is not None
    lines: list[bytes] = []
    deadline = time.monotonic() + timeout
    buffer = b""
    while len(lines) < count and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([worker.stdout], [], [], left)
        if not ready:
            break
        data = os.read(worker.stdout.fileno(), 4096)
        if not data:
            break  # the worker ended
        buffer += data
        *complete, buffer = buffer.split(b"\n")
        lines.extend(complete)
    return lines[:count]


_WORKER = textwrap.dedent(
    """
    import sys, anyio
    from audian_fax_async import FaxClient

    async def main() -> None:
        async with FaxClient(sys.argv[1], base_url=sys.argv[2]) as client:
            async with client.received.download_all(sys.argv[3]) as outcomes:
                async for outcome in outcomes:
                    print(outcome.kind, outcome.fax.id, flush=True)

    anyio.run(main)
    """
)


def test_a_killed_process_is_resumed_without_redownloading(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.set_faults(bandwidth=300_000)  # about a second per fax: the kill lands mid-run
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, audian_api_key, audian_emulator.base_url, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    manifest = tmp_path / MANIFEST_NAME
    try:
        # The worker prints each outcome once its file and manifest line stand: kill it after four.
        printed = read_lines(worker, 4, timeout=60)
        assert len(printed) == 4, f"worker ended or stalled: {worker.stderr.read() if worker.stderr else ''!r}"
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    done_before = {json.loads(line)["id"] for line in manifest.read_text().splitlines()}
    assert 4 <= len(done_before) < FAXES

    async def rerun() -> dict[OutcomeKind, list[Any]]:
        audian_admin.set_faults()
        async with FaxClient(audian_api_key, base_url=audian_emulator.base_url) as client:
            return await run_all(client, tmp_path)

    result = anyio.run(rerun)
    skipped = {o.fax.id for o in result[OutcomeKind.SKIPPED]}
    downloaded = {o.fax.id for o in result[OutcomeKind.DOWNLOADED]}
    # Every fax the manifest names is skipped. A kill between a file's rename and its manifest line
    # leaves a whole file without a line: the rerun checks it (size, %PDF) and keeps it, also skipped.
    assert done_before <= skipped and not downloaded & skipped
    assert len(skipped) + len(downloaded) == FAXES and not result[OutcomeKind.FAILED]
    entries = assert_folder_intact(audian_admin, audian_api_key, tmp_path)  # the dead worker's .part files are gone
    assert len(entries) == FAXES
