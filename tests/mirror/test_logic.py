"""The mirror's pure parts, without sockets: the high-water mark, the state files, the work queue,
the priority gate, the status payload and the command line's small parsers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import click
import pytest

from audian_fax_async import DestinationError, FaxStatus, ReceivedFax
from audian_fax_async.cli._mirror import parse_senders, webhook_url
from audian_fax_async.mirror import (
    STATE_NAME,
    FaxCounts,
    MirrorEvent,
    MirrorEventKind,
    MirrorState,
    MirrorStatus,
    SweepRecord,
    WebhookCounts,
)
from audian_fax_async.mirror._gate import PriorityGate
from audian_fax_async.mirror._queue import Lane, WorkQueue
from audian_fax_async.mirror._state import (
    FolderLock,
    Journal,
    JournalContents,
    advance_mark,
    journal_name,
    load_state,
    save_state,
    sweep_from,
)
from audian_fax_async.mirror._sweep import SweepTracker

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def fax(n: int, *, at: datetime = T0, sender: str = "+12025550100") -> ReceivedFax:
    return ReceivedFax(
        id=f"fax_{n}",
        from_number=sender,
        to_number="+15551234567",
        pages=1,
        received_at=at + timedelta(seconds=n),
        status=FaxStatus.RECEIVED,
        file_size=1000 + n,
    )


# -- the high-water mark ---------------------------------------------------------------------------


def test_a_sweep_starts_at_the_mark_minus_the_margin_and_lists_everything_without_one() -> None:
    assert sweep_from(None, timedelta(minutes=15)) is None
    assert sweep_from(T0, timedelta(minutes=15)) == T0 - timedelta(minutes=15)


def test_the_mark_moves_to_the_newest_listed_fax_when_all_completed() -> None:
    assert advance_mark(None, listed_max=T0, held_back=None) == T0
    assert advance_mark(T0, listed_max=T0 + timedelta(hours=1), held_back=None) == T0 + timedelta(hours=1)


def test_the_mark_stops_at_the_earliest_fax_that_did_not_complete() -> None:
    later = T0 + timedelta(hours=2)
    assert advance_mark(T0, listed_max=later, held_back=T0 + timedelta(hours=1)) == T0 + timedelta(hours=1)
    assert advance_mark(None, listed_max=None, held_back=T0) == T0


def test_the_mark_never_moves_back() -> None:
    assert advance_mark(T0, listed_max=T0 - timedelta(days=1), held_back=None) == T0
    assert advance_mark(T0, listed_max=T0, held_back=T0 - timedelta(minutes=5)) == T0  # inside the margin
    assert advance_mark(T0, listed_max=None, held_back=None) == T0


# -- the state file and the journal ----------------------------------------------------------------


def test_the_state_file_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    assert load_state(tmp_path) == MirrorState()
    record = SweepRecord(at=T0, result="incomplete", full=True, listed=7, downloaded=5, failed=2, error=None)
    state = MirrorState(high_water_mark=T0, last_sweep=record)
    save_state(tmp_path, state)
    assert load_state(tmp_path) == state
    assert json.loads((tmp_path / STATE_NAME).read_text())["high_water_mark"] == "2026-01-02T03:04:05Z"
    assert [p.name for p in tmp_path.iterdir()] == [STATE_NAME]  # no temporary file left


def test_a_damaged_state_file_reads_as_no_state(tmp_path: Path) -> None:
    (tmp_path / STATE_NAME).write_text('{"high_water_mark": "yesterday", "last_sweep": {"at": 5}')
    assert load_state(tmp_path) == MirrorState()
    (tmp_path / STATE_NAME).write_text('{"high_water_mark": "not a date", "last_sweep": {"result": "ok"}}')
    assert load_state(tmp_path) == MirrorState()


def test_the_journal_keeps_queued_records_and_refusals_and_skips_torn_lines(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append_queued(fax(1))
    journal.append_refused("fax_2", "+19995550000")
    journal.close()
    with (tmp_path / journal_name(None)).open("ab") as handle:
        handle.write(b'{"queued": {"id": "fax_3", "from_nu')  # a crash mid-line
    journal = Journal(tmp_path)
    journal.append_queued(fax(4))  # starts on a fresh line: the torn one stays torn
    contents = journal.load()
    journal.close()
    assert contents.queued == {"fax_1": fax(1), "fax_4": fax(4)}
    assert contents.refused == {"fax_2": "+19995550000"}


def test_rewriting_the_journal_keeps_only_what_is_given(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for n in range(5):
        journal.append_queued(fax(n))
    journal.rewrite(JournalContents({"fax_3": fax(3)}, {"fax_9": "+19995550000"}))
    journal.append_queued(fax(7))  # appends after a rewrite go to the new file
    assert journal.load() == JournalContents({"fax_3": fax(3), "fax_7": fax(7)}, {"fax_9": "+19995550000"})
    journal.close()


def test_mirrors_sharing_a_folder_keep_journals_of_their_own(tmp_path: Path) -> None:
    assert journal_name("host-a:8080") != journal_name("host-b:8080") != journal_name(None)
    Journal(tmp_path, "a").append_queued(fax(1))
    Journal(tmp_path, "b").append_queued(fax(2))
    assert set(Journal(tmp_path, "a").load().queued) == {"fax_1"}


def test_the_folder_lock_is_exclusive_unless_shared(tmp_path: Path) -> None:
    first = FolderLock(tmp_path)
    first.acquire(shared=False)
    assert FolderLock.held(tmp_path)
    with pytest.raises(DestinationError, match="another mirror is running"):
        FolderLock(tmp_path).acquire(shared=False)
    with pytest.raises(DestinationError, match="another mirror is running"):
        FolderLock(tmp_path).acquire(shared=True)
    first.release()
    assert not FolderLock.held(tmp_path)
    a, b = FolderLock(tmp_path), FolderLock(tmp_path)
    a.acquire(shared=True)
    b.acquire(shared=True)  # mirrors coordinating through a shared store
    with pytest.raises(DestinationError):
        FolderLock(tmp_path).acquire(shared=False)
    a.release()
    b.release()


def test_the_journal_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / journal_name(None)).symlink_to(target)
    with pytest.raises(DestinationError):
        Journal(tmp_path).append_queued(fax(1))
    assert target.read_text() == ""


# -- the work queue --------------------------------------------------------------------------------


async def test_live_faxes_are_handed_out_before_any_sweep_fax() -> None:
    queue = WorkQueue(sweep_capacity=10)
    for n in range(3):
        assert await queue.put_sweep(fax(n))
    assert queue.put_live(fax(10))
    assert queue.put_live(fax(11))
    order = [(await queue.get())[0].id for _ in range(5)]
    assert order == ["fax_10", "fax_11", "fax_0", "fax_1", "fax_2"]
    assert queue.taken == 5 and queue.queued == 0


async def test_a_fax_is_in_the_queue_once_and_a_live_one_jumps_ahead_of_its_sweep_place() -> None:
    queue = WorkQueue(sweep_capacity=10)
    assert await queue.put_sweep(fax(1))
    assert await queue.put_sweep(fax(2))
    assert not await queue.put_sweep(fax(1))  # already waiting
    assert queue.put_live(fax(2))  # moves to the live lane
    assert not queue.put_live(fax(2))
    assert queue.queued == 2
    taken, lane = await queue.get()
    assert (taken.id, lane) == ("fax_2", Lane.LIVE)
    assert not queue.put_live(fax(2))  # taken: left to finish
    assert not await queue.put_sweep(fax(2))
    assert queue.lane_of("fax_2") is Lane.LIVE
    assert queue.finish("fax_2") is Lane.LIVE
    assert queue.lane_of("fax_2") is None
    assert await queue.put_sweep(fax(2))  # finished (say it failed): a later sweep may bring it again


async def test_the_sweep_lane_is_bounded_and_a_full_lane_waits_for_room() -> None:
    queue = WorkQueue(sweep_capacity=2)
    assert await queue.put_sweep(fax(1))
    assert await queue.put_sweep(fax(2))
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.put_sweep, fax(3))
        await anyio.wait_all_tasks_blocked()
        assert queue.queued == 2  # a full lane blocks the sweep...
        assert queue.put_live(fax(4))  # ...never a delivery
        assert (await queue.get())[0].id == "fax_4"
        await anyio.wait_all_tasks_blocked()
        assert queue.queued == 2  # a live fax leaving frees no room in the sweep lane
        assert (await queue.get())[0].id == "fax_1"  # room: the waiting sweep fax goes in
    assert queue.queued == 2 and queue.lane_of("fax_3") is Lane.SWEEP


async def test_closing_the_queue_ends_the_getter_and_drops_what_waits() -> None:
    queue = WorkQueue(sweep_capacity=2)
    await queue.put_sweep(fax(1))
    queue.put_live(fax(2))
    async with anyio.create_task_group() as tg:

        async def drain() -> None:
            (await queue.get())[0]
            (await queue.get())[0]
            with pytest.raises(anyio.EndOfStream):
                await queue.get()

        tg.start_soon(drain)
        await anyio.wait_all_tasks_blocked()
        queue.close()
    assert not queue.put_live(fax(3)) and not await queue.put_sweep(fax(4))
    assert queue.queued == 0


# -- the priority gate -----------------------------------------------------------------------------


async def test_the_gate_admits_its_capacity_and_hands_a_freed_place_to_the_most_urgent_waiter() -> None:
    gate = PriorityGate(2)
    holding: list[str] = []
    releases: dict[str, anyio.Event] = {}

    async def hold(name: str, priority: int) -> None:
        releases[name] = anyio.Event()
        async with gate.lane(priority):
            holding.append(name)
            await releases[name].wait()
        holding.remove(name)

    async def let_go(name: str) -> None:
        releases[name].set()
        await anyio.wait_all_tasks_blocked()

    async with anyio.create_task_group() as tg:
        for name, priority in (("first", 1), ("second", 1), ("sweep-a", 1), ("sweep-b", 1), ("live", 0)):
            tg.start_soon(hold, name, priority)
            await anyio.wait_all_tasks_blocked()  # each arrives after the one before
        assert sorted(holding) == ["first", "second"] and gate.in_use == 2 and gate.waiting == 3
        await let_go("first")
        assert sorted(holding) == ["live", "second"]  # the live one, though it came last
        await let_go("second")
        assert sorted(holding) == ["live", "sweep-a"]  # then first come, first served
        await let_go("live")
        assert sorted(holding) == ["sweep-a", "sweep-b"]
        await let_go("sweep-a")
        await let_go("sweep-b")
    assert gate.in_use == 0 and gate.highest_in_use == 2 and gate.waiting == 0


async def test_a_waiter_cancelled_in_the_gate_leaves_no_place_taken() -> None:
    gate = PriorityGate(1)
    async with gate.lane(1), anyio.create_task_group() as tg:
        tg.start_soon(gate.acquire, 0)
        await anyio.wait_all_tasks_blocked()
        assert gate.waiting == 1
        tg.cancel_scope.cancel()
    assert gate.waiting == 0
    assert gate.in_use == 0
    async with gate.lane(1):
        assert gate.in_use == 1


# -- what it reports -------------------------------------------------------------------------------


def test_the_healthz_document_has_every_count_the_issue_lists() -> None:
    record = SweepRecord(at=T0, result="ok", full=False, listed=3, downloaded=1, failed=0)
    status = MirrorStatus(
        state="running",
        faxes=FaxCounts(complete=10, queued=2, in_flight=3, failed=1, refused=4),
        webhooks=WebhookCounts(seen=20, duplicate=5, refused=1, unavailable=2),
        high_water_mark=T0,
        last_sweep=record,
    )
    assert status.healthy
    assert status.to_json() == {
        "status": "running",
        "faxes": {"complete": 10, "queued": 2, "in_flight": 3, "failed": 1, "refused": 4},
        "last_sweep": {
            "at": "2026-01-02T03:04:05Z",
            "result": "ok",
            "full": False,
            "listed": 3,
            "downloaded": 1,
            "failed": 0,
            "error": None,
        },
        "high_water_mark": "2026-01-02T03:04:05Z",
        "webhooks": {"seen": 20, "duplicate": 5, "refused": 1, "unavailable": 2},
    }
    assert "10 complete" in status.line() and "ok" in status.line()
    shutting = MirrorStatus(state="shutting_down", faxes=FaxCounts(), webhooks=WebhookCounts())
    assert not shutting.healthy and shutting.to_json()["last_sweep"] is None


def test_a_fax_event_is_one_line_of_text_or_json() -> None:
    event = MirrorEvent(
        kind=MirrorEventKind.DOWNLOADED, fax_id="fax_1", source="live", at=T0, path=Path("d/fax_1.pdf"), bytes=1234
    )
    assert event.line() == "downloaded fax_1 (live) -> d/fax_1.pdf (1,234 bytes)"
    assert event.to_json() == {
        "event": "downloaded",
        "id": "fax_1",
        "source": "live",
        "at": "2026-01-02T03:04:05Z",
        "bytes": 1234,
        "path": "d/fax_1.pdf",
    }
    failed = MirrorEvent(kind=MirrorEventKind.FAILED, fax_id="fax_2", source="sweep", at=T0, error="boom")
    assert failed.line() == "failed fax_2 (sweep): boom" and failed.to_json()["error"] == "boom"


# -- the command line's parsers --------------------------------------------------------------------


def test_allow_senders_takes_numbers_lists_and_files(tmp_path: Path) -> None:
    senders = tmp_path / "senders.txt"
    senders.write_text("# our partners\n+1 202 555 0100\n\n+442071234567  # London\n")
    assert parse_senders(["+12025550199,+12025550198", str(senders)]) == [
        "+12025550199",
        "+12025550198",
        "+1 202 555 0100",
        "+442071234567",
    ]
    with pytest.raises(click.BadParameter, match=r"neither an E\.164 number nor a readable file"):
        parse_senders([str(tmp_path / "missing.txt")])
    with pytest.raises(click.BadParameter, match=r"not an E\.164 number"):
        parse_senders(["12345"])


def test_the_registered_webhook_points_at_the_receiver() -> None:
    assert webhook_url("https://mirror.example.com") == "https://mirror.example.com/webhook"
    assert webhook_url("https://example.com/fax/") == "https://example.com/fax/webhook"
    assert webhook_url("https://example.com/fax/webhook") == "https://example.com/fax/webhook"


async def test_sweep_faxes_taken_at_once_are_capped_so_that_live_ones_find_a_worker() -> None:
    queue = WorkQueue(sweep_capacity=10, sweep_taken=2)
    for n in range(4):
        await queue.put_sweep(fax(n))
    assert [(await queue.get())[0].id for _ in range(2)] == ["fax_0", "fax_1"]
    got: list[tuple[ReceivedFax, Lane]] = []

    async def get() -> None:
        got.append(await queue.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(get)
        await anyio.wait_all_tasks_blocked()
        assert got == []  # two sweep faxes out: no third
        queue.put_live(fax(9))
        await anyio.wait_all_tasks_blocked()
        assert got == [(fax(9), Lane.LIVE)]  # a live one always comes
        tg.start_soon(get)
        await anyio.wait_all_tasks_blocked()
        queue.finish("fax_0")
    assert got[-1][0].id == "fax_2"  # room again


async def test_a_sweep_settles_once_listed_and_every_fax_it_waits_for_has_an_outcome() -> None:
    sweep = SweepTracker()
    sweep.waiting.update({"fax_1", "fax_2", "fax_3"})
    sweep.resolve(fax(1), ok=True, downloaded=True)
    sweep.resolve(fax(3), ok=False, deferred=True)  # another mirror holds it: no failure, but held back
    sweep.resolve(fax(7), ok=False)  # not waited for: ignored
    assert not sweep.settled.is_set()
    sweep.resolve(fax(2), ok=False)
    assert not sweep.settled.is_set()  # still listing
    sweep.listing_done = True
    sweep.check()
    assert sweep.settled.is_set()
    assert (sweep.downloaded, sweep.failed) == (1, 1)
    assert sweep.held_back == fax(2).received_at  # the earliest of the two that did not complete
