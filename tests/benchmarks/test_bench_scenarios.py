"""Every benchmark scenario runs at its tiny size (emulator only, no nginx) and reports well-formed
results, so the harness cannot rot. No timing is asserted: the machine is shared and noisy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.run import SCENARIOS, check_result, render_table, run_scenario


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    return {}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_runs_at_tiny_size_and_reports_its_targets(name: str, results: dict[str, dict[str, Any]]) -> None:
    result = run_scenario(name, tiny=True)
    assert result["scenario"] == name
    assert result["metrics"], "a scenario reports its side-by-side figures"
    assert all(row["name"] and row["target"] for row in result["targets"])
    assert json.loads(json.dumps(result)) == result
    results[name] = result


def test_the_table_has_a_row_per_target_of_every_scenario(results: dict[str, dict[str, Any]]) -> None:
    for name in SCENARIOS:  # run alone (-k), the scenarios this test needs run here
        if name not in results:
            results[name] = run_scenario(name, tiny=True)
    ordered = [results[name] for name in SCENARIOS]
    table = render_table(ordered)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Scenario")]
    assert len(rows) == sum(len(r["targets"]) for r in ordered)
    assert all(line.rstrip().endswith(("| met |", "| **missed** |", "| reported |")) for line in rows)


def test_a_malformed_result_is_refused() -> None:
    good: dict[str, Any] = {
        "scenario": "x",
        "title": "X",
        "environment": {},
        "params": {},
        "metrics": {"a": 1},
        "targets": [{"name": "n", "target": "≥ 1", "value": 1.0, "unit": "x", "met": True, "note": ""}],
    }
    check_result(good)
    with pytest.raises(ValueError, match="targets"):
        check_result({k: v for k, v in good.items() if k != "targets"})
    with pytest.raises(ValueError, match="bad target row"):
        check_result({**good, "targets": [{**good["targets"][0], "met": "yes"}]})


def test_the_layer_diagnostic_runs_every_layer() -> None:
    from benchmarks.layers import LAYERS, main

    result = main(documents=6, size=20_000, rounds=1, nginx=False)
    assert list(result) == list(LAYERS) and all(ms > 0 for ms in result.values())
