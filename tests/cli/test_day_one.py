"""Day one with ``audian-fax`` (issue 18): folders, one-line errors, the progress display, ``list`` in pipes,
messages in the command line's words, and what ``get``, ``-v``, ``download-all`` and ``demo --help`` say.

Every command runs through click's runner against the plugin's emulator; retries never wait (the
client's retry policy sleeps through a checkpoint).
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import anyio.lowlevel
import pytest
from click.testing import CliRunner
from rich.console import Console

from audian_fax_async import BulkProgress, FaxClient, RetryPolicy
from audian_fax_async.cli import _app
from audian_fax_async.cli._app import cli
from audian_fax_async.cli._common import Settings, cli_words
from audian_fax_async.cli._progress import Tracker, run_bulk
from audian_fax_async.emulator import AdminClient, Emulator

pytestmark = pytest.mark.loops("asyncio")


async def no_wait(_: float) -> None:
    await anyio.lowlevel.checkpoint()


NO_WAIT = RetryPolicy(sleep=no_wait)


class Runner(Protocol):
    def __call__(
        self, *args: str, key: str | None = ..., base_url: str | None = ..., columns: int = ...
    ) -> tuple[int, str, str]: ...


@pytest.fixture(autouse=True)
def retries_never_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    def client(self: Settings, **kwargs: Any) -> FaxClient:
        return FaxClient(
            self.api_key, base_url=self.base_url, max_retries=self.max_retries, retry_policy=NO_WAIT, **kwargs
        )

    monkeypatch.setattr(Settings, "client", client)


@pytest.fixture
def run(audian_emulator: Emulator, audian_api_key: str, audian_admin: AdminClient) -> Runner:
    def invoke(
        *args: str, key: str | None = audian_api_key, base_url: str | None = None, columns: int = 80
    ) -> tuple[int, str, str]:
        env = {
            "AUDIAN_BASE_URL": base_url or audian_emulator.base_url,
            "AUDIAN_API_KEY": key or "",
            "COLUMNS": str(columns),
        }
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def one_line(err: str) -> str:
    """The error's single line (and that it is one, without a traceback)."""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: "), err
    return err


def first_ids(run: Runner, count: int) -> list[str]:
    code, out, _ = run("list", "--limit", str(count), "--json")
    assert code == 0
    return [json.loads(line)["id"] for line in out.splitlines()]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


# -- item 1: a destination ending in a separator is a folder -------------------------------------


def test_download_into_a_new_folder_named_with_a_trailing_slash(run: Runner, tmp_path: Path) -> None:
    first, second = first_ids(run, 2)
    folder = tmp_path / "faxes"
    for fax_id in (first, second):
        code, out, err = run("download", fax_id, f"{folder}/")
        assert (code, err) == (0, ""), err
        assert out.startswith(str(folder / f"{fax_id}.pdf"))
    assert folder.is_dir()
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{first}.pdf", f"{second}.pdf"])


# -- item 2: every error is one line and a non-zero exit ------------------------------------------


def test_errors_of_every_kind_are_one_line(run: Runner, busy_port: int, tmp_path: Path) -> None:
    fax_id = first_ids(run, 1)[0]
    cases: list[tuple[tuple[str, ...], dict[str, Any], int, str]] = [
        (("list",), {"key": "clé"}, 1, "ConfigurationError: The API key must be printable ASCII"),
        (("list",), {"key": None}, 1, "No API key"),
        (("list", "--all", "--limit", "5"), {}, 2, "--all walks every page: it takes no --limit"),
        (("list", "--all", "--offset", "5"), {}, 2, "it takes no --offset"),
        (("list", "--bogus"), {}, 2, "No such option"),
        (("list", "--from-date", "yesterday"), {}, 2, "is not an ISO 8601 date"),
        (("get", "fax_received_nope"), {}, 1, "NotFoundError: 404"),
        (("download", fax_id, "/proc/no/such/"), {}, 1, "DestinationError"),
        (("download-all", "/proc/no/such"), {}, 1, "DestinationError"),
        (("numbers", "request", "--area-code", "2x2"), {}, 1, "area_code must be a string of digits"),
        (("emulator", "--port", str(busy_port)), {}, 1, f"cannot listen on 127.0.0.1:{busy_port}"),
        (("listen", "--port", str(busy_port)), {}, 1, f"cannot listen on 127.0.0.1:{busy_port}"),
        (("listen", "--confirm"), {"key": None}, 2, "--confirm needs --api-key"),
        (("demo", "--faults", "bogus"), {}, 2, "'bogus' is not one of 'chaos', 'flaky', 'none'"),
        (("webhooks", "create", "--url", "nope"), {}, 1, "InvalidRequestError"),
        (("download-all", str(tmp_path), "--template", "{nope}"), {}, 2, "invalid path_template '{nope}'"),
        (("listen", "--forward-to", "nope"), {}, 2, "'nope' is not an http:// or https:// URL"),
    ]
    for args, options, status, says in cases:
        code, _, err = run(*args, **options)
        assert code == status, (args, code, err)
        assert says in one_line(err), (args, err)
    assert list(tmp_path.iterdir()) == []  # the bad template was refused before anything was made


def test_unreachable_api_says_it_retried_and_how_long(run: Runner) -> None:
    with socket.socket() as sock:  # a port nothing listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run("--max-retries", "2", "list", base_url=f"http://127.0.0.1:{port}/v2")
    assert code == 1
    assert "APIConnectionError" in one_line(err) and "gave up after 3 attempts over" in err


def test_an_unexpected_error_is_one_line_too(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Settings, **kwargs: Any) -> FaxClient:
        raise UnicodeEncodeError("ascii", "clé", 2, 3, "ordinal not in range(128)")

    monkeypatch.setattr(Settings, "client", broken)
    code, _, err = run("list")
    assert code == 1
    assert "unexpected UnicodeEncodeError" in one_line(err) and "please report it" in err


def test_a_closed_pipe_ends_the_command_quietly(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str
) -> None:
    audian_admin.inject(audian_api_key, count=2000)  # ~200 KB of lines: more than a pipe holds
    env = {"AUDIAN_BASE_URL": audian_emulator.base_url, "AUDIAN_API_KEY": audian_api_key, "PATH": ""}
    with subprocess.Popen(
        [sys.executable, "-m", "audian_fax_async.cli", "list", "--all"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"fax_received_")
        process.stdout.close()  # as `audian-fax list --all | head -1` does
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 1
    assert err == "", err


# -- item 5: the progress display ---------------------------------------------------------------


def progress(**counters: Any) -> BulkProgress:
    return BulkProgress(**counters)


def test_total_comes_from_the_first_page_and_rate_and_eta_show_at_once() -> None:
    tracker = Tracker(started=100.0)
    # Two seconds in: 17 of the 500 the first page announced listed, 3 finished, 2 MB in.
    snap = tracker.snapshot(
        progress(expected=500, listed=17, listed_bytes=17_000_000, downloaded=3, bytes=2_000_000), now=102.0
    )
    assert (snap.finished, snap.total) == (3, 500)
    assert snap.faxes == "3/500 faxes" and snap.speed == "1.0 MB/s"
    assert snap.eta is not None and 400 < snap.eta < 600  # ~500 MB expected, 1 MB/s
    assert snap.line() == "downloading: 3/500 faxes (0%), 2.0 MB at 1.0 MB/s, ETA 0:08:18"  # 498 MB left


def test_skipped_files_count_as_done_and_a_finished_run_is_a_full_bar() -> None:
    tracker = Tracker(started=0.0)
    snap = tracker.snapshot(
        progress(expected=500, listed=500, listed_bytes=1, skipped=450, downloaded=50, bytes=5, listing_done=True),
        now=4.0,
    )
    assert (snap.finished, snap.total, snap.eta) == (500, 500, 0.0)
    assert "500/500 faxes (100%)" in snap.line() and "ETA 0:00:00" in snap.line()


def test_before_the_first_page_nothing_is_guessed() -> None:
    snap = Tracker(started=0.0).snapshot(progress(), now=1.0)
    assert (snap.total, snap.rate, snap.eta) == (None, None, None)
    assert snap.line() == "downloading: 0 faxes, 0.0 MB at -- MB/s, ETA --"


async def test_without_a_terminal_a_plain_line_every_interval(
    audian_emulator: Emulator, audian_api_key: str, audian_admin: AdminClient, tmp_path: Path
) -> None:
    ticks = iter(range(1_000_000))  # a clock that advances one second per reading
    out = io.StringIO()
    console = Console(file=out, width=40)  # narrow: lines must not wrap
    async with FaxClient(audian_api_key, base_url=audian_emulator.base_url) as client:
        summary = await run_bulk(
            lambda on_progress: client.received.download_all(tmp_path, on_progress=on_progress),
            json_lines=False,
            console=console,
            live=False,
            clock=lambda: float(next(ticks)),
            interval=50.0,
        )
    lines = out.getvalue().splitlines()
    assert summary.downloaded == 100 and lines
    assert all(line.startswith("downloading: ") and "/100 faxes" in line for line in lines), lines
    assert "\x1b" not in out.getvalue()


async def test_on_a_terminal_the_bar_ends_full_with_skipped_files(
    audian_emulator: Emulator, audian_api_key: str, audian_admin: AdminClient, tmp_path: Path
) -> None:
    async with FaxClient(audian_api_key, base_url=audian_emulator.base_url) as client:
        await client.received.download(first_id := (await client.received.list(limit=1)).faxes[0].id, tmp_path)
        assert first_id
        async with client.received.download_all(tmp_path) as outcomes:
            assert len([o async for o in outcomes]) == 100  # all on disk: a rerun skips them all
        out = io.StringIO()
        console = Console(file=out, force_terminal=True, width=150, color_system=None)
        summary = await run_bulk(
            lambda on_progress: client.received.download_all(tmp_path, on_progress=on_progress),
            json_lines=False,
            console=console,
        )
    assert summary.skipped == 100
    final = out.getvalue().rsplit("\r", 1)[-1]
    assert "100/100 faxes" in final and "ETA 0:00:00" in final
    assert "━" in final and "╺" not in final and "╸" not in final, final  # a full bar


# -- item 6: list -------------------------------------------------------------------------------


def test_list_in_a_pipe_is_tab_separated_and_ids_are_whole(run: Runner) -> None:
    code, out, err = run("list", "--limit", "5")
    assert (code, err) == (0, "")
    rows = [line.split("\t") for line in out.splitlines()]
    _, as_json, _ = run("list", "--limit", "5", "--json")
    fields = ("id", "received_at", "from_number", "from_name", "pages", "file_size", "status")
    expected = [[str(record[name]) for name in fields] for record in map(json.loads, as_json.splitlines())]
    assert rows == expected  # every field whole: the id as it is, the size in bytes, ISO 8601 times


@pytest.mark.parametrize("width", [50, 80, 100, 140])
def test_list_on_a_terminal_never_cuts_a_cell(run: Runner, monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    monkeypatch.setattr(_app, "stdout_is_terminal", lambda: True)
    code, out, _ = run("list", "--limit", "5", columns=width)
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith("fax_")]
    assert rows == first_ids(run, 5), out  # each id whole, on one line of its own
    assert "…" not in out, out
    table = out.splitlines()[:-1]
    assert all(len(line) <= width for line in table[:7]), out
    header = table[0].split()
    if width >= 140:
        assert out.splitlines()[-1] == "5 shown of 100"
        assert "name" in header
    else:
        assert "left out: too narrow; --json has every field" in " ".join(out.split())
        assert header[:2] == ["id", "┃"] and header[-1] == "status"


# -- item 7: the command line's words ------------------------------------------------------------


def test_messages_say_overwrite_as_an_option(run: Runner, tmp_path: Path) -> None:
    assert cli_words("x.pdf already exists (pass overwrite=True to replace it)") == (
        "x.pdf already exists (pass --overwrite to replace it)"
    )
    fax_id = first_ids(run, 1)[0]
    assert run("download", fax_id, str(tmp_path))[0] == 0
    code, _, err = run("download", fax_id, str(tmp_path))
    assert code == 1 and "(pass --overwrite to replace it)" in one_line(err) and "=True" not in err
    (tmp_path / "all").mkdir()
    (tmp_path / "all" / f"{fax_id}.pdf").write_bytes(b"not this fax")
    code, out, err = run("download-all", str(tmp_path / "all"), "--json")
    (failed,) = [row for row in map(json.loads, out.splitlines()) if row["kind"] == "failed"]
    assert failed["id"] == fax_id and "pass --overwrite" in failed["error"] and "=True" not in out


def test_json_lines_say_kind_like_the_sdk(run: Runner, tmp_path: Path) -> None:
    code, out, _ = run("download-all", str(tmp_path), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 100
    assert all(set(row) == {"id", "kind", "path", "bytes", "sha256", "marked", "error"} for row in rows)
    assert {row["kind"] for row in rows} == {"downloaded"}


def test_a_fax_whose_marking_failed_is_reported_downloaded_not_marked(
    run: Runner, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.script("update", [500], key=audian_api_key)
    code, out, err = run("--max-retries", "0", "download-all", str(tmp_path), "--after", "processed", "--json")
    assert code == 1 and "1 of 100 faxes failed" in err
    (failed,) = [row for row in map(json.loads, out.splitlines()) if row["kind"] == "failed"]
    assert failed["path"] is not None and Path(failed["path"]).is_file()
    assert failed["error"].startswith("downloaded, not marked: InternalServerError")
    assert "1 of the failed are downloaded, not marked: a rerun marks them" in err

    code, out, _ = run("download-all", str(tmp_path), "--after", "processed", "--json")
    rows = {row["id"]: row for row in map(json.loads, out.splitlines())}
    assert code == 0 and rows[failed["id"]]["kind"] == "skipped" and rows[failed["id"]]["marked"] == "processed"


def test_a_marking_failure_on_a_terminal_names_the_file(
    run: Runner, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.script("update", [500], key=audian_api_key)
    code, _, err = run("--max-retries", "0", "download-all", str(tmp_path), "--after", "processed")
    (line,) = [line for line in err.splitlines() if line.startswith("not marked ")]
    assert code == 1 and f"downloaded to {tmp_path}" in line and "but marking failed: InternalServerError" in line


def test_verbose_levels_say_what_they_log(run: Runner, audian_admin: AdminClient, audian_api_key: str) -> None:
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert "retries and warnings (-v); also one line per HTTP request (-vv)" in " ".join(help_text.split())
    audian_admin.script("list", [503], key=audian_api_key)
    code, _, err = run("-v", "list", "--limit", "1")
    assert code == 0 and "retrying GET" in err and "-> 200" not in err
    code, _, err = run("-vv", "list", "--limit", "1")
    assert code == 0 and err.count("GET /v2/fax/received -> 200 OK") == 1, err
    code, _, err = run("list", "--limit", "1")
    assert (code, err) == (0, "")


# -- item 8: get, download-all's folder, demo --help ---------------------------------------------


def test_get_shows_every_field_of_the_record(run: Runner) -> None:
    fax_id = first_ids(run, 1)[0]
    _, as_json, _ = run("get", fax_id, "--json")
    record = json.loads(as_json)
    code, out, _ = run("get", fax_id)
    shown = {name: value.strip() for name, _, value in (line.partition(" ") for line in out.splitlines())}
    assert code == 0 and set(shown) == set(record) >= {"duration", "baud_rate", "to_number", "created_at"}
    for name, value in record.items():
        assert shown[name] == (str(value).lower() if isinstance(value, bool) else str(value)), name


def test_download_all_leaves_no_folder_behind_when_the_listing_fails(
    run: Runner, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    audian_admin.script("list", [401, 401], key=audian_api_key)
    code, _, err = run("download-all", str(tmp_path / "new" / "archive"))
    assert code == 1 and "AuthenticationError: 401" in err.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # neither folder it made is left
    (tmp_path / "kept").mkdir()
    code, _, _ = run("download-all", str(tmp_path / "kept"))
    assert code == 1 and (tmp_path / "kept").is_dir()  # a folder that was there stays


def test_demo_help_names_dest() -> None:
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0
    words = " ".join(result.output.split())
    assert "bulk-download every fax into the --dest folder" in words and "DEST" not in words
