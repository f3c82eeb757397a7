"""``audian-fax listen`` notes on stderr every post it does not take in (issue 18, item 8)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import anyio
import httpx2
import pytest

pytestmark = pytest.mark.loops("asyncio")

PAYLOAD = {
    "event": "fax_received",
    "id": "fax_received_123",
    "from_number": "+12025551234",
    "from_name": "John Smith",
    "to_number": "+15551234567",
    "pages": 5,
    "received_at": "2024-02-04T13:15:00Z",
    "file_size": 450000,
    "format": "pdf",
    "document_url": "https://api.audian.com:8443/v2/fax/received/fax_received_123/download",
}
JSON = {"Content-Type": "application/json", "X-Audian-Event-Id": "evt_1"}


async def test_refused_and_invalid_posts_are_noted_on_stderr_and_events_on_stdout() -> None:
    command = [sys.executable, "-m", "audian_fax_async.cli", "listen", "--port", "0", "--allow-sender", "+12025551234"]
    with anyio.fail_after(30):
        async with await anyio.open_process(command, stdin=subprocess.DEVNULL) as process:
            assert process.stderr is not None and process.stdout is not None
            err = b""
            while b"\n" not in err:
                err += await process.stderr.receive()
            match = re.search(rb"listening on (http://127\.0\.0\.1:\d+/)", err)
            assert match, err
            posts = [
                (json.dumps(PAYLOAD), JSON, 200),
                (json.dumps(PAYLOAD), JSON, 200),  # a retry of the same event
                ("{not json", {**JSON, "X-Audian-Event-Id": "evt_2"}, 400),
                (json.dumps(PAYLOAD), {"Content-Type": "text/plain"}, 415),
                (json.dumps({**PAYLOAD, "from_number": "+19995550000"}), {**JSON, "X-Audian-Event-Id": "evt_3"}, 403),
            ]
            async with httpx2.AsyncClient(base_url=match.group(1).decode()) as http:
                for body, headers, status in posts:
                    assert (await http.post("/hook", content=body, headers=headers)).status_code == status
            notes = err.split(b"\n", 1)[1]
            while notes.count(b"\n") < 4:
                notes += await process.stderr.receive()
            out = b""
            while b"\n" not in out:
                out += await process.stdout.receive()
            process.terminate()
            await process.wait()
    lines = notes.decode().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["duplicate", "invalid", "unsupported", "refused"], lines
    assert all(" POST /hook from 127.0.0.1:" in line for line in lines)
    assert lines[0].endswith("answered 200 (already handled)")
    assert "answered 400" in lines[1] and "answered 415 (content type 'text/plain'" in lines[2]
    assert lines[3].endswith("answered 403 (sender not allowed)")
    (event,) = out.decode().splitlines()
    assert json.loads(event)["id"] == "fax_received_123"
