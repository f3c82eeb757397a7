"""Defect 5 (and 3 and 12 as the command line shows them): ``audian-fax`` prints what the server
says as plain text.

Fax fields injected into the emulator carry rich markup (``[/bold]``, ``[link=...]``) and terminal
escapes (clear screen, OSC 8 hyperlinks). The output shows them as text, with control characters
as visible escapes; with colours forced on, the only escape sequences in the output are the CLI's
own colours (SGR). Errors stay one line, without the key and without a traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from audian_fax_async.cli import main
from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig, EmulatorThread

from .helpers import shows_key
from .server import HostileServer, Reply, Request, json_reply

CLEAR_SCREEN = "\x1b[2J"
LINK = "\x1b]8;;https://evil.example\x07"
#: Any escape sequence other than a colour (SGR, ``ESC [ ... m``), which the CLI itself prints.
FOREIGN_ESCAPE = re.compile(r"\x1b(?!\[[0-9;]*m)")
HOSTILE_FIELDS = {
    "from_name": "[link=https://evil.example]click me[/link] [bold]" + CLEAR_SCREEN,
    "from_number": "+1202" + LINK + "555",
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with EmulatorThread(EmulatorConfig(faxes=0, seed=3, time_scale=1e-5)) as running:
        yield running


@pytest.fixture
def admin(emulator: Emulator) -> Iterator[AdminClient]:
    with emulator.admin() as client:
        yield client


def run_cli(*args: str, base_url: str, key: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """``audian-fax ARGS`` through its entry point, colours forced on as on a terminal."""
    env = {"AUDIAN_API_KEY": key, "AUDIAN_BASE_URL": base_url, "FORCE_COLOR": "1", "COLUMNS": "250"}
    monkeypatch.setattr(sys, "argv", ["audian-fax", *args])
    with CliRunner().isolation(env=env) as (out, err, *_):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return code, out.getvalue().decode(), err.getvalue().decode()


def assert_plain(text: str) -> None:
    """Only the CLI's own colours: no escape sequence came from the server."""
    assert CLEAR_SCREEN not in text and LINK not in text
    assert FOREIGN_ESCAPE.findall(text) == [], repr(text)


def assert_no_server_escapes(text: str) -> None:
    """For output with a progress bar (which moves the cursor itself): nothing of the server's."""
    assert CLEAR_SCREEN not in text and "\x1b]" not in text and "\x07" not in text, repr(text)


def test_list_prints_markup_and_escapes_from_the_server_as_text(
    emulator: Emulator, admin: AdminClient, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.inject(api_key, faxes=[{"id": "fax_[/bold]" + CLEAR_SCREEN, **HOSTILE_FIELDS}])
    code, out, err = run_cli("list", base_url=emulator.base_url, key=api_key, monkeypatch=monkeypatch)
    assert (code, err) == (0, "")
    assert "fax_[/bold]\\x1b[2J" in out, "the id is shown, its escape made visible"
    assert "[link=https://evil.example]click me[/link]" in out, "markup is shown as text, not rendered"
    assert "\\x1b]8;;https://evil.example\\x07" in out
    assert_plain(out)


def test_get_prints_an_id_that_looks_like_markup(
    emulator: Emulator, admin: AdminClient, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "[bold]" read as markup would vanish and embolden the rest; a slash would not survive the
    # emulator's routing (it decodes %2F), so the closing tag is left to the list test.
    admin.inject(api_key, faxes=[{"id": "fax_[bold]", **HOSTILE_FIELDS}])
    code, out, err = run_cli("get", "fax_[bold]", base_url=emulator.base_url, key=api_key, monkeypatch=monkeypatch)
    assert (code, err) == (0, "")
    assert "fax_[bold]" in out
    assert "[link=https://evil.example]click me[/link]" in out
    assert_plain(out)


def test_download_all_reports_a_failed_hostile_fax_as_text(
    emulator: Emulator, admin: AdminClient, api_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    admin.inject(api_key, faxes=[{"id": "fax_[/bold]" + CLEAR_SCREEN, **HOSTILE_FIELDS}])
    code, out, err = run_cli(
        "--max-retries", "0", "download-all", str(tmp_path), base_url=emulator.base_url, key=api_key,
        monkeypatch=monkeypatch,
    )  # fmt: skip
    assert code == 1, "a failed fax makes the exit status 1"
    assert "fax_[/bold]\\x1b[2J: " in out + err, "the failed fax is named, its escape made visible"
    assert_no_server_escapes(out + err)


def test_an_error_message_from_the_server_is_one_plain_line(
    server: HostileServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = "[bold red]no[/] such fax " + CLEAR_SCREEN + LINK + "\nsecond line"
    server.route("/v2/fax/received/fax_1", json_reply({"error": {"code": "fax_not_found", "message": message}}, 404))
    code, out, err = run_cli("get", "fax_1", base_url=server.base_url, key=api_key, monkeypatch=monkeypatch)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1, "one line"
    assert "NotFoundError" in err and "[bold red]no[/] such fax" in err
    assert_plain(err)


def test_download_all_after_a_401_prints_one_line_not_a_traceback(
    server: HostileServer, api_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.route("/v2/fax/received", json_reply({"error": {"code": "unauthorized", "message": "bad key"}}, 401))
    code, _, err = run_cli(
        "download-all", str(tmp_path), base_url=server.base_url, key=api_key, monkeypatch=monkeypatch
    )
    assert code == 1
    assert "error: AuthenticationError: 401" in err.splitlines()[-1], "the last line says what went wrong"
    assert "Traceback" not in err and "ExceptionGroup" not in err


def test_an_echoed_key_is_not_printed(server: HostileServer, api_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def echo(request: Request) -> Reply:
        body = f"<html>your token is {request.headers['x-auth-token']}</html>".encode()
        return Reply(headers=[("Content-Type", "text/html")], body=body)

    server.route("/v2/fax/received", echo)
    code, out, err = run_cli("list", base_url=server.base_url, key=api_key, monkeypatch=monkeypatch)
    assert code == 1 and "ValidationError" in err
    assert not shows_key(out + err, api_key)
