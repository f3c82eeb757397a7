"""Every API endpoint on a respx router, and every SDK method that sends a request, as a table.

:class:`Endpoints` answers each endpoint like the API (a fax, a page of one fax, its document, a
webhook, a rule, numbers) and can make each one fail its next ``n`` requests: a 503 where a retry
is allowed after the request was sent, a refused connection for the calls that create something
(they are retried only when the request never left). Every answer carries ``X-Request-Id: req_N``,
N counting the answers from 1. :data:`CALLS` names each method with the endpoints one call of it
reaches.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import httpx2
import respx

from audian_fax_async import CallOptions, FaxClient

from ._fakes import fax_json

PDF = b"%PDF-1.4\n" + b"x" * 3000 + b"\n%%EOF\n"
FAX = fax_json("fax_1", file_size=len(PDF))
PAGE = {"faxes": [FAX], "total": 1, "limit": 100, "offset": 0}
WEBHOOK = {
    "id": "wh_1",
    "url": "https://example.com/fax",
    "events": ["fax_received"],
    "enabled": True,
    "format": "json",
    "created_at": "2024-02-04T13:15:00Z",
}
RULE = {
    "id": "rt_1",
    "type": "email",
    "destination": "faxes@example.com",
    "attach_document": False,
    "enabled": True,
    "created_at": "2024-02-04T13:15:00Z",
}
NUMBERS = {"numbers": [{"number": "+12025550100", "id": "num_1", "area_code": "202"}]}

LIST = "GET /v2/fax/received"
GET = "GET /v2/fax/received/fax_1"
UPDATE = "PUT /v2/fax/received/fax_1"
ARCHIVE = "POST /v2/fax/received/fax_1/archive"
DOCUMENT = "GET /v2/fax/received/fax_1/download"
WEBHOOKS = "POST /v2/fax/webhooks"
ROUTING = "POST /v2/fax/routing"
NUMBERS_PATH = "POST /v2/fax/numbers"


def name_of(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path}"


class Endpoints:
    """The API's endpoints on ``router``; :meth:`fail` makes each fail its next requests."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.router = router
        self._failures: dict[str, int] = {}
        self._routes: dict[str, respx.Route] = {}
        self.answered = 0
        document = {"Content-Length": str(len(PDF)), "Content-Type": "application/pdf"}
        processed = {**FAX, "status": "processed", "processed": True}
        archived = {**FAX, "status": "archived", "processed": True}
        answers: list[tuple[str, str, Callable[[], httpx.Response], bool]] = [
            ("GET", "/fax/received", lambda: httpx.Response(200, json=PAGE), True),
            ("GET", "/fax/received/fax_1", lambda: httpx.Response(200, json=FAX), True),
            ("PUT", "/fax/received/fax_1", lambda: httpx.Response(200, json=processed), True),
            ("POST", "/fax/received/fax_1/archive", lambda: httpx.Response(200, json=archived), True),
            ("GET", "/fax/received/fax_1/download", lambda: httpx.Response(200, content=PDF, headers=document), True),
            ("POST", "/fax/webhooks", lambda: httpx.Response(201, json=WEBHOOK), False),
            ("POST", "/fax/routing", lambda: httpx.Response(201, json=RULE), False),
            ("POST", "/fax/numbers", lambda: httpx.Response(201, json=NUMBERS), False),
        ]
        for method, path, answer, retried_after_sending in answers:
            name = f"{method} /v2{path}"
            self._failures[name] = 0
            route = router.route(method=method, path=path).mock(
                side_effect=self._answer(name, answer, retried_after_sending)
            )
            self._routes[name] = route

    def _answer(
        self, name: str, answer: Callable[[], httpx.Response], retried_after_sending: bool
    ) -> Callable[[httpx.Request], httpx.Response]:
        def respond(_: httpx.Request) -> httpx.Response:
            if self._failures[name] > 0:
                self._failures[name] -= 1
                if not retried_after_sending:
                    raise httpx2.ConnectError("connection refused")
                response = httpx.Response(503, json={"error": {"code": "service_unavailable", "message": "busy"}})
            else:
                response = answer()
            self.answered += 1
            response.headers["X-Request-Id"] = f"req_{self.answered}"
            return response

        return respond

    def fail(self, times: int) -> None:
        """Every endpoint fails its next ``times`` requests (``-1``: all of them)."""
        for name in self._failures:
            self._failures[name] = times if times >= 0 else 10**9

    def route(self, name: str) -> respx.Route:
        return self._routes[name]

    def requests(self) -> list[httpx.Request]:
        """Every request that reached an endpoint, in order."""
        return [call.request for call in self.router.calls]

    def hits(self) -> dict[str, int]:
        """How many requests each endpoint got (those that got none left out)."""
        return {name: route.call_count for name, route in self._routes.items() if route.call_count}

    def reset(self) -> None:
        self.router.calls.clear()
        for route in self._routes.values():
            route.calls.clear()


Call = Callable[[FaxClient, Path, CallOptions], Awaitable[object]]


async def _list(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.received.list(**options)


async def _iter(client: FaxClient, _: Path, options: CallOptions) -> object:
    return [fax async for fax in client.received.iter(**options)]


async def _pages(client: FaxClient, _: Path, options: CallOptions) -> object:
    return [page async for page, _faxes in client.received.pages(**options)]


async def _get(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.received.get("fax_1", **options)


async def _update(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.received.update("fax_1", status="processed", **options)


async def _mark_processed(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.received.mark_processed("fax_1", **options)


async def _archive(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.received.archive("fax_1", **options)


async def _download_to_file(client: FaxClient, tmp_path: Path, options: CallOptions) -> object:
    result = await client.received.download("fax_1", tmp_path / "fax_1.pdf", **options)
    assert result.path.read_bytes() == PDF
    return result


async def _download_to_folder(client: FaxClient, tmp_path: Path, options: CallOptions) -> object:
    result = await client.received.download("fax_1", f"{tmp_path}/faxes/", **options)
    assert result.path.read_bytes() == PDF
    return result


async def _stream(client: FaxClient, _: Path, options: CallOptions) -> object:
    async with client.received.stream("fax_1", **options) as document:
        body = b"".join([chunk async for chunk in document])
    assert body == PDF
    return body


def _download_all(after: Any) -> Call:
    async def run(client: FaxClient, tmp_path: Path, options: CallOptions) -> object:
        async with client.received.download_all(tmp_path / "bulk", after=after, **options) as outcomes:
            done = [outcome async for outcome in outcomes]
        assert [(o.fax.id, o.ok) for o in done] == [("fax_1", True)], [o.error for o in done]
        return done

    return run


async def _webhooks_create(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.webhooks.create(url="https://example.com/fax", events=["fax_received"], **options)


async def _routing_create(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.routing.create(type="email", destination="faxes@example.com", **options)


async def _numbers_request(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.numbers.request(area_code="202", **options)


async def _request(client: FaxClient, _: Path, options: CallOptions) -> object:
    return await client.request("GET", "fax/received/fax_1", **options)


#: Each method that sends a request, and the endpoints one call of it reaches.
CALLS: dict[str, tuple[Call, frozenset[str]]] = {
    "received.list": (_list, frozenset({LIST})),
    "received.iter": (_iter, frozenset({LIST})),
    "received.pages": (_pages, frozenset({LIST})),
    "received.get": (_get, frozenset({GET})),
    "received.update": (_update, frozenset({UPDATE})),
    "received.mark_processed": (_mark_processed, frozenset({UPDATE})),
    "received.archive": (_archive, frozenset({ARCHIVE})),
    "received.download-file": (_download_to_file, frozenset({DOCUMENT})),
    "received.download-folder": (_download_to_folder, frozenset({GET, DOCUMENT})),
    "received.stream": (_stream, frozenset({DOCUMENT})),
    "received.download_all": (_download_all(None), frozenset({LIST, DOCUMENT})),
    "received.download_all-processed": (_download_all("processed"), frozenset({LIST, DOCUMENT, UPDATE})),
    "received.download_all-archived": (_download_all("archived"), frozenset({LIST, DOCUMENT, ARCHIVE})),
    "webhooks.create": (_webhooks_create, frozenset({WEBHOOKS})),
    "routing.create": (_routing_create, frozenset({ROUTING})),
    "numbers.request": (_numbers_request, frozenset({NUMBERS_PATH})),
    "client.request": (_request, frozenset({GET})),
}
