"""``python -m benchmarks.run``: run the scenarios, write ``results/<name>.json`` and the README table.

    python -m benchmarks.run                        # every scenario, full size, asyncio and uvloop
    python -m benchmarks.run --only overhead big    # some scenarios (names: see --help)
    python -m benchmarks.run --loops uvloop         # one event loop only
    python -m benchmarks.run --tiny                 # seconds: what the test suite runs, no nginx

The table in ``benchmarks/README.md`` is rebuilt from every JSON file in ``results/`` (so running one
scenario refreshes its rows and keeps the others). Tiny runs never touch the results or the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from . import accounts, big, imports, latency, listing, overhead, scale
from ._harness import LOOPS, environment

__all__ = ["SCENARIOS", "check_result", "main", "render_table", "run_scenario"]

SCENARIOS: dict[str, ModuleType] = {
    module.NAME: module for module in (latency, overhead, big, scale, accounts, listing, imports)
}
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def run_scenario(name: str, *, tiny: bool = False, loops: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run one scenario (its FULL or TINY parameters, on ``loops`` if given) and return its result, checked."""
    module = SCENARIOS[name]
    params = module.TINY if tiny else module.FULL
    if loops is not None and "loops" in attrs.fields_dict(type(params)):
        params = attrs.evolve(params, loops=loops)
    started = time.perf_counter()
    result: dict[str, Any] = module.run(params)
    result = {
        "scenario": name,
        "title": module.TITLE,
        "environment": environment(),
        "duration_s": round(time.perf_counter() - started, 1),
        **result,
    }
    check_result(result)
    return result


def check_result(result: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless ``result`` has the shape the table and the JSON files rely on."""
    for key in ("scenario", "title", "environment", "params", "metrics", "targets"):
        if key not in result:
            raise ValueError(f"result has no {key!r}")
    if not result["targets"]:
        raise ValueError("a scenario reports at least one target row")
    for row in result["targets"]:
        if set(row) != {"name", "loop", "target", "value", "unit", "met", "note"}:
            raise ValueError(f"bad target row {row!r}")
        if not isinstance(row["met"], bool) or not isinstance(row["value"], int | float):
            raise ValueError(f"bad target row {row!r}")
    json.dumps(result)  # must be JSON as it is


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 10 ** (digits - 1) else f"{value:,.0f}"
    if isinstance(value, list):
        return "; ".join(_fmt(v) if not isinstance(v, list) else "/".join(map(_fmt, v)) for v in value)
    return str(value)


def _details(metrics: dict[str, Any]) -> list[str]:
    """A scenario's figures: shared ones on one line, then one line per event loop (nested dicts)."""
    shared = [f"`{k}` {_fmt(v)}" for k, v in metrics.items() if not isinstance(v, dict)]
    lines = [", ".join(shared)] if shared else []
    lines += [
        f"- {group}: " + ", ".join(f"`{k}` {_fmt(v)}" for k, v in values.items())
        for group, values in metrics.items()
        if isinstance(values, dict)
    ]
    return lines


def render_table(results: list[dict[str, Any]]) -> str:
    """The README's results block: targets met or missed, then each scenario's side-by-side figures."""
    lines = ["| Scenario | Measure | Loop | Target | Result | |", "|---|---|---|---|---|---|"]
    for result in results:
        for row in result["targets"]:
            mark = "met" if row["met"] else "**missed**"
            if row["target"].startswith("report"):
                mark = "reported"
            # Four digits: a result just under its bar (94.97% against 95%) must not read as the bar.
            value = f"{_fmt(row['value'], 4)} {row['unit']}".strip()
            lines.append(
                f"| {result['title']} | {row['name']} | {row['loop'] or '-'} | {row['target']} | {value} | {mark} |"
            )
    lines.append("")
    for result in results:
        env = result["environment"]
        lines.append(
            f"**{result['title']}** ({env['date']}, SDK {env.get('sdk_revision', '-')}, Python {env['python']}, "
            f"{env['cores']} cores, load {env['load_avg_1m']}, {result['duration_s']} s)"
        )
        lines.append("")
        lines += _details(result["metrics"])
        lines.append("")
    versions = results[0]["environment"]["versions"] if results else {}
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "\n".join(lines)


def _write_readme(results: list[dict[str, Any]]) -> None:
    block = f"{START}\n{render_table(results)}\n{END}"
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--loops", nargs="+", choices=LOOPS, help="run only on these event loops")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds); results are not saved")
    parser.add_argument("--table", action="store_true", help="only rebuild the README's table from results/")
    args = parser.parse_args(argv)
    if args.table:
        _write_readme(_saved_results())
        return 0
    loops = tuple(args.loops) if args.loops else None
    names = args.only or list(SCENARIOS)
    failed = False
    for name in names:
        print(f"== {SCENARIOS[name].TITLE}", flush=True)
        try:
            result = run_scenario(name, tiny=args.tiny, loops=loops)
        except Exception as exc:  # one broken scenario must not hide the others' numbers
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed = True
            continue
        for row in result["targets"]:
            where = f" [{row['loop']}]" if row["loop"] else ""
            value = f"{_fmt(row['value'], 4)} {row['unit']}".strip()
            print(f"   {row['name']}{where}: {value} (target {row['target']})", flush=True)
        if not args.tiny:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.tiny:
        _write_readme(_saved_results())
    return 1 if failed else 0


def _saved_results() -> list[dict[str, Any]]:
    """Every scenario's saved result, in the scenarios' order."""
    ordered = [RESULTS / f"{n}.json" for n in SCENARIOS if (RESULTS / f"{n}.json").exists()]
    return [json.loads(p.read_text()) for p in ordered]


if __name__ == "__main__":
    sys.exit(main())
