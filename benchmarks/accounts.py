"""Scenario 5, many accounts: 50 accounts x 10 slots in one process (500 downloads in flight).

Each account has its own ``FaxClient`` and ``download_all``; a heartbeat task asks to wake every
10 ms and records how late it woke (the event-loop lag every other task in the process would
feel). Side by side, alternated, on asyncio and on uvloop: the SDK on its own client, the SDK on
``AiohttpTransport``, and 50 bare httpx2 loops of 10 workers each, under the same heartbeat. Run
twice: documents at a WAN-like 20 KB/s per connection (nginx's ``limit_rate``; the target), and as
fast as loopback goes (the CPU saturated; reported).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from attrs import frozen

from ._baselines import bare_httpx_client, httpx_loop, sdk_client, sdk_download_all
from ._harness import FAST_DIR, LOOPS, clock, params_json, run_on, target
from ._servers import Backend, backend

NAME = "accounts"
TITLE = "5. Many accounts"
TICK = 0.01
KINDS = ("sdk", "sdk_aiohttp", "httpx2")


@frozen
class Params:
    accounts: int = 50
    faxes: int = 20
    size: int = 102_400
    slots: int = 10
    paced_rate: int = 20_000
    rounds: int = 2  # lags pooled over the rounds: one round's p99 alone swings widely on this machine
    nginx: bool = True
    workdir: str = FAST_DIR
    loops: tuple[str, ...] = LOOPS


FULL = Params()
TINY = Params(accounts=3, faxes=4, size=20_000, slots=2, rounds=1, nginx=False, workdir=tempfile.gettempdir())


async def _with_heartbeat(work: Callable[[], Awaitable[None]]) -> tuple[float, list[float]]:
    """Run ``work`` while a heartbeat measures how late the loop wakes it; (seconds, lags)."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            before = clock()
            await asyncio.sleep(TICK)
            lags.append(max(0.0, clock() - before - TICK))

    beat = asyncio.ensure_future(heartbeat())
    start = clock()
    try:
        await work()
    finally:
        elapsed = clock() - start
        stop.set()
        await beat
    return elapsed, lags


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[98]


async def _one_run(
    server: Backend, kind: str, urls: dict[str, list[str]], dests: dict[str, Path], params: Params
) -> tuple[float, list[float]]:
    expected = sum(len(u) for u in urls.values()) * params.size
    async with AsyncExitStack() as stack:
        # Clients are made before the heartbeat starts: a service makes them once, at startup.
        jobs: list[Awaitable[int]]
        if kind == "httpx2":
            jobs = [
                httpx_loop(urls[k], k, d, params.slots, client=bare_httpx_client(k, params.slots))
                for k, d in dests.items()
            ]
        else:
            clients = {k: await stack.enter_async_context(sdk_client(kind, server.base_url, k)) for k in dests}
            jobs = [sdk_download_all(clients[k], d, params.slots) for k, d in dests.items()]

        async def work() -> None:
            done = await asyncio.gather(*jobs)
            if sum(done) != expected:
                raise RuntimeError(f"{kind}: {sum(done)} bytes, expected {expected}")

        return await _with_heartbeat(work)


def _side_by_side(server: Backend, params: Params, prefix: str) -> dict[str, dict[str, float]]:
    """Every kind on every loop, ``params.rounds`` each, alternating; faxes/s and lag of each."""
    keys = [f"{prefix}acct-{n:02d}" for n in range(params.accounts)]
    urls = {key: [server.download_url(i) for i in server.add_account(key, params.faxes, params.size)] for key in keys}
    total = params.accounts * params.faxes
    names = [f"{loop}/{kind}" for loop in params.loops for kind in KINDS]
    results: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in names}
    for r in range(params.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            loop, _, kind = name.partition("/")
            root = Path(tempfile.mkdtemp(prefix=f"bench-accounts-{kind}-", dir=params.workdir))
            dests = {key: root / key for key in keys}
            for dest in dests.values():
                dest.mkdir()
            try:
                results[name].append(run_on(loop, _one_run(server, kind, urls, dests, params)))
            finally:
                shutil.rmtree(root, ignore_errors=True)

    def summary(name: str) -> dict[str, float]:
        seconds = statistics.median(t for t, _ in results[name])
        lags = [lag for _, run_lags in results[name] for lag in run_lags]
        return {
            "faxes_per_s": round(total / seconds, 1),
            "lag_p99_ms": round(_p99(lags) * 1000, 2),
            "lag_max_ms": round(max(lags, default=0.0) * 1000, 2),
            "lag_median_ms": round(statistics.median(lags) * 1000, 2) if lags else 0.0,
        }

    return {name: summary(name) for name in names}


def run(params: Params) -> dict[str, Any]:
    with backend(nginx=params.nginx, workdir=params.workdir, paced_rate=params.paced_rate) as server:
        paced = _side_by_side(server, params, "paced-" if params.nginx else "")
        saturated = _side_by_side(server, params, "") if params.nginx else paced
    ideal = params.accounts * params.slots * params.paced_rate / params.size if params.nginx else 0.0
    metrics: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    for loop in params.loops:
        numbers: dict[str, Any] = {}
        for mode, figures in (("paced", paced), ("saturated", saturated)):
            for kind in KINDS:
                numbers.update({f"{mode}_{kind}_{k}": v for k, v in figures[f"{loop}/{kind}"].items()})
            bare = figures[f"{loop}/httpx2"]["faxes_per_s"]
            numbers[f"{mode}_sdk_vs_httpx2"] = round(figures[f"{loop}/sdk"]["faxes_per_s"] / bare, 3)
            numbers[f"{mode}_sdk_aiohttp_vs_httpx2"] = round(figures[f"{loop}/sdk_aiohttp"]["faxes_per_s"] / bare, 3)
        if ideal:
            numbers["paced_ideal_faxes_per_s"] = round(ideal, 1)
            numbers["paced_sdk_share_of_ideal"] = round(paced[f"{loop}/sdk"]["faxes_per_s"] / ideal, 3)
        metrics[loop] = numbers
        sdk_lag = paced[f"{loop}/sdk"]["lag_p99_ms"]
        aiohttp_lag = paced[f"{loop}/sdk_aiohttp"]["lag_p99_ms"]
        targets += [
            target("event-loop lag p99, SDK, documents at a WAN-like rate", "≤ 20 ms", sdk_lag, sdk_lag <= 20,
                   loop=loop, unit="ms"),
            target("event-loop lag p99, SDK on AiohttpTransport, documents at a WAN-like rate", "≤ 20 ms",
                   aiohttp_lag, aiohttp_lag <= 20, loop=loop, unit="ms"),
            target("event-loop lag p99, SDK, loopback as fast as it goes", "report (saturated CPU)",
                   saturated[f"{loop}/sdk"]["lag_p99_ms"], True, loop=loop, unit="ms"),
            target("faxes per second, SDK, loopback as fast as it goes", "report (no target)",
                   saturated[f"{loop}/sdk"]["faxes_per_s"], True, loop=loop, unit="faxes/s"),
        ]  # fmt: skip
    return {
        "params": {**params_json(params), "server": "nginx" if params.nginx else "emulator"},
        "metrics": metrics,
        "targets": targets,
    }
