"""Scenario 7, import time: ``import audian_fax_async`` against ``import httpx2`` alone.

Each import runs in a fresh interpreter, alternating, and the bare interpreter's start-up is
subtracted. ``-X importtime`` names the SDK's own modules that cost the most.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from attrs import frozen

from ._harness import params_json, target

NAME = "imports"
TITLE = "7. Import time"


@frozen
class Params:
    rounds: int = 15


FULL = Params()
TINY = Params(rounds=1)

_STATEMENTS = {"python": "pass", "httpx2": "import httpx2", "sdk": "import audian_fax_async"}


def _time(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def _importtime() -> list[tuple[str, float]]:
    """The modules with the largest cumulative import time under ``import audian_fax_async``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import audian_fax_async"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        rows.append((parts[2].rstrip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:12]


def run(params: Params) -> dict[str, Any]:
    runs: dict[str, list[float]] = {name: [] for name in _STATEMENTS}
    names = list(_STATEMENTS)
    for r in range(params.rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            runs[name].append(_time(_STATEMENTS[name]))
    base = statistics.median(runs["python"])
    httpx_s = statistics.median(runs["httpx2"]) - base
    sdk_s = statistics.median(runs["sdk"]) - base
    ratio = sdk_s / httpx_s if httpx_s > 0 else float("inf")
    return {
        "params": params_json(params),
        "metrics": {
            "python_startup_ms": round(base * 1000, 1),
            "httpx2_import_ms": round(httpx_s * 1000, 1),
            "sdk_import_ms": round(sdk_s * 1000, 1),
            "sdk_vs_httpx2_import": round(ratio, 2),
            "largest_cumulative_imports_s": [[name.strip(), round(s, 4)] for name, s in _importtime()],
        },
        "targets": [
            target("import audian_fax_async vs import httpx2", "report (no target)", ratio, True, unit="x"),
        ],
    }
