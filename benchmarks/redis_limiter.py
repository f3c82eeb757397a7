"""RedisLimiter against a local redis-server: slot utilisation with a backlog, and acquire latency.

Run ``python -m benchmarks.redis_limiter`` (starts its own redis-server on a free loopback port, or
uses ``--redis-url``). Three measurements:

* **Utilisation with a backlog**: ``--processes`` worker processes x ``--tasks`` tasks, each holding
  a slot for a random 20-80 ms (then 150-250 ms, closer to a real download) and asking again at once,
  so there is always a backlog. Each process records when it entered and left each slot (wall clock,
  one host, for measuring only: the limiter itself uses Redis time). Utilisation is the mean number
  of slots in use over the window while the backlog lasted, divided by the limit (target: 90%).
  The highest concurrency seen is checked too (must be at most the limit).
* **Hand-off**: for each release, the time until the next admission anywhere (p50, p99).
* **Uncontended acquire latency**: one task acquires and releases in a loop (p50, p99).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from audian_fax_async.redis import RedisLimiter

LIMIT = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="audian-bench-redis-")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.01)
        raise SystemExit("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the worker process --------------------------------------------------------------------------


async def _worker(
    url: str, account: str, tasks: int, start_at: float, seconds: float, hold: tuple[float, float]
) -> None:
    limiter = RedisLimiter.from_url(url, lease=10.0, renew_interval=2.5, quiet_period=0.0)
    intervals: list[tuple[float, float]] = []
    rng = random.Random(os.getpid())
    async with limiter.acquire(account + ":warm-up"):  # connect and load the scripts before the clock runs
        pass
    await anyio.sleep(max(0.0, start_at - time.time()))  # every process starts asking at once
    stop_at = start_at + seconds

    async def task() -> None:
        while time.time() < stop_at:
            async with limiter.acquire(account):
                entered = time.time()
                await anyio.sleep(rng.uniform(*hold))
                intervals.append((entered, time.time()))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(task)
    finally:
        await limiter.aclose()
    sys.stdout.write(json.dumps({"intervals": intervals, "stop_at": stop_at}) + "\n")


# -- the measurements ---------------------------------------------------------------------------


async def _first_use(url: str, account: str) -> None:
    # An account new to a Redis is quiet for 2 x renew_interval (see docs/redis.md); pay it here,
    # outside the measured window.
    limiter = RedisLimiter.from_url(url, quiet_period=0.0)
    try:
        async with limiter.acquire(account):
            pass
    finally:
        await limiter.aclose()


def utilisation(url: str, processes: int, tasks: int, seconds: float, hold: tuple[float, float]) -> dict[str, Any]:
    account = "bench_" + secrets.token_hex(4)
    anyio.run(_first_use, url, account)
    start_at = time.time() + 1.0 + 0.5 * processes  # after every interpreter has started
    argv = [sys.executable, "-m", "benchmarks.redis_limiter", "--worker", url, account, str(tasks)]
    argv += [str(start_at), str(seconds)]
    argv += [str(hold[0]), str(hold[1])]
    children = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    intervals: list[tuple[float, float]] = []
    stop_at = 0.0
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        data = json.loads(out.strip().splitlines()[-1])
        intervals += [tuple(pair) for pair in data["intervals"]]
        stop_at = max(stop_at, data["stop_at"])
    # The backlog lasts from the common start until the tasks stop asking (stop_at).
    start = stop_at - seconds
    window = stop_at - start
    busy = sum(max(0.0, min(leave, stop_at) - max(enter, start)) for enter, leave in intervals)
    events = sorted([(enter, 1) for enter, _ in intervals] + [(leave, -1) for _, leave in intervals])
    inside = highest = 0
    for _, step in events:
        inside += step
        highest = max(highest, inside)
    enters = sorted(enter for enter, _ in intervals)
    handoffs = []
    for _, leave in intervals:
        i = bisect.bisect_left(enters, leave)
        if leave < stop_at - 0.5 and i < len(enters):
            handoffs.append(enters[i] - leave)
    return {
        "processes": processes,
        "tasks_per_process": tasks,
        "hold_ms": [hold[0] * 1000, hold[1] * 1000],
        "admissions": len(intervals),
        "utilisation": busy / (LIMIT * window),
        "highest_concurrency": highest,
        "handoff_p50_ms": _percentile(handoffs, 0.5) * 1000,
        "handoff_p99_ms": _percentile(handoffs, 0.99) * 1000,
    }


async def uncontended(url: str, rounds: int) -> dict[str, Any]:
    limiter = RedisLimiter.from_url(url, quiet_period=0.0)
    account = "bench_" + secrets.token_hex(4)
    waits = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            async with limiter.acquire(account):
                waits.append(time.perf_counter() - started)
    finally:
        await limiter.aclose()
    waits = waits[10:]  # connection set-up and script loading
    return {
        "rounds": len(waits),
        "acquire_p50_ms": statistics.median(waits) * 1000,
        "acquire_p99_ms": _percentile(waits, 0.99) * 1000,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, account, tasks, start_at, seconds, low, high = sys.argv[2:9]
        anyio.run(_worker, url, account, int(tasks), float(start_at), float(seconds), (float(low), float(high)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=10, help="tasks per process")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each backlog run")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    server = None if args.redis_url else _Server()
    url = args.redis_url or (server.url if server else "")
    try:
        results = {
            "utilisation_short_holds": utilisation(url, args.processes, args.tasks, args.seconds, (0.02, 0.08)),
            "utilisation_download_like": utilisation(url, args.processes, args.tasks, args.seconds, (0.15, 0.25)),
            "uncontended": anyio.run(uncontended, url, 2000),
        }
    finally:
        if server is not None:
            server.close()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    for name in ("utilisation_short_holds", "utilisation_download_like"):
        row = results[name]
        met = row["utilisation"] >= 0.9 and row["highest_concurrency"] <= LIMIT
        verdict = "met" if met else "MISSED"
        print(f"{name}: {row['utilisation']:.1%} of {LIMIT} slots, highest {row['highest_concurrency']} ({verdict})")


if __name__ == "__main__":
    main()
