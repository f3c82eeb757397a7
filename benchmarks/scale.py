"""Scenario 4, scale: 10,000 small faxes in one ``download_all``, in a process of its own, on asyncio
and on uvloop.

Memory growth must stay flat (bounded by the concurrency, not by the number of faxes): the RSS is
sampled every 1,000 outcomes. CPU seconds per 1,000 faxes are set against a bare httpx2 loop doing
the same downloads (without listing, checks, fsync or manifest).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from attrs import frozen

from ._child import run_child
from ._harness import FAST_DIR, LOOPS, params_json, target
from ._servers import backend

NAME = "scale"
TITLE = "4. Scale"


@frozen
class Params:
    faxes: int = 10_000
    size: int = 4096
    sample_every: int = 1000
    nginx: bool = True
    workdir: str = FAST_DIR
    loops: tuple[str, ...] = LOOPS


FULL = Params()
TINY = Params(faxes=30, size=4096, sample_every=10, nginx=False, workdir=tempfile.gettempdir())


def run(params: Params) -> dict[str, Any]:
    reports: dict[str, dict[str, Any]] = {}
    with backend(nginx=params.nginx, workdir=params.workdir) as server:
        ids = server.add_account("scale", params.faxes, params.size)
        for loop in params.loops:
            for kind in ("httpx_all", "sdk_all"):
                dest = Path(tempfile.mkdtemp(prefix=f"bench-scale-{kind}-", dir=params.workdir))
                job: dict[str, Any] = {"kind": kind, "loop": loop, "base_url": server.base_url, "key": "scale"}
                if kind == "httpx_all":
                    job["ids"] = ids
                else:
                    job["sample_every"] = params.sample_every
                try:
                    report = reports[f"{loop}/{kind}"] = run_child({**job, "dest": str(dest)})
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
                if report["faxes"] != params.faxes:
                    raise RuntimeError(f"{loop} {kind}: {report['faxes']} faxes, expected {params.faxes}")

    metrics: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    for loop in params.loops:
        sdk, bare = reports[f"{loop}/sdk_all"], reports[f"{loop}/httpx_all"]
        growth_mb = sdk["growth"] / 1e6
        samples = sdk["rss_samples"]
        # Flat means the second half of the run added (almost) nothing: compare the middle with the end.
        middle = samples[len(samples) // 2 - 1][1] if len(samples) >= 2 else sdk["rss_before"]
        late_growth_mb = (samples[-1][1] - middle) / 1e6 if samples else 0.0
        per_1000 = sdk["cpu_s"] / params.faxes * 1000
        bare_per_1000 = bare["cpu_s"] / params.faxes * 1000
        metrics[loop] = {
            "sdk_peak_growth_MB": round(growth_mb, 2),
            "sdk_growth_second_half_MB": round(late_growth_mb, 2),
            "rss_samples_MB": [[n, round(b / 1e6, 1)] for n, b in samples],
            "sdk_cpu_s_per_1000": round(per_1000, 3),
            "httpx2_cpu_s_per_1000": round(bare_per_1000, 3),
            "sdk_cpu_vs_httpx2": round(per_1000 / bare_per_1000, 2),
            "sdk_faxes_per_s": round(params.faxes / sdk["wall_s"], 1),
            "httpx2_faxes_per_s": round(params.faxes / bare["wall_s"], 1),
            "httpx2_peak_growth_MB": round(bare["growth"] / 1e6, 2),
        }
        targets += [
            target(f"{params.faxes} faxes: peak memory growth", "≤ 30 MB", growth_mb, growth_mb <= 30, loop=loop,
                   unit="MB"),
            target("memory flat: growth over the second half", "≈ 0 (≤ 3 MB)", late_growth_mb,
                   late_growth_mb <= 3, loop=loop, unit="MB"),
            target("CPU seconds per 1,000 faxes", "report (no target)", per_1000, True, loop=loop, unit="s"),
        ]  # fmt: skip
    return {
        "params": {**params_json(params), "server": "nginx" if params.nginx else "emulator"},
        "metrics": metrics,
        "targets": targets,
    }
