"""Scenario 1, latency-bound bulk: the API is far away (50 ms added to every response).

1,000 faxes of about 450 KB: the SDK's ``download_all`` against the reference's sequential
``requests`` loop and a naive unbounded ``asyncio.gather`` of bare httpx2 downloads (which sleeps
``Retry-After`` on a 429 and tries again, or it would never finish). Throughput is reported as a
share of the ideal for 10 slots: 10 / the time of one download alone.

The documents come from nginx, which waits the 50 ms before each one (Debian's echo module) and
refuses an eleventh download of an account at once with a 429 and ``Retry-After``, as the API does;
the listing comes from the emulator behind it, with the same 50 ms. Served by the emulator itself
(Python, on the same two cores as the client), ten concurrent downloads delayed each answer by a
few milliseconds more than one alone: the lightest client possible, a bare aiohttp loop, reached
only 93-95% of that ideal, so the target measured the server. The SDK downloading from the emulator
directly still runs in every round, against its own probe, and is reported.

The time of one download alone is measured in every round, beside the runs it is the unit of (a
slower machine for a minute slows both). Files go to ``FAST_DIR`` (tmpfs) as in scenarios 2 to 5:
what this scenario measures is whether the client keeps its 10 slots busy, and this machine's disk
(ext4 on a virtual disk) costs any client 1.3-2 ms of kernel CPU per document written, and stalls
now and then. The SDK writing to the disk (the system's temporary folder, fsync and all) runs beside
the others in every round and is reported next to the target.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import statistics
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx2
from attrs import asdict, evolve, frozen

from audian_fax_async import AiohttpTransport

from ._baselines import aiohttp_loop, httpx_loop, sdk_download_all
from ._harness import FAST_DIR, Measure, alternate, clock, target
from ._servers import Backend, backend

NAME = "latency"
TITLE = "1. Latency-bound bulk"
SLOTS = 10


@frozen
class Params:
    faxes: int = 1000
    size: int = 460_800
    latency: float = 0.05
    requests_faxes: int = 1000
    probes: int = 10
    rounds: int = 5
    workdir: str = FAST_DIR
    disk_dir: str = tempfile.gettempdir()
    nginx: bool = True


FULL = Params()
TINY = Params(faxes=12, size=20_000, latency=0.01, requests_faxes=4, probes=3, rounds=1, nginx=False)

#: The runs alternated in every round: the ideal's unit, the SDK (and on AiohttpTransport), bare
#: httpx2 and bare aiohttp loops with 10 slots (the lightest client there is: what this server allows
#: any client), and the SDK writing to the disk.
VARIANTS = ("probe", "sdk", "sdk_aiohttp", "httpx_10", "aiohttp_10", "sdk_disk", "probe_emulator", "sdk_emulator")
#: The variants that download from the emulator directly (the others from nginx, when it is used).
FROM_EMULATOR = ("probe_emulator", "sdk_emulator")
#: The variants that are clients (not probes).
CLIENTS = tuple(kind for kind in VARIANTS if not kind.startswith("probe"))


def _one_download_time(base_url: str, key: str, ids: list[str]) -> float:
    """Median seconds of one download alone from ``base_url`` (the ideal's unit)."""
    times = []
    with httpx2.Client(headers={"X-Auth-Token": key}, timeout=60) as client:
        for fax_id in ids:
            start = clock()
            with client.stream("GET", f"{base_url}/fax/received/{fax_id}/download") as response:
                response.raise_for_status()
                for _ in response.iter_raw():
                    pass
            times.append(clock() - start)
    return statistics.median(times)


async def _naive_gather(server: Backend, key: str, ids: list[str], dest: Path) -> None:
    async with httpx2.AsyncClient(headers={"X-Auth-Token": key}, timeout=120) as client:

        async def one(fax_id: str) -> None:
            while True:
                async with client.stream("GET", server.download_url(fax_id)) as response:
                    if response.status_code == 429:
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
                    response.raise_for_status()
                    with open(dest / f"{fax_id}.pdf", "wb") as handle:
                        async for chunk in response.aiter_raw():
                            handle.write(chunk)
                    return

        await asyncio.gather(*(one(i) for i in ids))


def _requests_loop(server: Backend, key: str, count: int, dest: Path) -> int:
    """The reference's loop: list pages by offset, then download each fax in turn."""
    import requests

    done = 0
    with requests.Session() as session:
        session.headers["X-Auth-Token"] = key
        offset = 0
        while done < count:
            page = session.get(
                f"{server.base_url}/fax/received", params={"limit": 100, "offset": offset}, timeout=60
            ).json()
            faxes = page["faxes"]
            if not faxes:
                break
            for fax in faxes[: count - done]:
                with session.get(server.download_url(fax["id"]), stream=True, timeout=60) as response:
                    response.raise_for_status()
                    with open(dest / f"{fax['id']}.pdf", "wb") as handle:
                        for chunk in response.iter_content(64 * 1024):
                            handle.write(chunk)
                done += 1
            offset += len(faxes)
    return done


def run(params: Params) -> dict[str, Any]:
    try:
        import requests  # noqa: F401
    except ImportError:  # pragma: no cover - requests is in the dev extra
        have_requests = False
    else:
        have_requests = True
    work = Path(tempfile.mkdtemp(prefix="bench-latency-", dir=params.workdir))
    disk = Path(tempfile.mkdtemp(prefix="bench-latency-disk-", dir=params.disk_dir))
    try:
        with backend(nginx=params.nginx, latency=params.latency, max_downloads=SLOTS) as server:
            probe = server.add_account("lat-probe", params.probes, params.size)
            server.add_account("lat-gather", params.faxes, params.size)
            gather_ids = [f["id"] for f in _list_all(server, "lat-gather")]

            # The variants alternate (rotating order) over ``rounds``, each run on an account of its
            # own, so no run finds documents the emulator has already produced.
            refused: dict[str, int] = {}
            probes: dict[str, list[float]] = {"probe": [], "probe_emulator": []}
            runs = itertools.count()

            def measure(kind: str) -> Measure:
                def one_run() -> float:
                    if kind in probes:
                        base = server.emulator.base_url if kind in FROM_EMULATOR else server.base_url
                        probes[kind].append(_one_download_time(base, "lat-probe", probe))
                        return probes[kind][-1]
                    key = f"lat-{kind}-{next(runs)}"
                    server.add_account(key, params.faxes, params.size)
                    dest = (disk if kind == "sdk_disk" else work) / key
                    dest.mkdir()
                    job = _job(server, kind, key, dest)
                    start = clock()
                    asyncio.run(job)
                    elapsed = clock() - start
                    refused[kind] = refused.get(kind, 0) + server.refused(key)
                    # Every run adds 1,000 faxes to the emulator: kept, they made its heap (and its
                    # garbage collector's passes) grow round after round, slowing later rounds.
                    server.drop_account(key)
                    shutil.rmtree(dest, ignore_errors=True)
                    return elapsed

                return one_run

            # One untimed run of each client first: the first FaxClient of a process imports and builds
            # what later ones reuse (scenario 7 measures imports), which is not throughput.
            warm = evolve(params, faxes=min(params.faxes, 20))
            for kind in CLIENTS:
                _warm_up(server, kind, warm, work)
            timings = alternate({kind: measure(kind) for kind in VARIANTS}, params.rounds)
            one = timings.median("probe")
            ideal = SLOTS / one
            ideal_emulator = SLOTS / timings.median("probe_emulator")

            (work / "gather").mkdir()
            start = clock()
            asyncio.run(_naive_gather(server, "lat-gather", gather_ids, work / "gather"))
            gather_s = clock() - start
            gather_429 = server.refused("lat-gather")

            requests_rate = None
            if have_requests:
                server.add_account("lat-requests", params.requests_faxes, params.size)
                (work / "requests").mkdir()
                start = clock()
                done = _requests_loop(server, "lat-requests", params.requests_faxes, work / "requests")
                requests_rate = done / (clock() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)

    def share(kind: str) -> float:
        return params.faxes / timings.median(kind) / (ideal_emulator if kind in FROM_EMULATOR else ideal)

    sdk_rate = params.faxes / timings.median("sdk")
    gather_rate = params.faxes / gather_s
    metrics: dict[str, Any] = {
        "server": "nginx (documents, 50 ms and the 10-download limit), emulator (listing)"
        if params.nginx
        else "emulator",
        "one_download_s": round(one, 4),
        "one_download_s_per_round": [round(p, 4) for p in probes["probe"]],
        "ideal_faxes_per_s": round(ideal, 2),
        "emulator_one_download_s": round(SLOTS / ideal_emulator, 4),
        "emulator_ideal_faxes_per_s": round(ideal_emulator, 2),
    }
    for kind in CLIENTS:
        unit = ideal_emulator if kind in FROM_EMULATOR else ideal
        metrics[f"{kind}_faxes_per_s"] = round(params.faxes / timings.median(kind), 2)
        metrics[f"{kind}_share_of_ideal"] = round(share(kind), 3)
        metrics[f"{kind}_share_per_round"] = [round(params.faxes / t / unit, 3) for t in timings.runs[kind]]
        metrics[f"{kind}_429"] = refused[kind]
    metrics["sdk_vs_httpx_10"] = round(timings.ratio("sdk", "httpx_10"), 3)
    metrics["sdk_vs_aiohttp_10"] = round(timings.ratio("sdk", "aiohttp_10"), 3)
    metrics["gather_faxes_per_s"] = round(gather_rate, 2)
    metrics["gather_share_of_ideal"] = round(gather_rate / ideal, 3)
    metrics["gather_429"] = gather_429
    metrics["sdk_vs_gather"] = round(sdk_rate / gather_rate, 2)
    if requests_rate is not None:
        metrics["requests_faxes_per_s"] = round(requests_rate, 2)
        metrics["requests_share_of_ideal"] = round(requests_rate / ideal, 3)
        metrics["requests_429"] = 0
        metrics["sdk_vs_requests"] = round(sdk_rate / requests_rate, 2)
    sdk_429 = sum(refused[k] for k in ("sdk", "sdk_aiohttp", "sdk_disk", "sdk_emulator"))

    def share_target(name: str, kind: str) -> dict[str, Any]:
        return target(name, "≥ 95%", share(kind) * 100, share(kind) >= 0.95, unit="%")

    return {
        "params": asdict(params),
        "runs": timings.to_json(),
        "metrics": metrics,
        "targets": [
            share_target("SDK throughput, share of the ideal for 10 slots", "sdk"),
            target("429s provoked by the SDK (every SDK run)", "0", sdk_429, sdk_429 == 0),
            share_target("SDK on AiohttpTransport, share of the ideal for 10 slots", "sdk_aiohttp"),
            target(
                "SDK writing to this machine's disk (ext4, virtual), share of the ideal",
                "report (no target)",
                share("sdk_disk") * 100,
                True,
                unit="%",
            ),
            target(
                "SDK downloading from the emulator itself, share of the emulator's ideal",
                "report (no target)",
                share("sdk_emulator") * 100,
                True,
                unit="%",
            ),
        ],
    }


def _job(server: Backend, kind: str, key: str, dest: Path) -> Coroutine[Any, Any, int]:
    """One run of a variant other than the probe, downloading account ``key`` into ``dest``."""
    if kind in ("httpx_10", "aiohttp_10"):
        urls = [server.download_url(f["id"]) for f in _list_all(server, key)]
        return (httpx_loop if kind == "httpx_10" else aiohttp_loop)(urls, key, dest, SLOTS)
    transport = AiohttpTransport() if kind == "sdk_aiohttp" else None
    base = server.emulator.base_url if kind in FROM_EMULATOR else server.base_url
    return sdk_download_all(base, key, dest, SLOTS, transport=transport)


def _warm_up(server: Backend, kind: str, params: Params, work: Path) -> None:
    key = f"lat-warm-{kind}"
    server.add_account(key, params.faxes, params.size)
    dest = work / key
    dest.mkdir()
    asyncio.run(_job(server, kind, key, dest))
    server.drop_account(key)
    shutil.rmtree(dest, ignore_errors=True)


def _list_all(server: Backend, key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with httpx2.Client(headers={"X-Auth-Token": key}, timeout=60) as client:
        while True:
            page = client.get(f"{server.base_url}/fax/received", params={"limit": 100, "offset": len(out)}).json()
            if not page["faxes"]:
                return out
            out.extend(page["faxes"])
