"""The receiver behind a real uvicorn server on loopback: concurrency, size limits, attacks, mounting."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from audian_fax_async.webhooks import DeliveryOutcome, WebhookEvent, WebhookReceiver

from .fakes import Recorder
from .payloads import BILLION_LAUGHS, XXE_FILE, delivery_headers, json_body, xml_body
from .servers import serve

# uvicorn serves the receiver inside the test's loop, and uvicorn needs asyncio (uvloop included).
pytestmark = pytest.mark.loops("asyncio", "uvloop")

MiB = 1024 * 1024


async def test_100_concurrent_deliveries_of_one_event_call_the_handler_once() -> None:
    handler = Recorder()
    gate = handler.gate = anyio.Event()
    receiver = WebhookReceiver(handler)
    statuses: list[int] = []
    limits = httpx2.Limits(max_connections=100)
    async with serve(receiver) as url, httpx2.AsyncClient(base_url=url, limits=limits, timeout=10) as http:

        async def deliver(attempt: int) -> None:
            response = await http.post("/", content=json_body(), headers=delivery_headers(attempt=attempt))
            statuses.append(response.status_code)
            if len(statuses) == 99:
                gate.set()  # every duplicate was answered while the first was in the handler

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for attempt in range(1, 101):
                    tg.start_soon(deliver, attempt)
        late = await http.post("/", content=xml_body(), headers=delivery_headers("application/xml", attempt=101))
    assert len(handler.calls) == 1
    assert sorted(statuses) == [200] + [409] * 99
    assert late.json() == {"outcome": "duplicate", "reason": "already handled"}


async def test_handler_failure_over_http_is_500_then_the_redelivery_is_handled() -> None:
    handler = Recorder(fail_times=1)
    async with serve(WebhookReceiver(handler)) as url, httpx2.AsyncClient(base_url=url) as http:
        first = await http.post("/", content=json_body(), headers=delivery_headers(attempt=1))
        second = await http.post("/", content=json_body(), headers=delivery_headers(attempt=2))
    assert (first.status_code, second.status_code) == (500, 200)
    assert len(handler.calls) == 2


async def _raw_exchange(url: str, head: bytes, body_chunks: int, chunk: bytes) -> bytes:
    """Send ``head`` then up to ``body_chunks`` chunks while reading the answer; return its first bytes."""
    host, port = url.removeprefix("http://").split(":")
    sent_done = anyio.Event()
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(head)

        async def pump() -> None:
            try:
                for _ in range(body_chunks):
                    await stream.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the server closed the connection after answering: expected
            finally:
                sent_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            answer = b""
            try:
                while b"\r\n\r\n" not in answer:
                    answer += await stream.receive()
            finally:
                tg.cancel_scope.cancel()
    return answer


async def test_content_length_over_the_cap_is_refused_before_any_body_byte_is_read() -> None:
    receiver = WebhookReceiver(Recorder())
    async with serve(receiver) as url:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            10 * MiB
        )
        with anyio.fail_after(5):
            answer = await _raw_exchange(url, head, body_chunks=0, chunk=b"")
    assert answer.startswith(b"HTTP/1.1 413")
    assert receiver.statistics().bytes_received == 0


async def test_streamed_10_mib_body_is_refused_without_being_buffered() -> None:
    receiver = WebhookReceiver(Recorder())
    data = b"x" * (64 * 1024)
    chunk = b"%x\r\n%s\r\n" % (len(data), data)  # chunked transfer coding: no Content-Length up front
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with serve(receiver) as url:
        tracemalloc.start()
        try:
            with anyio.fail_after(10):
                answer = await _raw_exchange(url, head, body_chunks=160, chunk=chunk)  # 160 x 64 KiB = 10 MiB
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert answer.startswith(b"HTTP/1.1 413")
    consumed = receiver.statistics().bytes_received
    assert receiver.max_body_bytes < consumed <= receiver.max_body_bytes + 256 * 1024, consumed
    assert peak < 4 * MiB, f"peak {peak} bytes while 10 MiB were offered"


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE_FILE], ids=["billion_laughs", "xxe"])
async def test_xml_attacks_over_http_are_refused_in_well_under_a_second(body: bytes) -> None:
    handler = Recorder()
    async with serve(WebhookReceiver(handler)) as url, httpx2.AsyncClient(base_url=url) as http:
        started = time.perf_counter()
        response = await http.post("/", content=body, headers={"Content-Type": "application/xml"})
        elapsed = time.perf_counter() - started
    assert response.status_code == 400
    assert "DTD" in response.json()["reason"]
    assert elapsed < 2.0  # an expansion would take minutes
    assert handler.calls == []


async def test_mounts_in_starlette_and_routes_as_an_asgi_endpoint() -> None:
    handler = Recorder()
    receiver = WebhookReceiver(handler)
    app = Starlette(routes=[Mount("/webhooks/fax", app=receiver), Route("/hook", receiver, methods=["POST"])])
    async with serve(app) as url, httpx2.AsyncClient(base_url=url) as http:
        # A Mount matches below its path: Starlette redirects the bare path to "/webhooks/fax/" (307).
        mounted = await http.post("/webhooks/fax/", content=json_body(), headers=delivery_headers(event_id="e1"))
        xml_headers = delivery_headers("application/xml", event_id="e2")
        routed = await http.post("/hook", content=xml_body(), headers=xml_headers)
        wrong_type = await http.post("/hook", content=b"hi", headers={"Content-Type": "text/plain"})
    assert (mounted.status_code, routed.status_code, wrong_type.status_code) == (200, 200, 415)
    assert [e.event_id for e in handler.events] == ["e1", "e2"]


async def test_fastapi_app_runs_a_background_receiver_in_its_lifespan() -> None:
    seen: list[WebhookEvent] = []
    done = anyio.Event()

    async def on_event(event: WebhookEvent) -> None:
        seen.append(event)
        done.set()

    receiver = WebhookReceiver(on_event, background=True)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with receiver:  # mounted apps get no lifespan of their own
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/webhooks/fax", receiver)
    async with serve(app, lifespan="on") as url, httpx2.AsyncClient(base_url=url) as http:
        response = await http.post("/webhooks/fax/", content=json_body(), headers=delivery_headers())
        with anyio.fail_after(5):
            await done.wait()
    assert response.status_code == 202
    assert [e.id for e in seen] == ["fax_received_123"]
    assert receiver.statistics().count(DeliveryOutcome.ACCEPTED) == 1


async def test_get_is_405_over_http() -> None:
    async with serve(WebhookReceiver(Recorder())) as url, httpx2.AsyncClient(base_url=url) as http:
        response = await http.get("/")
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
