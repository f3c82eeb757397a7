"""``audian-fax mirror`` end to end, over real sockets: the emulator delivers webhooks to mirror
subprocesses that are killed, restarted, stopped, and share a folder through Redis.

Each test binds 127.0.0.1 on free ports, is bounded by deadlines, and stops by itself.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from audian_fax_async import FaxClient
from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig, EmulatorThread
from audian_fax_async.mirror._state import journal_paths
from audian_fax_async.redis import RedisLimiter
from tests.redis.redis_server import RedisServer

from .processes import MirrorProcess, free_port, poll

pytestmark = pytest.mark.slow


def account_faxes(emulator: Emulator, key: str) -> list[dict[str, Any]]:
    """Every fax of the account, through the API (no faults in force)."""
    faxes: list[dict[str, Any]] = []
    with httpx2.Client(base_url=emulator.base_url, headers={"X-Auth-Token": key}, timeout=10) as api:
        while True:
            page = api.get("/fax/received", params={"limit": 100, "offset": len(faxes)}).json()
            faxes += page["faxes"]
            if len(faxes) >= page["total"] or not page["faxes"]:
                return faxes


def subscribe(emulator: Emulator, key: str, port: int) -> None:
    with httpx2.Client(base_url=emulator.base_url, headers={"X-Auth-Token": key}, timeout=10) as api:
        hook = {"url": f"http://127.0.0.1:{port}/webhook", "events": ["fax_received"]}
        assert api.post("/fax/webhooks", json=hook).status_code == 201


def manifest_ids(folder: Path) -> Counter[str]:
    manifest = folder / ".audian-manifest.jsonl"
    lines = manifest.read_text().splitlines() if manifest.exists() else []  # none yet: nothing completed
    return Counter(json.loads(line)["id"] for line in lines if line.strip())


def assert_exact_copy(folder: Path, emulator: Emulator, admin: AdminClient, key: str) -> list[dict[str, Any]]:
    """The folder holds exactly the account's faxes, each byte-identical, once in the manifest,
    and no partial file."""
    faxes = account_faxes(emulator, key)
    files = {p.stem: p for p in folder.rglob("*.pdf")}
    assert set(files) == {fax["id"] for fax in faxes}
    for fax in faxes:
        assert hashlib.sha256(files[fax["id"]].read_bytes()).hexdigest() == admin.document_sha256(key, fax["id"])
    counts = manifest_ids(folder)
    assert set(counts) == set(files) and set(counts.values()) == {1}, "a fax recorded twice"
    assert [p.name for p in folder.rglob("*.part")] == []
    return faxes


def exhausted_events(admin: AdminClient, key: str) -> set[str]:
    """Events whose every attempt (all 5) failed: lost to a receiver that relies on webhooks alone."""
    attempts: dict[str, list[str]] = {}
    for delivery in admin.deliveries(key):
        attempts.setdefault(delivery["event_id"], []).append(delivery["outcome"])
    return {event for event, outcomes in attempts.items() if outcomes.count("failed") >= 5}


@pytest.fixture
def mirrors() -> Iterator[list[MirrorProcess]]:
    """Every mirror a test starts; any still running when it ends is killed."""
    started: list[MirrorProcess] = []
    yield started
    for mirror in started:
        mirror.close()


def test_the_folder_ends_an_exact_copy_through_chaos_and_two_kills_while_faxes_stream_in(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path, mirrors: list[MirrorProcess]
) -> None:
    dest, port = tmp_path / "inbox", free_port()
    subscribe(mirror_emulator, key, port)
    admin.set_faults("chaos", bandwidth=4_000_000)  # 5% each of 500, 503, 429, drop, truncate; some in flight
    mirror = MirrorProcess(
        dest, base_url=mirror_emulator.base_url, key=key, port=port, args=("--reconcile-every", "1", "--grace", "10")
    )
    mirrors.append(mirror)
    mirror.start()
    mirror.wait_caught_up()
    admin.start_arrivals(key, rate=12)
    lost_before, cut = 0, []
    for _ in range(2):
        done = len(mirror.downloaded())

        def progressed_and_downloading() -> bool:
            return len(mirror.downloaded()) >= done + 5 and any(dest.rglob("*.part"))  # noqa: B023

        poll(progressed_and_downloading, "downloads in flight while faxes stream in")
        mirror.kill()
        cut += [p.name for p in dest.rglob("*.part")]  # what the kill left half-written
        # While it is down, deliveries fail; some exhaust their 5 attempts (24 h, compressed).
        poll(lambda: len(exhausted_events(admin, key)) > lost_before, "a delivery to exhaust its retries")  # noqa: B023
        lost_before = len(exhausted_events(admin, key))
        mirror.start()
        mirror.wait_running()
    done = len(mirror.downloaded())
    poll(lambda: len(mirror.downloaded()) >= done + 5, "downloads after the second restart")
    admin.stop_arrivals(key)

    def converged() -> bool:
        got = mirror.health()
        if got is None:
            return False
        faxes = got[1]["faxes"]
        return bool(faxes["complete"] == admin.stats(key)["faxes"] and faxes["queued"] == faxes["in_flight"] == 0)

    poll(converged, "the mirror to hold every fax", timeout=60)
    mirror.terminate()
    assert mirror.wait(timeout=15) == 0, mirror.stderr()[-3000:]
    stats = admin.stats(key)
    admin.set_faults("none")
    faxes = assert_exact_copy(dest, mirror_emulator, admin, key)
    lost = exhausted_events(admin, key)
    assert len(lost) >= 2 and len(faxes) > 20
    assert stats["downloads"]["highest"] <= 10 and stats["downloads"]["refused"] == 0  # never an 11th
    assert cut, "no kill caught a download in flight"
    assert mirror.runs == 3
    print(f"\ne2e: {len(faxes)} faxes, 2 SIGKILLs, {len(lost)} deliveries lost, {stats['downloads']['highest']} max")


def test_a_fax_delivered_by_webhook_is_on_disk_within_two_seconds(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path, mirrors: list[MirrorProcess]
) -> None:
    dest, port = tmp_path / "inbox", free_port()
    mirror = MirrorProcess(
        dest,
        base_url=mirror_emulator.base_url,
        key=key,
        port=port,
        args=("--reconcile-every", "3600", "--register-webhook", f"http://127.0.0.1:{port}"),
    )
    mirrors.append(mirror)
    mirror.start()
    mirror.wait_caught_up()
    poll(lambda: len(admin.subscriptions(key)["webhooks"]) == 1, "--register-webhook to subscribe")
    arrivals, arrived_at = 30, {}
    for _ in range(arrivals):  # each arrival delivers its webhook at once (the emulator's clock says seconds only)
        before = datetime.now(UTC)
        arrived_at[admin.arrive(key)["id"]] = before
    poll(lambda: len(mirror.downloaded()) == 6 + arrivals, "every arrival on disk")
    mirror.terminate()
    assert mirror.wait(timeout=15) == 0
    live = [e for e in mirror.downloaded() if e["id"] in arrived_at]
    assert len(live) == arrivals and {e["source"] for e in live} == {"live"}  # none waited for a sweep
    latencies = sorted((datetime.fromisoformat(e["at"]) - arrived_at[e["id"]]).total_seconds() for e in live)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(f"\nwebhook-to-disk: p50 {statistics.median(latencies):.3f} s, p95 {p95:.3f} s, max {latencies[-1]:.3f} s")
    assert p95 < 2.0
    assert_exact_copy(dest, mirror_emulator, admin, key)


def test_sigterm_mid_run_answers_503_and_exits_0_within_the_grace_period_without_a_partial_file(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path, mirrors: list[MirrorProcess]
) -> None:
    dest, port, grace = tmp_path / "inbox", free_port(), 3.0
    admin.set_faults(bandwidth=100_000)  # each document takes seconds: downloads are in flight
    mirror = MirrorProcess(dest, base_url=mirror_emulator.base_url, key=key, port=port, args=("--grace", str(grace)))
    mirrors.append(mirror)
    mirror.start()
    mirror.wait_running()

    def downloading() -> bool:
        got = mirror.health()
        return got is not None and got[1]["faxes"]["in_flight"] > 0 and any(dest.rglob("*.part"))

    poll(downloading, "downloads in flight")
    mirror.terminate()
    stopping = time.monotonic()
    seen: list[int] = []

    def answered_503() -> bool:
        got = mirror.health()
        if got is not None:
            seen.append(got[0])
        return got is not None and got[0] == 503 and got[1]["status"] == "shutting_down"

    poll(answered_503, "/healthz to answer 503", timeout=grace)
    delivery = mirror.http.post("/webhook", json={"event": "fax_received", "id": "fax_x"})
    assert delivery.status_code == 503 and delivery.headers["retry-after"]
    code = mirror.wait(timeout=grace + 10)
    took = time.monotonic() - stopping
    assert code == 0, mirror.stderr()[-3000:]
    assert took < grace + 2.0
    assert set(seen) <= {200, 503}
    assert [p.name for p in dest.rglob("*.part")] == []
    files = {p.stem: p for p in dest.rglob("*.pdf")}
    counts = manifest_ids(dest)
    assert set(counts) == set(files)  # every file that stands is whole and recorded
    last = mirror.events()[-1]
    assert last["event"] == "status" and last["status"] == "stopped"  # the closing status line
    admin.set_faults("none")
    for fax_id, path in files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == admin.document_sha256(key, fax_id)


# -- two mirrors on one folder, through Redis ----------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="module")
def roomy_emulator() -> Iterator[Emulator]:
    """An emulator that would admit 50 downloads at once: the limit of 10 must come from the limiter."""
    config = EmulatorConfig(faxes=30, seed=29, time_scale=1e-5, max_concurrent_downloads=50)
    with EmulatorThread(config) as emu:
        yield emu


def skip_quiet_period(redis_url: str, base_url: str, key: str) -> None:
    """The limiter admits nobody on a Redis that has been up for less than its lease (holders of a
    crashed Redis may still run); this Redis is new, so tell it so for the test's account."""

    async def warm_up() -> None:
        limiter = RedisLimiter.from_url(redis_url, quiet_period=0)
        async with FaxClient(key, base_url=base_url) as client, limiter.acquire(client.account):
            pass
        await limiter.aclose()

    anyio.run(warm_up)


def test_two_mirrors_on_one_folder_with_redis_download_every_fax_exactly_once_ten_at_most(
    roomy_emulator: Emulator, redis_url: str, key: str, tmp_path: Path, mirrors: list[MirrorProcess]
) -> None:
    dest = tmp_path / "shared"
    skip_quiet_period(redis_url, roomy_emulator.base_url, key)
    with roomy_emulator.admin() as admin:
        admin.set_faults(bandwidth=3_000_000)
        for _ in range(2):
            port = free_port()
            args = ("--redis", redis_url, "--register-webhook", f"http://127.0.0.1:{port}/webhook")
            mirrors.append(MirrorProcess(dest, base_url=roomy_emulator.base_url, key=key, port=port, args=args))
        for mirror in mirrors:
            mirror.start()
        for mirror in mirrors:
            mirror.wait_caught_up()
        poll(lambda: len(admin.subscriptions(key)["webhooks"]) == 2, "both webhooks")
        admin.start_arrivals(key, rate=20, count=20)  # each delivered to both mirrors
        total = 30 + 20

        def everything_once() -> bool:
            return sum(len(m.downloaded()) for m in mirrors) >= total and sum(manifest_ids(dest).values()) >= total

        poll(everything_once, "every fax in the folder", timeout=60)
        for mirror in mirrors:
            mirror.terminate()
        for mirror in mirrors:
            assert mirror.wait(timeout=15) == 0, mirror.stderr()[-3000:]
        stats = admin.stats(key)
        admin.set_faults("none")
        assert_exact_copy(dest, roomy_emulator, admin, key)
        downloads = Counter(e["id"] for m in mirrors for e in m.downloaded())
        assert len(downloads) == total and set(downloads.values()) == {1}
        assert all(m.downloaded() for m in mirrors)  # both took part
        assert stats["requests"]["download"] == {"200": total}  # each document served once
        assert stats["downloads"]["highest"] <= 10
        assert len(journal_paths(dest)) == 2
