"""Runs one download job in a fresh process and prints what it cost (memory, CPU, time) as JSON.

Memory is only meaningful in a process of its own: the peak resident size is reset after the
imports and the client's creation, so the growth measured is what the job itself added.

    echo '{"kind": "sdk_all", "loop": "uvloop", "base_url": ..., "key": ..., "dest": ...}' \\
        | python -m benchmarks._child
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2

from ._baselines import httpx_loop, sdk_client
from ._harness import peak_rss, reset_peak_rss, rss, run_on


async def _sdk_all(job: dict[str, Any], out: dict[str, Any]) -> None:
    """``download_all`` of the whole account, sampling RSS every ``sample_every`` outcomes."""
    from audian_fax_async import OutcomeKind

    samples: list[tuple[int, int]] = []
    done = 0
    every = int(job.get("sample_every", 1000))
    async with sdk_client(job.get("stack", "sdk"), job["base_url"], job["key"]) as client:
        _start(out)
        async with client.received.download_all(Path(job["dest"])) as outcomes:
            async for outcome in outcomes:
                if outcome.kind is not OutcomeKind.DOWNLOADED:
                    raise RuntimeError(f"{outcome.fax.id}: {outcome.error!r}")
                done += 1
                if done % every == 0:
                    samples.append((done, rss()))
    out["faxes"] = done
    out["rss_samples"] = samples


async def _sdk_one(job: dict[str, Any], out: dict[str, Any]) -> None:
    """``received.download`` of one fax to a file."""
    async with sdk_client(job.get("stack", "sdk"), job["base_url"], job["key"]) as client:
        _start(out)
        result = await client.received.download(job["fax_id"], Path(job["dest"]) / "one.pdf")
    out["bytes"] = result.bytes


async def _httpx_one(job: dict[str, Any], out: dict[str, Any]) -> None:
    """Bare httpx2: stream one document into a file."""
    async with httpx2.AsyncClient(headers={"X-Auth-Token": job["key"]}, timeout=120) as client:
        _start(out)
        url = f"{job['base_url']}/fax/received/{job['fax_id']}/download"
        total = 0
        async with client.stream("GET", url) as response:
            response.raise_for_status()
            with open(Path(job["dest"]) / "one.pdf", "wb") as handle:
                async for chunk in response.aiter_raw():
                    handle.write(chunk)
                    total += len(chunk)
    out["bytes"] = total


async def _httpx_all(job: dict[str, Any], out: dict[str, Any]) -> None:
    """Bare httpx2 loop over the given ids (10 workers)."""
    _start(out)
    urls = [f"{job['base_url']}/fax/received/{i}/download" for i in job["ids"]]
    out["bytes"] = await httpx_loop(urls, job["key"], Path(job["dest"]), int(job.get("concurrency", 10)))
    out["faxes"] = len(urls)


def _start(out: dict[str, Any]) -> None:
    reset_peak_rss()
    out["rss_before"] = rss()
    out["cpu_before"] = time.process_time()
    out["wall_before"] = time.perf_counter()


JOBS = {"sdk_all": _sdk_all, "sdk_one": _sdk_one, "httpx_one": _httpx_one, "httpx_all": _httpx_all}


def main() -> None:
    job = json.loads(sys.stdin.read())
    out: dict[str, Any] = {"kind": job["kind"], "loop": job.get("loop", "asyncio")}
    run_on(out["loop"], JOBS[job["kind"]](job, out))
    out["cpu_s"] = time.process_time() - out.pop("cpu_before")
    out["wall_s"] = time.perf_counter() - out.pop("wall_before")
    out["rss_peak"] = peak_rss()
    out["rss_after"] = rss()
    out["growth"] = out["rss_peak"] - out["rss_before"]
    print(json.dumps(out))


def run_child(job: dict[str, Any], *, timeout: float = 600) -> dict[str, Any]:
    """Run a job in a fresh interpreter and return its JSON report."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._child"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {job['kind']} failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    main()
