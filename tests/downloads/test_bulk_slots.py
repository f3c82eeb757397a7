"""How ``download_all`` uses its download slots: kept from one fax to the next, given up at once to
another task that waits, and never waiting on the commits (which stay bounded when they stall)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from audian_fax_async import FaxClient, OutcomeKind
from audian_fax_async._bulk import MAX_CHAINED, BulkDownload
from audian_fax_async._download import FileDownload
from audian_fax_async.emulator import AdminClient

from .conftest import ClientFactory, partial_files
from .test_download_all import FAXES, assert_folder_intact, run_all


async def test_a_worker_keeps_its_slot_for_the_queued_faxes(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.inject(audian_api_key, count=80, pages=1)
    before = client.limiter.statistics(client.account).total_acquired

    result = await run_all(client, tmp_path)

    downloaded = len(result[OutcomeKind.DOWNLOADED])
    assert downloaded == FAXES + 80 and not result[OutcomeKind.FAILED]
    taken = client.limiter.statistics(client.account).total_acquired - before
    # One slot per worker while the listing keeps the queue full, taken again at least every
    # MAX_CHAINED downloads; a slot per download would be 100.
    assert downloaded / MAX_CHAINED <= taken <= downloaded // 2, taken
    assert_folder_intact(audian_admin, audian_api_key, tmp_path)
    assert audian_admin.stats(audian_api_key)["downloads"]["highest"] <= 10


async def test_another_task_waiting_for_a_slot_gets_one_at_the_next_download(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.inject(audian_api_key, count=200, pages=1)
    audian_admin.set_faults(bandwidth=2_000_000)  # downloads overlap: every slot is busy
    page = await client.received.list(limit=1)
    lone = tmp_path / "lone"
    lone.mkdir()
    outcomes = 0
    window: list[int] = []

    async def one_more_download() -> None:
        window.append(outcomes)
        await client.received.download(page.faxes[0].id, lone)
        window.append(outcomes)

    async with anyio.create_task_group() as tg, client.received.download_all(tmp_path / "bulk") as bulk:
        async for outcome in bulk:
            assert outcome.kind is OutcomeKind.DOWNLOADED, outcome.error
            outcomes += 1
            if outcomes == 12:  # all ten workers hold their slots, a queue behind them
                tg.start_soon(one_more_download)
    assert outcomes == FAXES + 200
    started, finished = window
    # The waiter gets the first slot a worker finishes a download in: meanwhile the other nine
    # slots finish one or two downloads each, and commits fetched before it are still reported
    # (13-20 outcomes in practice). Workers keeping their slots up to MAX_CHAINED downloads would
    # make it wait for about MAX_CHAINED x 10 (145 when tried).
    assert finished - started <= 40, window
    assert audian_admin.stats(audian_api_key)["downloads"]["highest"] <= 10


async def test_stalled_commits_stop_the_downloads_with_a_bounded_backlog(
    make_client: ClientFactory,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audian_admin.inject(audian_api_key, count=60, pages=1)
    gate = anyio.Event()
    waiting = 0
    complete = FileDownload.complete

    async def gated(self: FileDownload, **kwargs: Any) -> Any:
        nonlocal waiting
        waiting += 1
        await gate.wait()
        return await complete(self, **kwargs)

    monkeypatch.setattr(FileDownload, "complete", gated)
    concurrency = 2
    async with make_client() as client:
        bulk = client.received.download_all(tmp_path, concurrency=concurrency)
        assert isinstance(bulk, BulkDownload)
        outcomes = []
        async with bulk, anyio.create_task_group() as tg:

            async def consume() -> None:
                async for outcome in bulk:
                    outcomes.append(outcome)

            tg.start_soon(consume)
            with anyio.fail_after(30):  # a failsafe only: the pipeline fills in a few loop turns
                # Every committer (one per worker) and every worker end up waiting on a commit
                # (were the backlog unbounded, the listing would end instead).
                while waiting < 2 * concurrency and not bulk.progress.listing_done:
                    await anyio.sleep(0)
            for _ in range(200):  # anything still able to move, moves
                await anyio.sleep(0)
            progress = bulk.progress
            # Bodies fetched and waiting for a commit (with a committer, queued for one, or with
            # their worker), and the downloads the listing queued, are bounded by the concurrency,
            # not by the size of the listing (80 here).
            assert progress.in_flight <= 4 * concurrency, progress
            assert len(partial_files(tmp_path)) <= 6 * concurrency + 1
            assert progress.listed < FAXES + 60
            assert outcomes == []
            gate.set()
    assert [o.kind for o in outcomes] == [OutcomeKind.DOWNLOADED] * (FAXES + 60)
    assert_folder_intact(audian_admin, audian_api_key, tmp_path)
