"""``audian-fax mirror`` in process: usage, ``mirror status``, and errors as one line."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from click.testing import CliRunner

from audian_fax_async import FaxClient
from audian_fax_async.cli._app import cli
from audian_fax_async.emulator import AdminClient, Emulator
from audian_fax_async.mirror import Mirror
from audian_fax_async.mirror._state import FolderLock

from .conftest import ACCOUNT_FAXES


def invoke(emulator: Emulator, key: str, *args: str) -> tuple[int, str, str]:
    env = {"AUDIAN_BASE_URL": emulator.base_url, "AUDIAN_API_KEY": key}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_mirror_help_shows_both_forms_and_run_needs_a_port(mirror_emulator: Emulator, key: str) -> None:
    code, out, _ = invoke(mirror_emulator, key, "mirror", "--help")
    assert code == 0 and "audian-fax mirror DEST --port PORT" in out and "audian-fax mirror status DEST" in out
    code, out, _ = invoke(mirror_emulator, key, "mirror", "somewhere", "--help")
    assert code == 0 and "--reconcile-every" in out and "--register-webhook" in out
    code, _, err = invoke(mirror_emulator, key, "mirror", "somewhere")
    assert code == 2 and err.count("\n") == 1 and "Missing option '--port'" in err


def test_bad_options_are_usage_errors(mirror_emulator: Emulator, key: str, tmp_path: Path) -> None:
    dest = str(tmp_path / "d")
    for args, said in (
        (("--allow-senders", "555"), "not an E.164 number"),
        (("--path-template", "{nope}"), "--path-template"),
        (("--register-webhook", "ftp://x"), "not an http:// or https:// URL"),
        (("--after", "deleted"), "--after"),
    ):
        code, _, err = invoke(mirror_emulator, key, "mirror", dest, "--port", "0", *args)
        assert code == 2 and said in err and err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()


def test_a_folder_another_mirror_holds_is_one_line_and_status_1(
    mirror_emulator: Emulator, key: str, tmp_path: Path
) -> None:
    lock = FolderLock(tmp_path)
    lock.acquire(shared=False)
    try:
        code, _, err = invoke(mirror_emulator, key, "mirror", str(tmp_path), "--port", "0")
    finally:
        lock.release()
    assert code == 1 and err.startswith("error: DestinationError: another mirror is running") and err.count("\n") == 1


def test_a_refused_key_is_one_line_and_status_1(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    admin.script("list", [401], key=key)
    code, _, err = invoke(mirror_emulator, key, "mirror", str(tmp_path), "--port", "0")
    assert code == 1 and err.splitlines()[-1].startswith("error: AuthenticationError:"), err


def test_status_reads_the_folder_without_a_server(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    async def run_once() -> None:
        async with FaxClient(key, base_url=mirror_emulator.base_url) as client, Mirror(client, tmp_path) as mirror:
            await mirror.caught_up()

    anyio.run(run_once)
    code, out, _ = invoke(mirror_emulator, key, "mirror", "status", str(tmp_path))
    assert code == 0
    rows = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith(("high-water", "last")))
    assert rows["status"] == "stopped" and rows["complete"] == str(ACCOUNT_FAXES) and rows["queued"] == "0"
    assert "last sweep" in out and "ok (6 listed, 6 downloaded, 0 failed)" in out
    code, out, _ = invoke(mirror_emulator, key, "mirror", "status", str(tmp_path), "--json")
    data = json.loads(out)
    assert code == 0 and data["status"] == "stopped" and data["faxes"]["complete"] == ACCOUNT_FAXES
    assert data["last_sweep"]["full"] is True and data["high_water_mark"]
    code, _, err = invoke(mirror_emulator, key, "mirror", "status", str(tmp_path / "nothing"))
    assert code == 1 and "not a mirror folder" in err and err.count("\n") == 1
