"""Helpers of the emulator's tests: a tiny webhook receiver and error-shape checks."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import uvicorn
from attrs import define, field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@define
class Receiver:
    """A tiny webhook receiver: records every POST; fails the first ``fail_first`` attempts of each event."""

    url: str = ""
    fail_first: int = 0
    always_fail: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(factory=list)
    arrived: anyio.Event = field(factory=anyio.Event)
    seen: dict[str, int] = field(factory=dict)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((headers, body))
        self.arrived.set()
        event_id = headers.get("x-audian-event-id", "")
        self.seen[event_id] = self.seen.get(event_id, 0) + 1
        if self.always_fail or self.seen[event_id] <= self.fail_first:
            return Response("nope", status_code=500)
        return Response(status_code=204)

    async def wait_for(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        """Wait until ``count`` requests arrived (the caller bounds the wait)."""
        while len(self.requests) < count:
            self.arrived = anyio.Event()
            await self.arrived.wait()
        return self.requests


@contextlib.asynccontextmanager
async def serve_receiver(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve ``receiver`` on a free loopback port for the duration."""
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY needs proto
    sock.bind(("127.0.0.1", 0))
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:
            await anyio.sleep(0.005)
        try:
            yield receiver
        finally:
            server.should_exit = True
    sock.close()


def free_port_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def error_of(response: httpx2.Response) -> dict[str, Any]:
    """The ``error`` object of an API error response, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error
