"""Timing, event loops, memory and result helpers shared by the scenarios.

Every figure is a ratio against a baseline run side by side in the same process: variants are run
in alternating order (ABC, BCA, CAB, ...) for several rounds and each is summarised by its median,
so a burst of load from elsewhere on the machine hits all of them alike. Each run gets a fresh event
loop of the kind it names (asyncio's own or uvloop's).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "FAST_DIR",
    "LOOPS",
    "Timings",
    "alternate",
    "clock",
    "environment",
    "params_json",
    "peak_rss",
    "reset_peak_rss",
    "rss",
    "run_on",
    "target",
]

T = TypeVar("T")

#: Where downloaded files go when the disk must not be what is measured (tmpfs: fsync is free there).
FAST_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108

#: The event loops every scenario runs on, reported separately.
LOOPS = ("asyncio", "uvloop")

Measure = Callable[[], float]
"""Runs one variant once and returns the seconds of the part being measured."""


def run_on(loop: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh event loop: ``"asyncio"`` or ``"uvloop"``."""
    if loop == "asyncio":
        factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    elif loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        coro.close()
        raise ValueError(f"unknown event loop {loop!r} (one of {', '.join(LOOPS)})")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


class Timings:
    """The seconds of each run of each variant."""

    def __init__(self, runs: Mapping[str, list[float]]) -> None:
        self.runs = dict(runs)

    def median(self, name: str) -> float:
        return statistics.median(self.runs[name])

    def ratio(self, name: str, baseline: str) -> float:
        """How many times faster ``name`` is than ``baseline`` (medians; above 1 is faster)."""
        return self.median(baseline) / self.median(name)

    def to_json(self) -> dict[str, Any]:
        return {
            name: {"runs_s": [round(t, 4) for t in runs], "median_s": round(self.median(name), 4)}
            for name, runs in self.runs.items()
        }


def alternate(variants: Mapping[str, Measure], rounds: int) -> Timings:
    """Run every variant ``rounds`` times, rotating the order each round."""
    names = list(variants)
    runs: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(variants[name]())
    return Timings(runs)


def target(
    name: str, wanted: str, value: float, met: bool, *, loop: str = "", unit: str = "", note: str = ""
) -> dict[str, Any]:
    """One row of the results table; ``wanted`` starting with "report" means no target (just reported)."""
    return {
        "name": name,
        "loop": loop,
        "target": wanted,
        "value": round(value, 4),
        "unit": unit,
        "met": met,
        "note": note,
    }


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss() -> int:
    """Resident set size now, in bytes (Linux)."""
    return _status_kib("VmRSS")


def peak_rss() -> int:
    """Peak resident set size since the last :func:`reset_peak_rss`, in bytes (Linux)."""
    return _status_kib("VmHWM")


def reset_peak_rss() -> None:
    """Restart the peak at the current RSS (Linux ``clear_refs`` 5)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def sdk_revision() -> str:
    """The git commit of the SDK being measured, with ``+changes`` if its files differ from it."""
    import subprocess
    from importlib.util import find_spec

    spec = find_spec("audian_fax_async")
    if spec is None or spec.origin is None:
        return "-"
    package = Path(spec.origin).parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "-"
    return commit + ("+changes" if git("status", "--porcelain", "--", ".") else "")


def environment() -> dict[str, Any]:
    """Where the numbers were taken."""
    load = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "sdk_revision": sdk_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "load_avg_1m": round(load[0], 2),
        "versions": {
            name: _version(name)
            for name in (
                *("audian-fax-async", "httpx2", "httpcore2", "h11", "anyio", "aiohttp", "uvloop"),
                *("tenacity", "cattrs", "uvicorn", "httptools"),
            )
        },
    }


def params_json(params: Any) -> dict[str, Any]:
    """A scenario's attrs parameters as JSON values (tuples as lists)."""
    import attrs

    data: dict[str, Any] = attrs.asdict(params)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def clock() -> float:
    return time.perf_counter()
