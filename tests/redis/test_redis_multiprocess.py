"""The limit across processes: 5 worker processes x 20 tasks bulk-download one account from the
emulator through ``RedisLimiter``; one is SIGKILLed while holding slots; Redis restarts mid-run.

The emulator here would admit 50 downloads at once, so its "highest concurrency" measures the
limiter, not the server's own 429.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from audian_fax_async._config import account_id
from audian_fax_async.emulator import AdminClient, Emulator
from audian_fax_async.redis import RedisLimiter

from .redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKER = Path(__file__).with_name("redis_download_worker.py")
WORKERS = 5
FAXES = 100
DOC_BYTES = 40_000
BANDWIDTH = 250_000  # bytes/s per download: about 0.16 s each, so downloads overlap
STALL = 0.4  # seconds a process stays stopped after the Redis restart


class Worker:
    def __init__(self, process: subprocess.Popen[str], index: int) -> None:
        self.process = process
        self.index = index
        self.lines: list[dict[str, Any]] = []

    def finish(self, timeout: float = 60) -> list[dict[str, Any]]:
        out, err = self.process.communicate(timeout=timeout)
        self.lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        if self.process.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(f"worker {self.index} exited {self.process.returncode}:\n{err[-3000:]}")
        return self.lines


def start_worker(
    redis_url: str, emulator: Emulator, key: str, dest: Path, index: int, *, ids: str = "", **timing: float
) -> Worker:
    options = {"lease": 2.0, "renew": 0.5, "reconnect-window": 5.0, **timing}
    argv = [
        sys.executable, str(WORKER),
        "--redis", redis_url, "--base-url", emulator.base_url, "--api-key", key, "--dest", str(dest),
        "--worker", str(index), "--workers", str(WORKERS), "--tasks", "20",
    ]  # fmt: skip
    if ids:
        argv += ["--ids", ids]
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Worker(process, index)


@contextmanager
def workers_cleanup(workers: list[Worker]) -> Iterator[None]:
    try:
        yield
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.communicate()


def new_account(admin: AdminClient, bandwidth: int = BANDWIDTH) -> str:
    key = "test_" + secrets.token_hex(8)
    admin.inject(key, count=FAXES, size=DOC_BYTES)
    admin.set_faults(bandwidth=bandwidth)
    return key


def check_documents(admin: AdminClient, key: str, dest: Path, done: dict[str, str]) -> None:
    """Every fax arrived, and each file on disk is byte-identical to the emulator's document."""
    assert len(done) == FAXES
    for fax_id, reported in done.items():
        expected = admin.document_sha256(key, fax_id)
        assert reported == expected, fax_id
        assert hashlib.sha256((dest / f"{fax_id}.pdf").read_bytes()).hexdigest() == expected, fax_id


def downloads(admin: AdminClient, key: str) -> dict[str, int]:
    stats: dict[str, int] = admin.stats(key)["downloads"]
    return stats


def test_five_processes_share_ten_slots_and_every_document_arrives_intact(
    redis_server: RedisServer, redis_emulator: Emulator, redis_admin: AdminClient, tmp_path: Path
) -> None:
    key = new_account(redis_admin)
    workers = [start_worker(redis_server.url, redis_emulator, key, tmp_path, i) for i in range(WORKERS)]
    with workers_cleanup(workers):
        outputs = [worker.finish() for worker in workers]

    done = {line["id"]: line["sha256"] for lines in outputs for line in lines if line["event"] == "done"}
    failed = [line for lines in outputs for line in lines if line["event"] == "failed"]
    assert failed == []
    check_documents(redis_admin, key, tmp_path, done)
    stats = downloads(redis_admin, key)
    assert stats["highest"] <= 10
    assert stats["highest"] >= 8  # the slots were actually shared out, not serialised
    assert stats["refused"] == 0  # never a 429: the limiter held the line, not the server
    # Every process really competed (each held slots) and the account's total is exact.
    per_process = [next(line for line in lines if line["event"] == "stats") for lines in outputs]
    assert all(entry["total"] >= FAXES // WORKERS for entry in per_process)

    async def global_view() -> tuple[int, int]:
        limiter = RedisLimiter.from_url(redis_server.url)
        try:
            stats = await limiter.global_statistics(account_id(key, httpx2.URL(redis_emulator.base_url)))
        finally:
            await limiter.aclose()
        return stats.highest_in_use, stats.in_use

    highest, in_use = anyio.run(global_view)
    assert highest <= 10 and in_use == 0


def test_a_killed_worker_s_slots_return_within_lease_plus_one_renewal_and_the_run_completes(
    redis_server: RedisServer, redis_emulator: Emulator, redis_admin: AdminClient, tmp_path: Path
) -> None:
    lease, renew = 1.0, 0.25
    key = new_account(redis_admin)
    account = account_id(key, httpx2.URL(redis_emulator.base_url))
    workers = [
        start_worker(redis_server.url, redis_emulator, key, tmp_path, i, lease=lease, renew=renew)
        for i in range(WORKERS)
    ]
    victim = workers[0]

    async def kill_and_watch() -> tuple[int, float]:
        limiter = RedisLimiter.from_url(redis_server.url)
        prefix = f":{victim.process.pid}:"
        try:
            with anyio.fail_after(30):
                while True:  # until the victim holds slots mid-download
                    held = [t for t in await limiter.holders(account) if prefix in t]
                    if held:
                        break
                    await anyio.sleep(0.005)
            victim.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            with anyio.fail_after(lease + renew + 2):
                while any(prefix in t for t in await limiter.holders(account)):
                    await anyio.sleep(0.01)
            return len(held), time.monotonic() - killed_at
        finally:
            await limiter.aclose()

    with workers_cleanup(workers):
        held, returned_after = anyio.run(kill_and_watch)
        victim.finish()
        # A supervisor restarts the worker; it downloads its whole share again.
        workers.append(start_worker(redis_server.url, redis_emulator, key, tmp_path, 0, lease=lease, renew=renew))
        outputs = [worker.finish() for worker in workers[1:]]

    assert held >= 1
    assert 0 < returned_after <= lease + renew
    done = {line["id"]: line["sha256"] for lines in outputs for line in lines if line["event"] == "done"}
    assert [line for lines in outputs for line in lines if line["event"] == "failed"] == []
    check_documents(redis_admin, key, tmp_path, done)
    stats = downloads(redis_admin, key)
    assert stats["highest"] <= 10 and stats["refused"] == 0


def test_a_redis_restart_mid_run_never_over_admits_and_fails_only_with_a_clear_error(
    own_redis_server: RedisServer, redis_emulator: Emulator, redis_admin: AdminClient, tmp_path: Path
) -> None:
    # Downloads of about 0.8 s, renewed every 0.1 s: Redis comes back while many are in flight.
    key = new_account(redis_admin, bandwidth=50_000)
    account = account_id(key, httpx2.URL(redis_emulator.base_url))
    workers = [
        start_worker(own_redis_server.url, redis_emulator, key, tmp_path, i, lease=1.0, renew=0.1)
        for i in range(WORKERS)
    ]

    async def wait_until_busy() -> dict[str, float]:
        limiter = RedisLimiter.from_url(own_redis_server.url)
        try:
            with anyio.fail_after(30):
                while len(holders := await limiter.holders(account)) < 10:
                    await anyio.sleep(0.005)
                return holders
        finally:
            await limiter.aclose()

    with workers_cleanup(workers):
        holders = anyio.run(wait_until_busy)
        # One process is stalled across the restart (an overloaded host): it cannot notice that its
        # leases are gone until it runs again, while its downloads go on at the server.
        stalled = max(workers, key=lambda w: sum(f":{w.process.pid}:" in token for token in holders))
        stalled.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            own_redis_server.restart(down_for=0.1)  # every key is lost, as with a crash without persistence
            restart_took = time.monotonic() - started
            time.sleep(STALL)
        finally:
            stalled.process.send_signal(signal.SIGCONT)
        outputs = [worker.finish() for worker in workers]

    done = {line["id"]: line["sha256"] for lines in outputs for line in lines if line["event"] == "done"}
    failed = {line["id"]: line for lines in outputs for line in lines if line["event"] == "failed"}
    # In-flight downloads lose their slot with the data: each one that cannot finish before its next
    # renewal stops with LimiterError (usually 5 to 10 of them; none if all finish first), never
    # with anything else, and none runs on over the limit (below: no 429, highest at most 10).
    errors = {line["error"] for line in failed.values()}
    assert errors <= {"LimiterError"}, f"restart took {restart_took:.3f} s, leases left {holders}: {errors}"
    assert len(done) + len(failed) == FAXES
    # The run recovered: downloads went on after the restart; a rerun of the failed ones completes.
    if failed:
        rerun = start_worker(
            own_redis_server.url, redis_emulator, key, tmp_path, 0, ids=",".join(failed), lease=1.0, renew=0.1
        )
        with workers_cleanup([rerun]):
            lines = rerun.finish()
        done.update({line["id"]: line["sha256"] for line in lines if line["event"] == "done"})
    check_documents(redis_admin, key, tmp_path, done)
    stats = downloads(redis_admin, key)
    assert stats["highest"] <= 10
    assert stats["refused"] == 0
