"""Every benchmark scenario runs at its tiny size (emulator only, no nginx), on asyncio and on uvloop,
and reports well-formed results, so the harness cannot rot. No timing is asserted: the machine is
shared and noisy. Each test is bounded by an alarm, so a hung scenario fails instead of stalling."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from benchmarks._baselines import BASELINES
from benchmarks._harness import LOOPS, run_on
from benchmarks._servers import write_document
from benchmarks.run import SCENARIOS, check_result, render_table, run_scenario

#: Seconds a test may take before it fails (a tiny scenario takes a few).
BOUND = 240


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"a benchmark smoke test ran over {BOUND} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(BOUND)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_runs_at_tiny_size_and_reports_its_targets(name: str, results: dict[str, dict[str, Any]]) -> None:
    result = run_scenario(name, tiny=True)
    assert result["scenario"] == name
    assert result["metrics"], "a scenario reports its side-by-side figures"
    assert all(row["name"] and row["target"] for row in result["targets"])
    assert json.loads(json.dumps(result)) == result
    if "loops" in result["params"]:  # a scenario on event loops reports each of them
        assert {row["loop"] for row in result["targets"]} >= set(LOOPS)
    results[name] = result


@pytest.mark.slow
def test_the_table_has_a_row_per_target_of_every_scenario(results: dict[str, dict[str, Any]]) -> None:
    for name in SCENARIOS:  # run alone (-k), the scenarios this test needs run here
        if name not in results:
            results[name] = run_scenario(name, tiny=True)
    ordered = [results[name] for name in SCENARIOS]
    table = render_table(ordered)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Scenario")]
    assert len(rows) == sum(len(r["targets"]) for r in ordered)
    assert all(line.rstrip().endswith(("| met |", "| **missed** |", "| reported |")) for line in rows)
    assert all(line.count("|") == 7 for line in rows)


def test_a_malformed_result_is_refused() -> None:
    good: dict[str, Any] = {
        "scenario": "x",
        "title": "X",
        "environment": {},
        "params": {},
        "metrics": {"a": 1},
        "targets": [
            {"name": "n", "loop": "uvloop", "target": "≥ 1", "value": 1.0, "unit": "x", "met": True, "note": ""}
        ],
    }
    check_result(good)
    with pytest.raises(ValueError, match="targets"):
        check_result({k: v for k, v in good.items() if k != "targets"})
    with pytest.raises(ValueError, match="bad target row"):
        check_result({**good, "targets": [{**good["targets"][0], "met": "yes"}]})


@pytest.mark.parametrize("loop", LOOPS)
def test_the_checked_loops_refuse_a_body_that_is_not_a_pdf(loop: str, tmp_path: Path) -> None:
    """The checked baselines do the checks they claim: a wrong document leaves no file and no line."""
    from benchmarks._servers import EmulatorProcess

    with EmulatorProcess() as emulator:
        [fax_id] = emulator.add_faxes("checked", 1, 20_000)
        url = f"{emulator.base_url}/fax/received/{fax_id}/download"
        for kind in ("httpx2_checked", "aiohttp_checked"):
            dest = tmp_path / kind
            dest.mkdir()
            assert run_on(loop, BASELINES[kind]([url], "checked", dest, 1)) == 20_000
            assert sorted(p.name for p in dest.iterdir()) == [".manifest.jsonl", "0.pdf"]
            [line] = (dest / ".manifest.jsonl").read_text().splitlines()
            assert json.loads(line)["bytes"] == 20_000
        not_pdf = f"{emulator.base_url}/fax/received/{fax_id}"  # the fax's JSON details, not a document
        dest = tmp_path / "refused"
        dest.mkdir()
        with pytest.raises(RuntimeError, match="not a PDF"):
            run_on(loop, BASELINES["httpx2_checked"]([not_pdf], "checked", dest, 1))
        assert list(dest.iterdir()) == []


def test_a_served_document_passes_the_checks(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    write_document(path, 3 * 1024 * 1024 + 7)
    data = path.read_bytes()
    assert len(data) == 3 * 1024 * 1024 + 7 and data.startswith(b"%PDF-") and data.endswith(b"%%EOF\n")


@pytest.mark.slow
def test_the_layer_diagnostic_runs_every_layer() -> None:
    from benchmarks.layers import LAYERS, main

    result = main(documents=6, size=20_000, rounds=1, nginx=False)
    assert sorted(result) == sorted(f"{loop}/{layer}" for loop in LOOPS for layer in LAYERS)
    assert all(ms > 0 for ms in result.values())
