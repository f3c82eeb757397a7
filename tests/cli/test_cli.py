"""The ``audian-fax`` command line against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import pytest
from click.testing import CliRunner

from audian_fax_async.cli._app import cli
from audian_fax_async.emulator import AdminClient, Emulator


class Runner(Protocol):
    def __call__(self, *args: str, key: str | None = ...) -> tuple[int, str, str]: ...


@pytest.fixture
def run(audian_emulator: Emulator, audian_api_key: str) -> Runner:
    def invoke(*args: str, key: str | None = audian_api_key) -> tuple[int, str, str]:
        env = {"AUDIAN_BASE_URL": audian_emulator.base_url, "AUDIAN_API_KEY": key or ""}
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_list_json_prints_one_object_per_fax(run: Runner, audian_admin: AdminClient) -> None:
    code, out, _ = run("list", "--limit", "5", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 5 and all(r["id"].startswith("fax_received_") for r in rows)
    code, out, _ = run("list", "--all", "--json", "--status", "received")
    assert code == 0 and all(json.loads(line)["status"] == "received" for line in out.splitlines())


def test_get_mark_processed_and_archive(run: Runner) -> None:
    _, out, _ = run("list", "--limit", "1", "--json", "--status", "received")
    fax_id = json.loads(out.splitlines()[0])["id"]
    code, out, _ = run("get", fax_id, "--json")
    assert code == 0 and json.loads(out)["baud_rate"] is not None
    assert run("mark-processed", fax_id)[:2] == (0, f"{fax_id}: processed\n")
    assert run("archive", fax_id)[:2] == (0, f"{fax_id}: archived\n")


def test_download_and_download_all_json_with_exit_status(
    run: Runner, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    _, out, _ = run("list", "--limit", "1", "--json")
    fax_id = json.loads(out.splitlines()[0])["id"]
    code, out, _ = run("download", fax_id, str(tmp_path))
    assert code == 0 and f"{fax_id}.pdf" in out

    audian_admin.script("download", [500], key=audian_api_key)
    code, out, err = run("--max-retries", "0", "download-all", str(tmp_path / "all"), "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and "1 of" in err and "failed" in err
    assert sorted({line["kind"] for line in lines}) == ["downloaded", "failed"]
    code, out, err = run("download-all", str(tmp_path / "all"), "--json")
    assert code == 0
    outcomes = [json.loads(line)["kind"] for line in out.splitlines()]
    assert outcomes.count("downloaded") == 1 and "failed" not in outcomes


def test_download_all_on_the_aiohttp_transport(
    run: Runner, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []
    from audian_fax_async import _aiohttp

    original = _aiohttp.AiohttpTransport.__init__

    def spy(self: _aiohttp.AiohttpTransport, **kwargs: Any) -> None:
        made.append(self)
        original(self, **kwargs)

    monkeypatch.setattr(_aiohttp.AiohttpTransport, "__init__", spy)
    code, out, _ = run("--transport", "aiohttp", "download-all", str(tmp_path), "--json")
    assert code == 0 and made  # the run went through AiohttpTransport
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and {row["kind"] for row in rows} == {"downloaded"}
    for row in rows:
        assert audian_admin.document_sha256(audian_api_key, row["id"]) == row["sha256"]


def test_errors_are_one_clear_line_without_traceback(run: Runner) -> None:
    code, _, err = run("get", "fax_received_nope")
    assert code == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and "NotFoundError: 404" in err
    code, _, err = run("list", key=None)
    assert code == 1 and "No API key" in err and err.count("\n") == 1


def test_creating_commands(run: Runner) -> None:
    code, out, _ = run("webhooks", "create", "--url", "https://example.com/h", "--event", "fax_received")
    assert code == 0 and json.loads(out)["url"] == "https://example.com/h"
    code, out, _ = run("routing", "create", "--type", "email", "--destination", "a@b.example")
    assert code == 0 and json.loads(out)["type"] == "email"
    code, out, _ = run("numbers", "request", "--area-code", "202", "--quantity", "2")
    assert code == 0 and len(out.splitlines()) == 2


@pytest.mark.parametrize(
    "command",
    [[], ["list"], ["get"], ["download"], ["download-all"], ["mark-processed"], ["archive"], ["webhooks", "create"],
     ["routing", "create"], ["numbers", "request"], ["emulator"], ["demo"]],
)  # fmt: skip
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_demo_downloads_verifies_and_summarises(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "audian_fax_async.cli", "demo", "--dest", str(tmp_path), "--faxes", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "30 downloaded" in done.stdout
    assert "verified:    30/30" in done.stdout
    assert "0 partial files left" in done.stdout
