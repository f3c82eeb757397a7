"""Running the emulator: the async context manager, the thread, the CLI and the public surface."""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

import audian_fax_async.emulator as emulator_pkg
import audian_fax_async.emulator._server as server_module
from audian_fax_async.emulator import EmulatorConfig, EmulatorThread, emulator_command, fault_profile, run_emulator

# The emulator serves from its own thread; these tests check it, not the client's loop independence.
pytestmark = pytest.mark.loops("asyncio")


def test_public_surface_is_exactly_all() -> None:
    # "@py_..." names are pytest's assertion rewriting (the package holds our pytest plugin).
    public = {name for name in dir(emulator_pkg) if not name.startswith(("_", "@"))}
    assert set(emulator_pkg.__all__) == public
    assert emulator_pkg.__all__ == sorted(emulator_pkg.__all__, key=lambda n: (not n.isupper(), n))


def test_emulator_sources_never_import_the_client() -> None:
    # Written from the API reference: a shared model would hide a mismatch between the two sides.
    for source in Path(emulator_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
                assert node.level <= 1, f"{source.name} imports from outside the emulator package"
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith("audian_fax_async") or name.startswith("audian_fax_async.emulator"), (
                    f"{source.name} imports {name}"
                )


async def test_run_emulator_binds_a_free_loopback_port_and_stops() -> None:
    async with run_emulator(EmulatorConfig(faxes=1)) as first, run_emulator(EmulatorConfig(faxes=1)) as second:
        assert first.base_url != second.base_url
        assert first.base_url.startswith("http://127.0.0.1:") and first.base_url.endswith("/v2")
        async with httpx2.AsyncClient() as client:
            assert (await client.get(first.admin_url + "/health")).json() == {"ok": True}
            url = first.base_url
    async with httpx2.AsyncClient() as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get(url + "/fax/received")


async def test_async_admin_client_talks_to_the_admin_api() -> None:
    async with run_emulator(EmulatorConfig(faxes=2)) as emu, emu.async_admin() as admin:
        injected = await admin.inject("k", count=2)
        assert (await admin.stats("k"))["faxes"] == 4
        assert len(await admin.document_sha256("k", injected[0]["id"])) == 64
        await admin.script("list", [503])
        assert (await admin.stats_all())["scripts"][0]["route"] == "list"
        await admin.reset()
        assert (await admin.stats_all())["accounts"] == {}


async def test_admin_key_guards_the_admin_api_when_set() -> None:
    async with run_emulator(EmulatorConfig(faxes=1, admin_key="sesame")) as emu:
        async with httpx2.AsyncClient() as client:
            refused = await client.get(emu.admin_url + "/stats")
        assert refused.status_code == 401
        async with emu.async_admin() as admin:
            assert (await admin.health()) == {"ok": True}


def test_thread_starts_fast_serves_and_stops_cleanly() -> None:
    started = time.perf_counter()
    thread = EmulatorThread(EmulatorConfig(faxes=10))
    emu = thread.start()
    assert time.perf_counter() - started < 2  # well under a second on a quiet machine
    response = httpx2.get(emu.base_url + "/fax/received", headers={"X-Auth-Token": "k"})
    assert response.json()["total"] == 10
    thread.stop()
    thread.stop()  # idempotent
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(emu.base_url + "/fax/received", headers={"X-Auth-Token": "k"})


def test_thread_reports_a_port_already_taken() -> None:
    with EmulatorThread(EmulatorConfig(faxes=1)) as emu:
        port = int(emu.base_url.split(":")[2].split("/")[0])
        with pytest.raises(RuntimeError, match="failed to start"):
            EmulatorThread(EmulatorConfig(faxes=1, port=port)).start()


def test_cli_help_lists_the_fault_options() -> None:
    result = CliRunner().invoke(emulator_command, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--faxes",
        "--seed",
        "--latency",
        "--bandwidth",
        "--p500",
        "--p503",
        "--p429",
        "--drop",
        "--truncate",
        "--slow-first-byte",
        "--faults",
        "--max-concurrent-downloads",
        "--time-scale",
    ):
        assert option in result.output


def test_cli_refuses_probabilities_adding_past_one() -> None:
    result = CliRunner().invoke(emulator_command, ["--p500", "0.7", "--p503", "0.7"])
    assert result.exit_code == 2
    assert "add up" in result.output


def test_python_dash_m_serves_and_answers() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "audian_fax_async.emulator", "--port", "0", "--faxes", "3", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        base_url = banner.split("API ")[1].split()[0]
        response = httpx2.get(base_url + "/fax/received", headers={"Authorization": "Bearer k"}, timeout=10)
        assert response.json()["total"] == 3
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_options_override_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[EmulatorConfig] = []

    @contextlib.asynccontextmanager
    async def fake_run(config: EmulatorConfig, **_: object) -> AsyncIterator[object]:
        seen.append(config)

        class Stopped:
            base_url = admin_url = "http://fake"

            async def wait_stopped(self) -> None:
                return None

        yield Stopped()

    monkeypatch.setattr(server_module, "run_emulator", fake_run)
    args = ["--faults", "chaos", "--p503", "0.2", "--bandwidth", "1000", "--retry-after", "3", "--faxes", "9",
            "--max-concurrent-downloads", "4", "--time-scale", "0.001", "--seed", "42"]  # fmt: skip
    result = CliRunner().invoke(emulator_command, args)
    assert result.exit_code == 0, result.output
    config = seen[0]
    chaos = fault_profile("chaos")
    assert (config.faults.p503, config.faults.bandwidth, config.faults.retry_after) == (0.2, 1000, 3)
    assert (config.faults.p500, config.faults.drop, config.faults.latency) == (chaos.p500, chaos.drop, chaos.latency)
    assert (config.faxes, config.max_concurrent_downloads, config.retry_after) == (9, 4, 3)
    assert (config.time_scale, config.seed, config.port) == (0.001, 42, 8443)
