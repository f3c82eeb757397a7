"""Scenario 1, latency-bound bulk: the API is far away (50 ms before every response).

1,000 faxes of about 450 KB, 10 download slots: the SDK's ``download_all`` on asyncio and on uvloop
(on its own client, and on ``AiohttpTransport``) beside bare httpx2 and aiohttp loops with 10 workers
over the same account's URLs. Throughput is reported as a share of the ideal for 10 slots: 10 / the
time of one download alone, measured in every round beside the runs it is the unit of. Two
references run once, on asyncio: the sequential ``requests`` loop of the API's own examples, and a
naive unbounded ``asyncio.gather`` of bare httpx2 downloads (which sleeps ``Retry-After`` on a 429
and tries again, or it would never finish).

The documents come from nginx, which waits the 50 ms before each one (Debian's echo module) and
refuses an eleventh download of an account at once with a 429 and ``Retry-After``, as the API does;
the listing comes from the emulator behind it, with the same 50 ms. Files go to ``FAST_DIR`` (tmpfs):
what this scenario measures is whether the client keeps its 10 slots busy, and this machine's disk
(ext4 on a virtual disk) costs any client 1-2 ms of kernel CPU per document written and stalls now
and then. The SDK writing to that disk (the system's temporary folder) runs beside the others in
every round, on asyncio, and is reported.
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
from attrs import frozen

from ._baselines import aiohttp_loop, httpx_loop, sdk_stack_download_all
from ._harness import FAST_DIR, LOOPS, Measure, alternate, clock, params_json, run_on, target
from ._servers import Backend, backend

NAME = "latency"
TITLE = "1. Latency-bound bulk"
SLOTS = 10
#: The clients run on every loop, and the one run on asyncio only (writing to the disk).
CLIENTS = ("sdk", "sdk_aiohttp", "httpx2_10", "aiohttp_10")
SDK_KINDS = ("sdk", "sdk_aiohttp", "sdk_disk")


@frozen
class Params:
    faxes: int = 1000
    size: int = 460_800
    latency: float = 0.05
    gather_faxes: int = 300
    requests_faxes: int = 100
    probes: int = 10
    rounds: int = 4
    workdir: str = FAST_DIR
    disk_dir: str = tempfile.gettempdir()
    nginx: bool = True
    loops: tuple[str, ...] = LOOPS


FULL = Params()
TINY = Params(faxes=12, size=20_000, latency=0.01, gather_faxes=8, requests_faxes=4, probes=3, rounds=1, nginx=False)


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
    """The API examples' loop: list pages by offset, then download each fax in turn."""
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
    work = Path(tempfile.mkdtemp(prefix="bench-latency-", dir=params.workdir))
    disk = Path(tempfile.mkdtemp(prefix="bench-latency-disk-", dir=params.disk_dir))
    variants_of = [(loop, kind) for loop in params.loops for kind in CLIENTS] + [(params.loops[0], "sdk_disk")]
    try:
        with backend(nginx=params.nginx, latency=params.latency, max_downloads=SLOTS) as server:
            probe = server.add_account("lat-probe", params.probes, params.size)
            # Every run downloads an account of its own (created before, dropped after it), so no run
            # finds what another left, and the emulator's state does not grow round after round.
            refused: dict[str, int] = {}
            probes: list[float] = []
            runs = itertools.count()

            def one_run(loop: str, kind: str, faxes: int, name: str | None) -> float:
                key = f"lat-{kind}-{next(runs)}"
                server.add_account(key, faxes, params.size)
                dest = (disk if kind == "sdk_disk" else work) / key
                dest.mkdir()
                job = _job(server, kind, key, dest)
                start = clock()
                run_on(loop, job)
                elapsed = clock() - start
                if name is not None:
                    refused[name] = refused.get(name, 0) + server.refused(key)
                server.drop_account(key)
                shutil.rmtree(dest, ignore_errors=True)
                return elapsed

            def probe_run() -> float:
                probes.append(_one_download_time(server.base_url, "lat-probe", probe))
                return probes[-1]

            def measure(loop: str, kind: str) -> Measure:
                return lambda: one_run(loop, kind, params.faxes, f"{loop}/{kind}")

            # One untimed run of each first: the first FaxClient of a process imports and builds what
            # later ones reuse (scenario 7 measures imports), which is not throughput.
            for loop, kind in variants_of:
                one_run(loop, kind, min(params.faxes, 20), None)
            variants: dict[str, Measure] = {"probe": probe_run}
            variants.update({f"{loop}/{kind}": measure(loop, kind) for loop, kind in variants_of})
            timings = alternate(variants, params.rounds)
            ideal = SLOTS / timings.median("probe")

            gather_ids = server.add_account("lat-gather", params.gather_faxes, params.size)
            (work / "gather").mkdir()
            start = clock()
            asyncio.run(_naive_gather(server, "lat-gather", gather_ids, work / "gather"))
            gather_rate = params.gather_faxes / (clock() - start)
            gather_429 = server.refused("lat-gather")

            server.add_account("lat-requests", params.requests_faxes, params.size)
            (work / "requests").mkdir()
            start = clock()
            done = _requests_loop(server, "lat-requests", params.requests_faxes, work / "requests")
            requests_rate = done / (clock() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)

    def share(name: str) -> float:
        return params.faxes / timings.median(name) / ideal

    metrics: dict[str, Any] = {
        "server": "nginx (documents, 50 ms and the 10-download limit), emulator (listing)"
        if params.nginx
        else "emulator",
        "one_download_s": round(timings.median("probe"), 4),
        "one_download_s_per_round": [round(p, 4) for p in probes],
        "ideal_faxes_per_s": round(ideal, 2),
    }
    for loop in params.loops:
        numbers: dict[str, Any] = {}
        for loop_of, kind in variants_of:
            if loop_of != loop:
                continue
            name = f"{loop}/{kind}"
            numbers[f"{kind}_faxes_per_s"] = round(params.faxes / timings.median(name), 2)
            numbers[f"{kind}_share_of_ideal"] = round(share(name), 4)
            numbers[f"{kind}_share_per_round"] = [round(params.faxes / t / ideal, 3) for t in timings.runs[name]]
            numbers[f"{kind}_429"] = refused[name]
        numbers["sdk_vs_httpx2_10"] = round(timings.ratio(f"{loop}/sdk", f"{loop}/httpx2_10"), 3)
        numbers["sdk_vs_aiohttp_10"] = round(timings.ratio(f"{loop}/sdk", f"{loop}/aiohttp_10"), 3)
        metrics[loop] = numbers
    metrics["references (asyncio)"] = {
        "gather_faxes": params.gather_faxes,
        "gather_faxes_per_s": round(gather_rate, 2),
        "gather_share_of_ideal": round(gather_rate / ideal, 3),
        "gather_429": gather_429,
        "requests_faxes": params.requests_faxes,
        "requests_faxes_per_s": round(requests_rate, 2),
        "requests_share_of_ideal": round(requests_rate / ideal, 3),
    }

    targets: list[dict[str, Any]] = []
    for loop in params.loops:
        sdk_429 = sum(
            count for name, count in refused.items() if _split(name)[0] == loop and _split(name)[1] in SDK_KINDS
        )
        targets += [
            target("SDK, share of the ideal for 10 slots", "≥ 95%", share(f"{loop}/sdk") * 100,
                   share(f"{loop}/sdk") >= 0.95, loop=loop, unit="%"),
            target("429s provoked by the SDK (every SDK run)", "0", sdk_429, sdk_429 == 0, loop=loop),
            target("SDK on AiohttpTransport, share of the ideal", "report (no target)",
                   share(f"{loop}/sdk_aiohttp") * 100, True, loop=loop, unit="%"),
            target("bare aiohttp loop, 10 workers, share of the ideal (what the server allows)",
                   "report (no target)", share(f"{loop}/aiohttp_10") * 100, True, loop=loop, unit="%"),
        ]  # fmt: skip
    disk_name = f"{params.loops[0]}/sdk_disk"
    targets.append(
        target("SDK writing to this machine's disk (ext4, virtual), share of the ideal", "report (no target)",
               share(disk_name) * 100, True, loop=params.loops[0], unit="%")
    )  # fmt: skip
    return {"params": params_json(params), "timings": timings.to_json(), "metrics": metrics, "targets": targets}


def _split(name: str) -> tuple[str, str]:
    loop, _, kind = name.partition("/")
    return loop, kind


def _job(server: Backend, kind: str, key: str, dest: Path) -> Coroutine[Any, Any, int]:
    """One run of a client, downloading account ``key`` into ``dest`` (baselines: listed beforehand)."""
    if kind in ("httpx2_10", "aiohttp_10"):
        urls = [server.download_url(f["id"]) for f in _list_all(server, key)]
        return (httpx_loop if kind == "httpx2_10" else aiohttp_loop)(urls, key, dest, SLOTS)
    stack = "sdk" if kind == "sdk_disk" else kind
    return sdk_stack_download_all(stack, server.base_url, key, dest, SLOTS)


def _list_all(server: Backend, key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with httpx2.Client(headers={"X-Auth-Token": key}, timeout=60) as client:
        while True:
            page = client.get(f"{server.base_url}/fax/received", params={"limit": 100, "offset": len(out)}).json()
            if not page["faxes"]:
                return out
            out.extend(page["faxes"])
