"""``audian-fax listen``: one JSON line per de-duplicated event, confirmation, forwarding, the real command."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import anyio
import httpx2
import pytest
from click.testing import CliRunner

from audian_fax_async.webhooks import WebhookReceiver
from audian_fax_async.webhooks._cli import build_listener, listen_command

from .fakes import FakeFaxAPI, Recorder, fax_record
from .payloads import delivery_headers, json_body, xml_body
from .servers import serve

# uvicorn serves the receiver inside the test's loop, and uvicorn needs asyncio (uvloop included).
pytestmark = pytest.mark.loops("asyncio", "uvloop")


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_prints_each_event_once_as_one_json_line() -> None:
    out = io.StringIO()
    async with serve(build_listener(out=out)) as url, httpx2.AsyncClient(base_url=url) as http:
        for attempt in (1, 2):
            await http.post("/", content=json_body(), headers=delivery_headers(attempt=attempt))
        await http.post("/", content=xml_body(id="fax_2"), headers=delivery_headers("application/xml", event_id="e2"))
    printed = lines(out)
    assert [(p["id"], p["event_id"]) for p in printed] == [("fax_received_123", "evt_1"), ("fax_2", "e2")]
    assert printed[0]["received_at"] == "2024-02-04T13:15:00Z"
    assert printed[0]["delivery_id"] == "dlv_evt_1_1"


async def test_confirmed_lines_carry_the_apis_record_and_forged_events_print_nothing() -> None:
    out = io.StringIO()
    api = FakeFaxAPI([fax_record(duration=99)])
    async with api.client() as client:
        receiver = build_listener(out=out, confirm_with=client)
        async with serve(receiver) as url, httpx2.AsyncClient(base_url=url) as http:
            forged = await http.post("/", content=json_body(id="fax_forged"), headers=delivery_headers(event_id="f"))
            genuine = await http.post("/", content=json_body(), headers=delivery_headers())
    assert (forged.status_code, genuine.status_code) == (403, 200)
    (line,) = lines(out)
    assert line["id"] == "fax_received_123"
    assert isinstance(line["fax"], dict)
    assert line["fax"]["duration"] == 99


async def test_forwards_new_events_and_a_failed_forward_is_retried_not_printed() -> None:
    out = io.StringIO()
    downstream = Recorder(fail_times=1)
    async with (
        serve(WebhookReceiver(downstream)) as downstream_url,
        httpx2.AsyncClient() as forward_client,
    ):
        listener = build_listener(out=out, forward_to=downstream_url + "/", forward_client=forward_client)
        async with serve(listener) as url, httpx2.AsyncClient(base_url=url) as http:
            first = await http.post("/", content=xml_body(), headers=delivery_headers("application/xml", attempt=1))
            assert out.getvalue() == ""  # the forward failed: nothing printed, the sender must retry
            second = await http.post("/", content=xml_body(), headers=delivery_headers("application/xml", attempt=2))
            third = await http.post("/", content=xml_body(), headers=delivery_headers("application/xml", attempt=3))
    assert (first.status_code, second.status_code, third.status_code) == (500, 200, 200)
    assert len(lines(out)) == 1
    assert [e.event_id for e in downstream.events] == ["evt_1", "evt_1"]  # the downstream failed once, then got it
    assert downstream.events[-1].pages == 5


def test_confirm_without_a_key_is_a_usage_error() -> None:
    result = CliRunner().invoke(listen_command, ["--confirm"], env={"AUDIAN_API_KEY": ""})
    assert result.exit_code == 2
    assert "--confirm needs --api-key" in result.output


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(listen_command, ["--help"])
    assert result.exit_code == 0
    for option in ("--port", "--host", "--api-key", "--confirm", "--forward-to", "--allow-sender"):
        assert option in result.output


async def test_the_real_command_serves_on_loopback_and_prints_json_lines() -> None:
    code = "from audian_fax_async.webhooks._cli import listen_command; listen_command()"
    with anyio.fail_after(20):
        async with await anyio.open_process(
            [sys.executable, "-c", code, "--port", "0"], stdin=subprocess.DEVNULL
        ) as process:
            assert process.stderr is not None and process.stdout is not None
            banner = b""
            while b"\n" not in banner:
                banner += await process.stderr.receive()
            match = re.search(rb"listening on (http://127\.0\.0\.1:\d+/)", banner)
            assert match, banner
            async with httpx2.AsyncClient(base_url=match.group(1).decode()) as http:
                for attempt in (1, 2):
                    response = await http.post("/", content=json_body(), headers=delivery_headers(attempt=attempt))
                    assert response.status_code == 200
            output = b""
            while b"\n" not in output:
                output += await process.stdout.receive()
            process.terminate()
            await process.wait()
    (line,) = output.decode().splitlines()
    assert json.loads(line)["id"] == "fax_received_123"
