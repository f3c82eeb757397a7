"""``Mirror`` in process, against the emulator: catch-up, live deliveries (through its ASGI app),
sweeps and the high-water mark, the allow-list, marking and archiving, restarts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx2
import pytest

from audian_fax_async import DefaultAsyncHttpClient, DestinationError, FaxClient, FaxStatus
from audian_fax_async._manifest import MANIFEST_NAME
from audian_fax_async.emulator import AdminClient, Emulator
from audian_fax_async.mirror import Mirror, MirrorEvent, MirrorEventKind, read_status
from audian_fax_async.mirror._state import Journal, journal_name

from .conftest import ACCOUNT_FAXES, delivery


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll observable state until ``check`` holds (bounded)."""
    with anyio.move_on_after(timeout):
        while not check():
            await anyio.sleep(0.01)
    assert check(), f"timed out waiting for {what}"


def pdfs(folder: Path) -> dict[str, str]:
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.pdf")}


def manifest_lines(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines() if line.strip()]


def receiver_client(mirror: Mirror) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=mirror.app), base_url="http://mirror")


def downloads_served(admin: AdminClient, key: str) -> int:
    return int(admin.stats(key)["requests"].get("download", {}).get("200", 0))


async def test_catch_up_downloads_every_fax_verified_and_a_restart_downloads_none_again(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    events: list[MirrorEvent] = []
    async with Mirror(client, tmp_path, on_event=events.append) as mirror:
        record = await mirror.caught_up()
        status = mirror.status()
    assert record.full and record.result == "ok" and record.downloaded == ACCOUNT_FAXES
    faxes = [fax async for fax in client.received.iter()]
    assert pdfs(tmp_path) == {fax.id: admin.document_sha256(key, fax.id) for fax in faxes}
    assert status.faxes.complete == ACCOUNT_FAXES and status.state == "running"
    assert status.high_water_mark == max(fax.received_at for fax in faxes)
    assert {e.kind for e in events} == {MirrorEventKind.DOWNLOADED} and len(events) == ACCOUNT_FAXES

    async with Mirror(client, tmp_path) as again:
        assert (await again.caught_up()).downloaded == 0
    assert downloads_served(admin, key) == ACCOUNT_FAXES
    assert len(manifest_lines(tmp_path)) == ACCOUNT_FAXES


async def test_a_delivery_is_answered_once_queued_and_its_fax_comes_through_the_live_lane(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    events: list[MirrorEvent] = []
    async with Mirror(client, tmp_path, on_event=events.append) as mirror, receiver_client(mirror) as http:
        await mirror.caught_up()
        fax = admin.arrive(key)  # no webhook subscribed: the test delivers it
        body, headers = delivery(fax, event_id="evt_once")
        answer = await http.post("/webhook", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        await eventually(lambda: (tmp_path / f"{fax['id']}.pdf").exists(), "the delivered fax on disk")
        again = await http.post("/webhook", content=body, headers=headers)  # the API retrying
        assert again.json()["outcome"] == "duplicate"
        await eventually(lambda: mirror.status().faxes.in_flight == 0, "the download to be recorded")
        health = (await http.get("/healthz")).json()
    assert [(e.fax_id, e.source) for e in events if e.source == "live"] == [(fax["id"], "live")]
    assert health["faxes"]["complete"] == ACCOUNT_FAXES + 1
    assert health["webhooks"] == {"seen": 2, "duplicate": 1, "refused": 0, "unavailable": 0}
    assert pdfs(tmp_path)[fax["id"]] == admin.document_sha256(key, fax["id"])


async def test_a_forged_delivery_is_refused_and_nothing_is_downloaded(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    async with Mirror(client, tmp_path) as mirror, receiver_client(mirror) as http:
        await mirror.caught_up()
        body, headers = delivery(
            {
                "id": "fax_received_forged",
                "from_number": "+12025550100",
                "from_name": None,
                "to_number": "+15551234567",
                "pages": 1,
                "received_at": "2026-01-01T00:00:00Z",
                "file_size": 10,
                "format": "pdf",
            }
        )
        answer = await http.post("/webhook", content=body, headers=headers)
        assert answer.status_code == 403
        assert mirror.status().webhooks.refused == 1
    assert len(pdfs(tmp_path)) == ACCOUNT_FAXES


async def test_a_sweep_finds_faxes_whose_webhook_never_came_and_moves_the_mark(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    async with Mirror(client, tmp_path, reconcile_every=3600) as mirror:
        await mirror.caught_up()
        mark = mirror.status().high_water_mark
        assert mark is not None
        newer = [(mark + timedelta(minutes=n)).isoformat().replace("+00:00", "Z") for n in (1, 2)]
        silent = admin.inject(key, faxes=[{"received_at": at} for at in newer])  # no delivery, no arrival
        record = await mirror.sweep()
        assert record.result == "ok" and not record.full and record.downloaded == 2
        window = [fax async for fax in client.received.iter(from_date=mark - mirror.safety_margin)]
        assert record.listed == len(window) < ACCOUNT_FAXES + 2  # from the mark minus the margin only
        assert mirror.status().high_water_mark == mark + timedelta(minutes=2)
    assert {fax["id"] for fax in silent} <= set(pdfs(tmp_path))


async def test_a_failed_download_holds_the_mark_back_and_the_next_sweep_retries_it(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    events: list[MirrorEvent] = []
    async with (
        FaxClient(key, base_url=mirror_emulator.base_url, max_retries=0) as client,
        Mirror(client, tmp_path, reconcile_every=3600, safety_margin=0, on_event=events.append) as mirror,
    ):
        await mirror.caught_up()
        mark = mirror.status().high_water_mark
        assert mark is not None
        at = [(mark + timedelta(minutes=n)).isoformat().replace("+00:00", "Z") for n in (1, 2, 3)]
        injected = {f["id"]: f for f in admin.inject(key, faxes=[{"received_at": when} for when in at])}
        admin.script("download", [500], key=key)  # the first download of the sweep fails
        record = await mirror.sweep()
        assert (record.result, record.downloaded, record.failed) == ("incomplete", 2, 1)
        [failed] = [e.fax_id for e in events if e.kind is MirrorEventKind.FAILED]
        held = mirror.status()
        assert held.faxes.failed == 1
        assert held.high_water_mark == datetime.fromisoformat(injected[failed]["received_at"])  # not past it
        retried = await mirror.sweep()
        assert (retried.result, retried.downloaded, retried.failed) == ("ok", 1, 0)
        assert mirror.status().faxes.failed == 0
        assert mirror.status().high_water_mark == mark + timedelta(minutes=3)
    assert len(pdfs(tmp_path)) == ACCOUNT_FAXES + 3


async def test_faxes_from_senders_not_allowed_are_recorded_as_refused_not_downloaded(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    allowed = "+12025550100"
    admin.inject(key, count=2, from_number=allowed)
    events: list[MirrorEvent] = []
    async with (
        Mirror(client, tmp_path, allow_senders=[allowed], on_event=events.append) as mirror,
        receiver_client(mirror) as http,
    ):
        await mirror.caught_up()
        other = admin.arrive(key, from_number="+13035550111")
        body, headers = delivery(other)
        assert (await http.post("/webhook", content=body, headers=headers)).status_code == 200
        status = mirror.status()
    refused = {e.fax_id for e in events if e.kind is MirrorEventKind.REFUSED}
    assert status.faxes.refused == ACCOUNT_FAXES + 1 == len(refused) and other["id"] in refused
    downloaded = {e.fax_id for e in events if e.kind is MirrorEventKind.DOWNLOADED}
    assert set(pdfs(tmp_path)) == downloaded and len(downloaded) == 2
    assert set(Journal(tmp_path).load().refused) == refused
    assert read_status(tmp_path).faxes.refused == len(refused)


async def test_after_processed_marks_each_fax_once_its_file_is_durable_and_leaves_archived_ones(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    archived = {f["id"] for f in admin.inject(key, count=2, status="archived")}
    async with Mirror(client, tmp_path, after="processed") as mirror:
        await mirror.caught_up()
    statuses = {fax.id: fax.status async for fax in client.received.iter()}
    assert {statuses[fax_id] for fax_id in archived} == {FaxStatus.ARCHIVED}  # never moved back
    generated_archived = {fax_id for fax_id, status in statuses.items() if status == FaxStatus.ARCHIVED}
    assert {statuses[fax_id] for fax_id in set(statuses) - generated_archived} == {FaxStatus.PROCESSED}
    marked = {line["id"] for line in manifest_lines(tmp_path) if line["marked"] == "processed"}
    assert marked == set(statuses) - generated_archived and set(statuses) == set(pdfs(tmp_path))


async def test_archive_after_archives_verified_old_faxes_and_never_moves_them_back(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    later = datetime.now(UTC) + timedelta(days=400)  # every fax is over a year old by this clock
    async with Mirror(client, tmp_path, after="processed", archive_after=365, clock=lambda: later) as mirror:
        await mirror.caught_up()
    statuses = {fax.id: fax.status async for fax in client.received.iter()}
    assert set(statuses.values()) == {FaxStatus.ARCHIVED}
    async with Mirror(client, tmp_path, after="processed") as again:  # archived is past processed
        await again.caught_up()
    assert {fax.status async for fax in client.received.iter()} == {FaxStatus.ARCHIVED}


async def test_a_file_that_no_longer_matches_its_manifest_is_not_archived(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    async with Mirror(client, tmp_path) as mirror:
        await mirror.caught_up()
    before = {fax.id: fax.status async for fax in client.received.iter()}  # generated: some archived already
    victim = sorted(tmp_path.glob("*.pdf"))[0]
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF  # same size, other bytes
    victim.write_bytes(bytes(data))
    later = datetime.now(UTC) + timedelta(days=400)
    async with Mirror(client, tmp_path, archive_after=1, clock=lambda: later) as mirror:
        await mirror.caught_up()
    statuses = {fax.id: fax.status async for fax in client.received.iter()}
    assert statuses.pop(victim.stem) == before[victim.stem]
    assert set(statuses.values()) == {FaxStatus.ARCHIVED}


async def test_a_restart_takes_up_what_deliveries_queued_first_through_the_live_lane(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    fax = await client.received.get(admin.inject(key, count=1)[0]["id"])
    journal = Journal(tmp_path)  # what a mirror killed after answering the delivery left
    journal.append_queued(fax)
    journal.close()
    events: list[MirrorEvent] = []
    async with Mirror(client, tmp_path, on_event=events.append) as mirror:
        await mirror.caught_up()
    assert [e.source for e in events if e.fax_id == fax.id] == ["live"]
    assert len(pdfs(tmp_path)) == ACCOUNT_FAXES + 1
    assert Journal(tmp_path).load().queued == {}  # done: the journal forgets it
    assert (tmp_path / journal_name(None)).read_bytes() == b""


async def test_deliveries_get_503_unless_the_mirror_runs_and_healthz_says_why(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    mirror = Mirror(client, tmp_path)
    fax = admin.arrive(key)
    body, headers = delivery(fax)
    async with receiver_client(mirror) as http:
        early = await http.post("/webhook", content=body, headers=headers)
        assert (early.status_code, early.headers["retry-after"]) == (503, "30")
        assert (await http.get("/healthz")).json()["status"] == "starting"
        async with mirror:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/elsewhere")).status_code == 404
            assert (await http.get("/webhook")).status_code == 405
        late = await http.post("/webhook", content=body, headers=headers)
        stopped = await http.get("/healthz")
    assert late.status_code == 503 and stopped.status_code == 503 and stopped.json()["status"] == "stopped"
    assert mirror.status().webhooks.unavailable == 2


async def test_a_second_mirror_on_the_same_folder_is_refused(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    async with Mirror(client, tmp_path) as mirror:
        with pytest.raises(DestinationError, match="another mirror is running"):
            async with Mirror(client, tmp_path):
                pass
        await mirror.caught_up()
        assert read_status(tmp_path).state == "running"
    status = read_status(tmp_path)
    assert (status.state, status.faxes.complete) == ("stopped", ACCOUNT_FAXES)
    assert status.last_sweep is not None and status.last_sweep.full


def test_reading_a_folder_that_is_not_a_mirror_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="not a mirror folder"):
        read_status(tmp_path)


async def test_bad_arguments_are_refused_before_anything_runs(client: FaxClient, tmp_path: Path) -> None:
    from audian_fax_async import InvalidRequestError

    for bad in ({"reconcile_every": 0}, {"safety_margin": -1}, {"archive_after": 0}, {"allow_senders": ["555"]}):
        with pytest.raises(InvalidRequestError):
            Mirror(client, tmp_path, **bad)
    with pytest.raises(InvalidRequestError):
        Mirror(client, tmp_path, after="deleted")  # type: ignore[arg-type]


async def test_an_xml_delivery_is_taken_like_a_json_one(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    async with Mirror(client, tmp_path) as mirror, receiver_client(mirror) as http:
        await mirror.caught_up()
        fax = admin.arrive(key)
        fields = ("event", "id", "from_number", "to_number", "pages", "received_at", "file_size", "format")
        values = {"event": "fax_received", **fax}
        xml = "".join(f"<{name}>{values[name]}</{name}>" for name in fields)
        body = f'<?xml version="1.0" encoding="UTF-8"?><event>{xml}</event>'.encode()
        answer = await http.post("/webhook", content=body, headers={"Content-Type": "application/xml"})
        assert answer.status_code == 200, answer.text
        await eventually(lambda: (tmp_path / f"{fax['id']}.pdf").exists(), "the delivered fax on disk")


async def test_a_key_the_api_refuses_ends_the_mirror_with_that_error(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    from audian_fax_async import AuthenticationError

    admin.script("list", [401], key=key)
    with pytest.raises(AuthenticationError):
        async with Mirror(client, tmp_path) as mirror:
            await mirror.caught_up()
    assert not any(tmp_path.glob("*.pdf"))


def test_a_mirror_is_made_outside_an_event_loop_so_that_its_app_can_be_mounted_first(tmp_path: Path) -> None:
    mirror = Mirror(FaxClient("k", base_url="http://127.0.0.1:9/v2"), tmp_path)
    assert mirror.app is not None and mirror.state == "starting" and not mirror.accepting
    assert mirror.status().to_json()["faxes"] == {"complete": 0, "queued": 0, "in_flight": 0, "failed": 0, "refused": 0}


async def test_a_marking_that_failed_is_made_by_the_next_sweep(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    events: list[MirrorEvent] = []
    async with (
        FaxClient(key, base_url=mirror_emulator.base_url, max_retries=0) as client,
        Mirror(client, tmp_path, after="processed", safety_margin=0, on_event=events.append) as mirror,
    ):
        await mirror.caught_up()
        mark = mirror.status().high_water_mark
        assert mark is not None
        at = (mark + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        [fax] = admin.inject(key, faxes=[{"received_at": at}])
        admin.script("update", [500], key=key)  # the download succeeds, the marking fails
        failed = await mirror.sweep()
        assert (failed.result, failed.failed) == ("incomplete", 1)
        assert (tmp_path / f"{fax['id']}.pdf").exists()  # the file stands: only the marking failed
        assert (await client.received.get(fax["id"])).status == FaxStatus.RECEIVED
        healed = await mirror.sweep()
        assert (healed.result, healed.failed, healed.downloaded) == ("ok", 0, 0)
        assert (await client.received.get(fax["id"])).status == FaxStatus.PROCESSED
        assert mirror.status().high_water_mark == mark + timedelta(minutes=1)
    assert [line["marked"] for line in manifest_lines(tmp_path) if line["id"] == fax["id"]] == [None, "processed"]


async def test_sweeps_follow_the_injected_sleep_and_a_sweep_after_stopping_is_refused(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    naps: list[float] = []
    wake = anyio.Event()

    async def sleep(seconds: float) -> None:
        nonlocal wake
        naps.append(seconds)
        await wake.wait()
        wake = anyio.Event()

    async with Mirror(client, tmp_path, reconcile_every=42, safety_margin=1e9, sleep=sleep) as mirror:
        await mirror.caught_up()
        await eventually(lambda: naps == [42], "the sweep loop to sleep")
        [fax] = admin.inject(key, count=1)  # no webhook: only a sweep finds it
        assert not (tmp_path / f"{fax['id']}.pdf").exists()
        wake.set()
        await eventually(lambda: (tmp_path / f"{fax['id']}.pdf").exists(), "the periodic sweep")
        await eventually(lambda: naps == [42, 42], "the next sleep")
        record = mirror.status().last_sweep
        assert record is not None and not record.full and record.downloaded == 1
    with pytest.raises(RuntimeError, match="not running"):
        await mirror.sweep()


@pytest.mark.loops("asyncio", "trio")
async def test_a_delivered_fax_starts_downloading_ahead_of_the_catch_up_still_queued(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    admin.inject(key, count=80, size=40_000)
    admin.set_faults(bandwidth=400_000)  # 0.1 s a document, 10 at a time: the catch-up takes a while
    started: list[str] = []  # the order downloads are sent in, seen by the HTTP client's own hook

    async def on_request(request: httpx2.Request) -> None:
        if request.url.path.endswith("/download"):
            started.append(request.url.path.split("/")[-2])

    events: list[MirrorEvent] = []
    async with (
        DefaultAsyncHttpClient(event_hooks={"request": [on_request]}) as http_client,
        FaxClient(key, base_url=mirror_emulator.base_url, http_client=http_client) as client,
        Mirror(client, tmp_path, grace_period=0.2, on_event=events.append) as mirror,
        receiver_client(mirror) as http,
    ):
        await eventually(lambda: len(events) >= 5, "the catch-up to be under way")
        fax = admin.arrive(key, size=40_000)
        body, headers = delivery(fax)
        assert (await http.post("/webhook", content=body, headers=headers)).status_code == 200
        queued_behind = mirror.status().faxes.queued  # catch-up faxes waiting when it was queued
        sent_before = len(started)
        await eventually(lambda: any(e.fax_id == fax["id"] for e in events), "the delivered fax")
    assert queued_behind >= 10
    overtook = started.index(fax["id"]) - sent_before  # catch-up downloads sent after it was queued
    assert overtook <= 1, f"{overtook} catch-up downloads went ahead of the delivered fax"
    assert [e.source for e in events if e.fax_id == fax["id"]] == ["live"]


async def test_waiting_for_a_catch_up_that_a_stop_cut_short_is_an_error(
    client: FaxClient, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    admin.script("list", [{"action": "delay", "seconds": 2}], key=key)  # the catch-up cannot end at once
    async with Mirror(client, tmp_path) as mirror:
        await anyio.lowlevel.checkpoint()  # the sweeps begin; the body ends at once
    with pytest.raises(RuntimeError, match="stopped before its catch-up ended"):
        await mirror.caught_up()
    assert read_status(tmp_path).last_sweep is None
