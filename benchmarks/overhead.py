"""Scenario 2, client overhead: 1,000 documents of 450 KB from nginx on loopback, 10 at a time.

The server is not the bottleneck, so what differs between the variants is the client. Side by side,
alternated, on asyncio and on uvloop: the SDK's ``download_all`` (listing, checks, sha256, fsync,
manifest included) on its own client, on a stock ``httpx2.AsyncClient`` the user passes in, and on
``AiohttpTransport``; bare httpx2 and aiohttp loops; and both with the SDK's per-file guarantees added
by hand (``*_checked``, see ``_baselines.py``); and the SDK with an OpenTelemetry SDK tracer and
meter configured (``sdk_otel``) beside the SDK without. Files go to ``/dev/shm`` so that the disk does not
hide the client's cost (fsync is free there; on a real disk it costs every variant that does it the
same).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from attrs import frozen

from ._baselines import BASELINES, SDK_STACKS, sdk_stack_download_all
from ._harness import FAST_DIR, LOOPS, Measure, alternate, clock, params_json, run_on, target
from ._servers import Backend, backend

NAME = "overhead"
TITLE = "2. Client overhead"
#: The baselines, the SDK as users run it, the SDK on AiohttpTransport with aiohttp's own 64 KiB read
#: buffer (what the transport's 256 KiB default buys), and the SDK reporting spans and metrics.
KINDS = (*BASELINES, *SDK_STACKS, "sdk_aiohttp_64k", "sdk_otel")


@frozen
class Params:
    faxes: int = 1000
    size: int = 460_800
    concurrency: int = 10
    rounds: int = 5
    nginx: bool = True
    workdir: str = FAST_DIR
    loops: tuple[str, ...] = LOOPS


FULL = Params()
TINY = Params(faxes=12, size=20_000, concurrency=4, rounds=1, nginx=False, workdir=tempfile.gettempdir())


def _job(
    kind: str, server: Backend, key: str, urls: list[str], dest: Path, concurrency: int
) -> Coroutine[Any, Any, int]:
    if kind in BASELINES:
        return BASELINES[kind](urls, key, dest, concurrency)
    return sdk_stack_download_all(kind, server.base_url, key, dest, concurrency)


def run(params: Params) -> dict[str, Any]:
    key = "bench-overhead"
    with backend(nginx=params.nginx, workdir=params.workdir) as server:
        ids = server.add_account(key, params.faxes, params.size)
        urls = [server.download_url(i) for i in ids]
        expected = params.faxes * params.size
        cpu: dict[str, list[float]] = {}

        def once(loop: str, kind: str, account: str, account_urls: list[str], name: str | None) -> float:
            dest = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=params.workdir))
            try:
                cpu_start = time.process_time()
                start = clock()
                done = run_on(loop, _job(kind, server, account, account_urls, dest, params.concurrency))
                elapsed = clock() - start
                if name is not None:
                    cpu.setdefault(name, []).append(time.process_time() - cpu_start)
            finally:
                shutil.rmtree(dest, ignore_errors=True)
            if done != len(account_urls) * params.size:
                raise RuntimeError(f"{loop} {kind}: {done} bytes, expected {len(account_urls) * params.size}")
            return elapsed

        def measured(loop: str, kind: str) -> Measure:
            return lambda: once(loop, kind, key, urls, f"{loop}/{kind}")

        # One untimed run of each first: the first FaxClient of a process imports what later ones reuse.
        warm_key = "bench-overhead-warm"
        warm_urls = [server.download_url(i) for i in server.add_account(warm_key, min(params.faxes, 20), params.size)]
        for loop in params.loops:
            for kind in KINDS:
                once(loop, kind, warm_key, warm_urls, None)
        server.drop_account(warm_key)
        variants = {f"{loop}/{kind}": measured(loop, kind) for loop in params.loops for kind in KINDS}
        timings = alternate(variants, params.rounds)

    megabytes = expected / 1e6
    metrics: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    for loop in params.loops:

        def ratio(name: str, baseline: str, loop: str = loop) -> float:
            return timings.ratio(f"{loop}/{name}", f"{loop}/{baseline}")

        def median(kind: str, loop: str = loop) -> float:
            return timings.median(f"{loop}/{kind}")

        def cpu_ms(kind: str, loop: str = loop) -> float:
            return statistics.median(cpu[f"{loop}/{kind}"]) / params.faxes * 1000

        ratios = {
            "sdk_vs_httpx2": ratio("sdk", "httpx2"),
            "sdk_vs_httpx2_checked": ratio("sdk", "httpx2_checked"),
            "sdk_http_client_vs_sdk": ratio("sdk_http_client", "sdk"),
            "sdk_aiohttp_vs_aiohttp_checked": ratio("sdk_aiohttp", "aiohttp_checked"),
            "sdk_aiohttp_vs_aiohttp": ratio("sdk_aiohttp", "aiohttp"),
            "sdk_aiohttp_vs_sdk": ratio("sdk_aiohttp", "sdk"),
            "sdk_aiohttp_vs_sdk_aiohttp_64k": ratio("sdk_aiohttp", "sdk_aiohttp_64k"),
            "sdk_otel_vs_sdk": ratio("sdk_otel", "sdk"),
            "httpx2_checked_vs_httpx2": ratio("httpx2_checked", "httpx2"),
            "aiohttp_vs_httpx2": ratio("aiohttp", "httpx2"),
            "aiohttp_checked_vs_aiohttp": ratio("aiohttp_checked", "aiohttp"),
        }
        metrics[loop] = {
            **{f"{k}_MBps": round(megabytes / median(k), 1) for k in KINDS},
            **{name: round(value, 3) for name, value in ratios.items()},
            # CPU (every thread of this process) per document: steadier than wall time on a busy machine.
            **{f"{k}_cpu_ms_per_doc": round(cpu_ms(k), 3) for k in KINDS},
        }
        own = ratios["sdk_http_client_vs_sdk"]
        bufsize = ratios["sdk_aiohttp_vs_sdk_aiohttp_64k"]
        traced = ratios["sdk_otel_vs_sdk"]
        targets += [
            target("SDK vs the bare httpx2 loop", "≥ 1.0x", ratios["sdk_vs_httpx2"], ratios["sdk_vs_httpx2"] >= 1.0,
                   loop=loop, unit="x"),
            target("SDK vs the checked httpx2 loop", "≥ 1.2x", ratios["sdk_vs_httpx2_checked"],
                   ratios["sdk_vs_httpx2_checked"] >= 1.2, loop=loop, unit="x"),
            target("SDK on a user's httpx2.AsyncClient vs on its own client", "within 5% (0.95-1.05x)", own,
                   0.95 <= own <= 1.05, loop=loop, unit="x"),
            target("SDK on AiohttpTransport vs the checked aiohttp loop", "≥ 1.0x",
                   ratios["sdk_aiohttp_vs_aiohttp_checked"], ratios["sdk_aiohttp_vs_aiohttp_checked"] >= 1.0,
                   loop=loop, unit="x"),
            target("AiohttpTransport's 256 KiB read buffer vs aiohttp's 64 KiB (SDK on AiohttpTransport)",
                   "report (no target)", bufsize, True, loop=loop, unit="x"),
            target("SDK with an OpenTelemetry tracer and meter vs without", "≥ 0.95x (at most 5% overhead)",
                   traced, traced >= 0.95, loop=loop, unit="x"),
        ]  # fmt: skip
    return {
        "params": {**params_json(params), "server": "nginx" if params.nginx else "emulator"},
        "timings": timings.to_json(),
        "metrics": metrics,
        "targets": targets,
    }
