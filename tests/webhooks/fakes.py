"""Test doubles: a recording handler, an in-memory fax API behind a real FaxClient, an ASGI driver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2

from audian_fax_async import FaxClient, RetryPolicy
from audian_fax_async.webhooks import ConfirmedEvent, WebhookEvent

from .payloads import REFERENCE_PAYLOAD


class Recorder:
    """An async handler that records what it was called with; can fail or block on demand."""

    def __init__(self, *, fail_times: int = 0) -> None:
        self.calls: list[Any] = []
        self.fail_times = fail_times
        self.gate: anyio.Event | None = None
        self.entered = anyio.Event()

    async def __call__(self, item: Any) -> None:
        self.calls.append(item)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("handler exploded")

    @property
    def events(self) -> list[WebhookEvent]:
        return [c.event if isinstance(c, ConfirmedEvent) else c for c in self.calls]


def fax_record(fax_id: str = "fax_received_123", **changes: Any) -> dict[str, Any]:
    """The API's detail record of a fax, consistent with the reference payload."""
    record = {k: v for k, v in REFERENCE_PAYLOAD.items() if k != "event"}
    record.update(id=fax_id, status="received", processed=False, duration=45, baud_rate=14400)
    record.update(changes)
    return record


class FakeFaxAPI:
    """``GET /fax/received/{id}`` from a dict; counts lookups; can fail with a status."""

    def __init__(self, faxes: Iterable[dict[str, Any]] = ()) -> None:
        self.faxes = {f["id"]: f for f in faxes}
        self.lookups: list[str] = []
        self.fail_status: int | None = None

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        fax_id = request.url.path.rsplit("/", 1)[-1]
        self.lookups.append(fax_id)
        if self.fail_status is not None:
            return httpx2.Response(self.fail_status, json={"error": "unavailable"})
        if request.method == "GET" and fax_id in self.faxes:
            return httpx2.Response(200, json=self.faxes[fax_id])
        return httpx2.Response(404, json={"error": {"code": "not_found", "message": "no such fax"}})

    def client(self) -> FaxClient:
        async def no_sleep(_: float) -> None:
            return None

        return FaxClient(
            "sk_test_key_0123456789",
            base_url="http://api.test/v2",
            transport=httpx2.MockTransport(self),
            retry_policy=RetryPolicy(sleep=no_sleep, max_retries=0),
        )


class ASGIDriver:
    """Calls an ASGI app directly with a body given in chunks; records what the app pulled."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def post(
        self, chunks: Iterable[bytes], headers: dict[str, str], *, method: str = "POST"
    ) -> tuple[int, dict[str, str], bytes, int]:
        """(status, headers, body, bytes the app pulled from the request)."""
        source = iter(chunks)
        pulled = 0
        pending: bytes | None = next(source, None)
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal pending, pulled
            chunk = pending if pending is not None else b""
            pending = next(source, None)
            pulled += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": pending is not None}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": "/",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
        await self.app(scope, receive, send)
        start = sent[0]
        response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return start["status"], response_headers, body, pulled


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan around the block, as a server would."""
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](2)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](2)

    async def send(message: dict[str, Any]) -> None:
        await app_outbox.send(message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(app, {"type": "lifespan"}, app_inbox.receive, send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        try:
            yield
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


def decode(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body)
    return data
