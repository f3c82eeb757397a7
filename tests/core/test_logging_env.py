"""``AUDIAN_LOG``: the SDK's log lines on stderr at the level asked for, silence without it, never the key.

``setup_logging(env)`` is tested on a logger stripped of its handlers (restored after), and the
whole path (the variable read at import) in a fresh interpreter against an ``httpx2.MockTransport``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from audian_fax_async import FaxClient, InternalServerError
from audian_fax_async._logs import setup_logging

from ._fakes import fax_json
from .conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
#: The format of every line the stderr handler writes: "[2024-02-04 13:15:00 DEBUG audian_fax_async] ...".
PREFIX = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?P<level>[A-Z]+) audian_fax_async\] "


def debug_line(method: str, path: str, status: str, request_id: str, attempt: int) -> str:
    return (
        PREFIX
        + re.escape(f"{method} {path} -> {status} in ")
        + r"\d+\.\d ms "
        + re.escape(f"(request id {request_id}, attempt {attempt})")
    )


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """The SDK's logger as a fresh import finds it (no handlers, no level); put back afterwards."""
    sdk = logging.getLogger("audian_fax_async")
    handlers, level = sdk.handlers[:], sdk.level
    sdk.handlers.clear()
    sdk.setLevel(logging.NOTSET)
    try:
        yield sdk
    finally:
        sdk.handlers[:] = handlers
        sdk.setLevel(level)


def stream_handlers(logger: logging.Logger) -> list[logging.StreamHandler[Any]]:
    return [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]


# -- setup_logging -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "verbose", "0", "error", "true"])
def test_without_a_known_level_the_logger_has_only_a_null_handler(logger: logging.Logger, value: str | None) -> None:
    env = {} if value is None else {"AUDIAN_LOG": value}

    assert setup_logging(env) is logger

    assert [type(h) for h in logger.handlers] == [logging.NullHandler]
    assert logger.level == logging.NOTSET  # the application's configuration decides


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warning", logging.WARNING),
        ("DEBUG", logging.DEBUG),
        (" Info \n", logging.INFO),
    ],
)
def test_audian_log_sends_the_logger_to_stderr_at_that_level(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str], value: str, level: int
) -> None:
    setup_logging({"AUDIAN_LOG": value})

    (handler,) = stream_handlers(logger)
    assert handler.stream is sys.stderr
    assert logger.level == level
    assert logger.getEffectiveLevel() == level
    logger.log(level, "hello %s", "there")
    logger.log(level - 10, "below the level")
    assert re.fullmatch(PREFIX + "hello there\n", capsys.readouterr().err)


def test_setting_up_twice_adds_no_second_handler(logger: logging.Logger) -> None:
    setup_logging({"AUDIAN_LOG": "debug"})
    setup_logging({"AUDIAN_LOG": "debug"})
    setup_logging({})

    assert len(stream_handlers(logger)) == 1
    assert sum(isinstance(h, logging.NullHandler) for h in logger.handlers) == 1


def test_setup_logging_reads_the_environment_when_given_none(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIAN_LOG", "info")

    setup_logging()

    assert len(stream_handlers(logger)) == 1 and logger.level == logging.INFO


async def test_at_debug_each_request_and_answer_is_one_line_without_the_key(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str], client: FaxClient, api: respx.MockRouter
) -> None:
    setup_logging({"AUDIAN_LOG": "debug"})
    api.get("/fax/received/fax_1").mock(
        side_effect=[
            httpx.Response(503, headers={"X-Request-Id": "req_1"}),
            httpx.Response(200, json=fax_json("fax_1"), headers={"X-Request-Id": "req_2"}),
        ]
    )

    await client.received.get("fax_1")

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert re.fullmatch(debug_line("GET", "/v2/fax/received/fax_1", "503 Service Unavailable", "req_1", 1), lines[0])
    assert re.fullmatch(PREFIX + r"retrying GET fax/received/fax_1 in 0\.44s \(attempt 1 failed: .*", lines[1])
    assert re.fullmatch(debug_line("GET", "/v2/fax/received/fax_1", "200 OK", "req_2", 2), lines[2])
    assert API_KEY not in "\n".join(lines)


async def test_an_answer_without_a_request_id_says_none(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str], client: FaxClient, api: respx.MockRouter
) -> None:
    setup_logging({"AUDIAN_LOG": "debug"})
    api.post("/fax/routing").respond(201, json={"type": "email", "destination": "a@example.com"})

    await client.routing.create(type="email", destination="a@example.com")

    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(debug_line("POST", "/v2/fax/routing", "201 Created", "None", 1), line)


async def test_at_warning_only_the_final_failure_is_printed(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str], client: FaxClient, api: respx.MockRouter
) -> None:
    setup_logging({"AUDIAN_LOG": "warning"})
    api.get("/fax/received/fax_1").respond(500, headers={"X-Request-Id": "req_500"})

    with pytest.raises(InternalServerError):
        await client.received.get("fax_1", max_retries=1)

    (line,) = capsys.readouterr().err.splitlines()
    match = re.fullmatch(PREFIX + r"GET fax/received/fax_1 failed after 2 attempts: .*", line)
    assert match is not None and match["level"] == "WARNING"
    assert API_KEY not in line


async def test_without_audian_log_nothing_is_printed(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str], client: FaxClient, api: respx.MockRouter
) -> None:
    setup_logging({})
    api.get("/fax/received/fax_1").mock(side_effect=[httpx.Response(503), httpx.Response(200, json=fax_json("fax_1"))])

    await client.received.get("fax_1")

    assert capsys.readouterr().err == ""


# -- in a fresh interpreter: the variable read at import ---------------------------------------------

SECRET = "sk_live_SUBPROCESS_SECRET_0123456789"
SCRIPT = textwrap.dedent(
    f"""
    import anyio
    import httpx2

    from audian_fax_async import FaxClient, RetryPolicy

    KEY = {SECRET!r}
    FAX = {fax_json("fax_1")!r}
    answers = []

    def handle(request):
        assert request.headers["X-Auth-Token"] == KEY
        answers.append(request)
        if len(answers) == 1:
            return httpx2.Response(503, headers={{"X-Request-Id": "req_sub_1"}})
        return httpx2.Response(200, json=FAX, headers={{"X-Request-Id": "req_sub_2"}})

    async def no_sleep(_):
        pass

    async def main():
        async with FaxClient(
            KEY,
            base_url="https://api.audian.com:8443/v2",
            transport=httpx2.MockTransport(handle),
            retry_policy=RetryPolicy(sleep=no_sleep),
        ) as client:
            fax = await client.received.get("fax_1")
        print(fax.id)

    anyio.run(main)
    """
)


def run_script(audian_log: str | None) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUDIAN_")}
    if audian_log is not None:
        env["AUDIAN_LOG"] = audian_log
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_audian_log_debug_prints_each_request_and_never_the_key() -> None:
    done = run_script("debug")

    assert done.returncode == 0, done.stderr
    assert done.stdout == "fax_1\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    assert re.fullmatch(
        debug_line("GET", "/v2/fax/received/fax_1", "503 Service Unavailable", "req_sub_1", 1), lines[0]
    )
    assert re.search(r" INFO audian_fax_async\] retrying GET fax/received/fax_1 ", lines[1])
    assert re.fullmatch(debug_line("GET", "/v2/fax/received/fax_1", "200 OK", "req_sub_2", 2), lines[2])
    assert SECRET not in done.stderr + done.stdout
    assert SECRET[-8:] not in done.stderr  # not even a tail of it


def test_audian_log_info_prints_the_retry_but_no_request_lines() -> None:
    done = run_script("info")

    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert re.match(PREFIX + r"retrying GET fax/received/fax_1 ", line)
    assert SECRET not in done.stderr


@pytest.mark.parametrize("value", [None, "", "loud"])
def test_without_audian_log_the_sdk_prints_nothing(value: str | None) -> None:
    done = run_script(value)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "fax_1\n"
    assert done.stderr == ""
