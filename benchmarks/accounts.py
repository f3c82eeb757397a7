"""Scenario 5, many accounts: 50 accounts x 10 slots in one process (500 downloads in flight).

Each account has its own ``FaxClient`` and ``download_all``; a heartbeat task asks to wake every
10 ms and records how late it woke (the event-loop lag every other task in the process would
feel). Side by side: 50 bare httpx2 loops of 10 workers each, under the same heartbeat.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from attrs import asdict, frozen

from audian_fax_async import AiohttpTransport, FaxClient

from ._baselines import bare_httpx_client, httpx_loop, sdk_download_all
from ._harness import FAST_DIR, clock, target
from ._servers import Backend, backend

NAME = "accounts"
TITLE = "5. Many accounts"
TICK = 0.01


@frozen
class Params:
    accounts: int = 50
    faxes: int = 20
    size: int = 102_400
    slots: int = 10
    paced_rate: int = 20_000
    rounds: int = 3  # lags pooled over the rounds: one round's p99 swung 10-31 ms on this machine
    nginx: bool = True
    workdir: str = FAST_DIR


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


def _side_by_side(server: Backend, params: Params, prefix: str) -> dict[str, dict[str, float]]:
    """SDK and bare httpx2, ``params.rounds`` each, alternating; faxes/s and lag per variant."""
    keys = [f"{prefix}acct-{n:02d}" for n in range(params.accounts)]
    urls = {key: [server.download_url(i) for i in server.add_account(key, params.faxes, params.size)] for key in keys}
    total = params.accounts * params.faxes
    kinds = ("sdk", "sdk_aiohttp", "httpx2")
    results: dict[str, list[tuple[float, list[float]]]] = {kind: [] for kind in kinds}
    for r in range(params.rounds):
        for kind in kinds[r % 3 :] + kinds[: r % 3]:
            root = Path(tempfile.mkdtemp(prefix=f"bench-accounts-{kind}-", dir=params.workdir))
            dests = {key: root / key for key in keys}
            for dest in dests.values():
                dest.mkdir()

            async def main(kind: str = kind, dests: dict[str, Path] = dests) -> tuple[float, list[float]]:
                # Clients are made before the heartbeat starts: a service makes them once, at startup.
                jobs: list[Awaitable[int]]
                if kind.startswith("sdk"):
                    sdk_clients = {
                        k: FaxClient(
                            api_key=k,
                            base_url=server.base_url,
                            transport=AiohttpTransport() if kind == "sdk_aiohttp" else None,
                        )
                        for k in keys
                    }
                    jobs = [
                        sdk_download_all(server.base_url, k, d, params.slots, client=sdk_clients[k])
                        for k, d in dests.items()
                    ]
                else:
                    bare_clients = {k: bare_httpx_client(k, params.slots) for k in keys}
                    jobs = [httpx_loop(urls[k], k, d, params.slots, client=bare_clients[k]) for k, d in dests.items()]

                async def work() -> None:
                    done = await asyncio.gather(*jobs)
                    if sum(done) != total * params.size:
                        raise RuntimeError(f"{kind}: {sum(done)} bytes, expected {total * params.size}")

                return await _with_heartbeat(work)

            try:
                results[kind].append(asyncio.run(main()))
            finally:
                shutil.rmtree(root, ignore_errors=True)

    def summary(kind: str) -> dict[str, float]:
        seconds = statistics.median(t for t, _ in results[kind])
        lags = [lag for _, run_lags in results[kind] for lag in run_lags]
        return {
            "faxes_per_s": round(total / seconds, 1),
            "lag_p99_ms": round(_p99(lags) * 1000, 2),
            "lag_max_ms": round(max(lags, default=0.0) * 1000, 2),
            "lag_median_ms": round(statistics.median(lags) * 1000, 2) if lags else 0.0,
        }

    return {kind: summary(kind) for kind in kinds}


def run(params: Params) -> dict[str, Any]:
    with backend(nginx=params.nginx, workdir=params.workdir, paced_rate=params.paced_rate) as server:
        paced = _side_by_side(server, params, "paced-" if params.nginx else "")
        saturated = _side_by_side(server, params, "") if params.nginx else paced
    ideal = params.accounts * params.slots * params.paced_rate / params.size if params.nginx else 0.0
    sdk = paced["sdk"]
    metrics: dict[str, Any] = {}
    for mode, numbers in (("paced", paced), ("saturated", saturated)):
        for kind, values in numbers.items():
            metrics.update({f"{mode}_{kind}_{k}": v for k, v in values.items()})
        metrics[f"{mode}_sdk_vs_httpx"] = round(numbers["sdk"]["faxes_per_s"] / numbers["httpx2"]["faxes_per_s"], 3)
        metrics[f"{mode}_sdk_aiohttp_vs_httpx"] = round(
            numbers["sdk_aiohttp"]["faxes_per_s"] / numbers["httpx2"]["faxes_per_s"], 3
        )
    if ideal:
        metrics["paced_ideal_faxes_per_s"] = round(ideal, 1)
        metrics["paced_sdk_share_of_ideal"] = round(sdk["faxes_per_s"] / ideal, 3)
    return {
        "params": {**asdict(params), "server": "nginx" if params.nginx else "emulator"},
        "metrics": metrics,
        "targets": [
            target(
                "event-loop lag p99, SDK, documents at a WAN-like rate",
                "≤ 20 ms",
                sdk["lag_p99_ms"],
                sdk["lag_p99_ms"] <= 20,
                unit="ms",
            ),
            target(
                "event-loop lag p99, SDK on AiohttpTransport, documents at a WAN-like rate",
                "≤ 20 ms",
                paced["sdk_aiohttp"]["lag_p99_ms"],
                paced["sdk_aiohttp"]["lag_p99_ms"] <= 20,
                unit="ms",
            ),
            target(
                "event-loop lag p99, SDK, loopback as fast as it goes",
                "report (saturated CPU)",
                saturated["sdk"]["lag_p99_ms"],
                True,
                unit="ms",
            ),
            target(
                "faxes per second, SDK, loopback as fast as it goes",
                "report (no target)",
                saturated["sdk"]["faxes_per_s"],
                True,
                unit="faxes/s",
            ),
        ],
    }
