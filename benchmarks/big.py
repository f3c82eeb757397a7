"""Scenario 3, big documents: 10 x 64 MiB side by side with bare httpx2, and one 1 GiB document's
peak memory growth (measured in a process of its own, against bare httpx2 doing the same), on
asyncio and on uvloop."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from attrs import frozen

from ._baselines import httpx_loop, sdk_stack_download_all
from ._child import run_child
from ._harness import FAST_DIR, LOOPS, Measure, alternate, clock, params_json, run_on, target
from ._servers import backend

NAME = "big"
TITLE = "3. Big documents"
MiB = 1024 * 1024


@frozen
class Params:
    count: int = 10
    size: int = 64 * MiB
    huge: int = 1024 * MiB
    rounds: int = 3
    nginx: bool = True
    workdir: str = FAST_DIR
    loops: tuple[str, ...] = LOOPS


FULL = Params()
TINY = Params(count=2, size=1 * MiB, huge=4 * MiB, rounds=1, nginx=False, workdir=tempfile.gettempdir())


def run(params: Params) -> dict[str, Any]:
    with backend(nginx=params.nginx, workdir=params.workdir) as server:
        ids = server.add_account("big", params.count, params.size)
        urls = [server.download_url(i) for i in ids]
        expected = params.count * params.size

        def measured(loop: str, kind: str) -> Measure:
            def once() -> float:
                dest = Path(tempfile.mkdtemp(prefix=f"bench-big-{kind}-", dir=params.workdir))
                try:
                    start = clock()
                    if kind == "sdk":
                        job = sdk_stack_download_all("sdk", server.base_url, "big", dest, params.count)
                    else:
                        job = httpx_loop(urls, "big", dest, params.count)
                    done = run_on(loop, job)
                    elapsed = clock() - start
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
                if done != expected:
                    raise RuntimeError(f"{loop} {kind}: {done} bytes, expected {expected}")
                return elapsed

            return once

        variants = {f"{loop}/{kind}": measured(loop, kind) for loop in params.loops for kind in ("httpx2", "sdk")}
        timings = alternate(variants, params.rounds)

        [huge_id] = server.add_account("huge", 1, params.huge)
        memory: dict[str, dict[str, Any]] = {}
        for loop in params.loops:
            for kind in ("httpx_one", "sdk_one"):
                dest = Path(tempfile.mkdtemp(prefix="bench-huge-", dir=params.workdir))
                job = {"kind": kind, "loop": loop, "base_url": server.base_url, "key": "huge", "fax_id": huge_id}
                try:
                    report = memory[f"{loop}/{kind}"] = run_child({**job, "dest": str(dest)})
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
                if report["bytes"] != params.huge:
                    raise RuntimeError(f"{loop} {kind}: {report['bytes']} bytes, expected {params.huge}")

    metrics: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    for loop in params.loops:
        ratio = timings.ratio(f"{loop}/sdk", f"{loop}/httpx2")
        sdk_one, httpx_one = memory[f"{loop}/sdk_one"], memory[f"{loop}/httpx_one"]
        growth_mb = sdk_one["growth"] / 1e6
        metrics[loop] = {
            "sdk_MBps": round(expected / 1e6 / timings.median(f"{loop}/sdk"), 1),
            "httpx2_MBps": round(expected / 1e6 / timings.median(f"{loop}/httpx2"), 1),
            "sdk_vs_httpx2": round(ratio, 3),
            "huge_sdk_peak_growth_MB": round(growth_mb, 2),
            "huge_httpx2_peak_growth_MB": round(httpx_one["growth"] / 1e6, 2),
            "huge_sdk_MBps": round(params.huge / 1e6 / sdk_one["wall_s"], 1),
            "huge_httpx2_MBps": round(params.huge / 1e6 / httpx_one["wall_s"], 1),
        }
        targets += [
            target(f"{params.count} x {params.size // MiB} MiB: SDK vs bare httpx2", "report (no target)", ratio,
                   True, loop=loop, unit="x"),
            target(f"one {params.huge // MiB} MiB document: peak memory growth", "≤ 10 MB", growth_mb,
                   growth_mb <= 10, loop=loop, unit="MB"),
        ]  # fmt: skip
    return {
        "params": {**params_json(params), "server": "nginx" if params.nginx else "emulator"},
        "timings": timings.to_json(),
        "metrics": metrics,
        "targets": targets,
    }
