"""The emulator's ASGI application: the Audian API under ``/v2`` and the admin API under ``/_emulator``.

:class:`EmulatorCore` holds everything a server owns (state, faults, documents, webhook sender);
:func:`create_app` wires it into a Starlette application whose lifespan owns the background task
group in which webhook deliveries and arrival streams run.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._config import EmulatorConfig
from ._documents import CHUNK_SIZE, DocumentStore
from ._faults import FaultAction, FaultEngine
from ._responses import CutResponse, DocumentResponse, error_response, install_log_filter, json_response
from ._state import (
    FAX_STATUSES,
    Account,
    EmulatorState,
    Fax,
    RoutingRule,
    Webhook,
    format_datetime,
    new_request_id,
    utc_now,
)
from ._webhooks import Dispatcher

__all__ = ["EmulatorCore", "create_app", "parse_datetime"]

#: Bytes per send of a document held in memory (streamed ones go in ``CHUNK_SIZE`` pieces).
MEMORY_CHUNK_SIZE = 256 * 1024

WEBHOOK_EVENTS = ("fax_received", "fax_processed")
WEBHOOK_FORMATS = ("json", "xml")
ROUTING_TYPES = ("email", "webhook")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INT = re.compile(r"^[+-]?\d+$")
#: The reference shows one area code ("202") and no rule: any ASCII digits, as the SDK checks.
_AREA_CODE = re.compile(r"[0-9]+")

Handler = Callable[[Request, Account, FaultAction | None], Awaitable[Response]]


class BadRequest(Exception):
    """A request the API refuses; becomes the JSON error response."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


def parse_datetime(raw: str, name: str) -> dt.datetime:
    """Parse an ISO 8601 query value (``Z``, offsets, fractional seconds; naive means UTC)."""
    # An unencoded "+" in a query string arrives as a space: "2024-01-28T00:00:00 00:00".
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", raw.strip())
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(400, "invalid_parameter", f"{name} must be an ISO 8601 date-time, got {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _query_value(request: Request, name: str) -> str | None:
    """The value of query parameter ``name``, or None when it is absent; present but empty (``?limit=``)
    or given twice is refused, so a client's bug shows here instead of reading as "not given"."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(400, "invalid_parameter", f"{name} is given {len(values)} times")
    if not values[0].strip():
        raise BadRequest(400, "invalid_parameter", f"{name} is empty")
    return values[0]


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = _query_value(request, name)
    if raw is None:
        return default
    if not _INT.match(raw.strip()):
        raise BadRequest(400, "invalid_parameter", f"{name} must be an integer, got {raw!r}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadRequest(400, "invalid_parameter", f"{name} must be {bounds}, got {value}")
    return value


def _new_number(area: str, subscriber: int) -> str:
    """A number in ``area``: North American (``+1``, seven more digits) for three digits, else the
    area code followed by seven digits."""
    return f"+1{area}{subscriber:07d}" if len(area) == 3 else f"+{area}{subscriber:07d}"


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(422, "validation_error", "the request body must be a JSON object")
    return data


def _bool_field(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(422, "validation_error", f"{name} must be true or false")
    return value


def api_base_url(request: Request) -> str:
    """The absolute base of the API as this client reached it, e.g. ``http://127.0.0.1:8443/v2``."""
    return f"{request.url.scheme}://{request.url.netloc}/v2"


class EmulatorCore:
    """Everything one emulator server owns."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.state = EmulatorState(config)
        self.faults = FaultEngine(seed=config.seed, faults=config.faults)
        self.documents = DocumentStore(seed=config.seed, cache_bytes=config.document_cache_bytes)
        self.dispatcher: Dispatcher | None = None
        self.time_scale = config.time_scale
        # The download each open connection is serving (HTTP/1.1: one response at a time).
        self._downloading: dict[tuple[str, int], DocumentResponse] = {}

    # -- authentication and dispatch ------------------------------------------------------------

    @staticmethod
    def api_key(request: Request) -> str | None:
        """The key from ``X-Auth-Token`` or ``Authorization: Bearer``; ``None`` if neither."""
        token = request.headers.get("x-auth-token", "").strip()
        if token:
            return token
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None

    def api(self, route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with authentication, latency, faults and statistics."""

        async def endpoint(request: Request) -> Response:
            latency = self.faults.faults.latency
            if latency > 0:
                await anyio.sleep(latency)
            key = self.api_key(request)
            if key is None:
                self.state.unauthenticated[401] += 1
                return error_response(
                    401, "unauthorized", "missing API key: send X-Auth-Token or Authorization: Bearer"
                )
            known = self.config.keys
            if known is not None and key not in known:
                self.state.unauthenticated[401] += 1
                return error_response(401, "unauthorized", "invalid API key")
            account = self.state.account(key)
            action = self.faults.decide(key, route)
            response: Response
            if action is not None and action.kind == "delay":
                await anyio.sleep(action.seconds)
                action = None
            if action is not None and action.kind == "status":
                response = _fault_status(action)
            else:
                try:
                    response = await handler(request, account, action)
                except BadRequest as exc:
                    response = error_response(exc.status_code, exc.code, exc.message)
                if action is not None and route != "download" and isinstance(response.body, bytes):
                    keep = len(response.body) // 2 if action.kind == "truncate" else len(response.body) // 3
                    response = CutResponse(response, keep)
            account.requests[route][response.status_code] += 1
            return response

        return endpoint

    # -- API handlers ---------------------------------------------------------------------------

    async def list_faxes(self, request: Request, account: Account, _action: FaultAction | None) -> Response:
        """``GET /v2/fax/received``."""
        limit = _int_param(request, "limit", 20, 1, 100)
        offset = _int_param(request, "offset", 0, 0, None)
        status = _query_value(request, "status")
        if status is not None and status not in FAX_STATUSES:
            raise BadRequest(400, "invalid_parameter", f"status must be one of {', '.join(FAX_STATUSES)}")
        raw_from, raw_to = _query_value(request, "from_date"), _query_value(request, "to_date")
        from_date = parse_datetime(raw_from, "from_date") if raw_from is not None else None
        to_date = parse_datetime(raw_to, "to_date") if raw_to is not None else None
        raw_number = _query_value(request, "from_number")
        from_number = _digits(raw_number or "")
        if raw_number is not None and not from_number:
            raise BadRequest(400, "invalid_parameter", "from_number must be a phone number")

        faxes = account.faxes  # ascending
        lo = bisect.bisect_left(faxes, from_date, key=lambda f: f.received_at) if from_date else 0
        hi = bisect.bisect_right(faxes, to_date, key=lambda f: f.received_at) if to_date else len(faxes)
        if status is None and not from_number:
            total = max(0, hi - lo)
            stop = hi - offset
            window = faxes[max(lo, stop - limit) : stop] if stop > lo else []
            page = window[::-1]
        else:
            matches = [
                f
                for f in reversed(faxes[lo:hi])
                if (status is None or f.status == status) and (not from_number or _digits(f.from_number) == from_number)
            ]
            total = len(matches)
            page = matches[offset : offset + limit]
        base = api_base_url(request)
        return json_response(
            {"faxes": [f.list_json(base) for f in page], "total": total, "limit": limit, "offset": offset}
        )

    @staticmethod
    def _fax(account: Account, request: Request) -> Fax:
        fax_id = request.path_params["fax_id"]
        fax = account.by_id.get(fax_id)
        if fax is None:
            raise BadRequest(404, "fax_not_found", f"no received fax with id {fax_id!r}")
        return fax

    async def get_fax(self, request: Request, account: Account, _action: FaultAction | None) -> Response:
        """``GET /v2/fax/received/{faxId}``."""
        return json_response(self._fax(account, request).detail_json(api_base_url(request)))

    async def update_fax(self, request: Request, account: Account, _action: FaultAction | None) -> Response:
        """``PUT /v2/fax/received/{faxId}``: change the status; to ``processed`` fires ``fax_processed``."""
        fax = self._fax(account, request)
        data = await _json_body(request)
        status = data.get("status")
        if status not in FAX_STATUSES:
            raise BadRequest(422, "validation_error", f"status must be one of {', '.join(FAX_STATUSES)}")
        unknown = set(data) - {"status"}
        if unknown:
            raise BadRequest(422, "validation_error", f"unknown field(s): {', '.join(sorted(unknown))}")
        previous, fax.status = fax.status, status
        base = api_base_url(request)
        if status == "processed" and previous != "processed":
            self.notify(account, "fax_processed", fax, base)
        return json_response(fax.detail_json(base))

    async def archive_fax(self, request: Request, account: Account, _action: FaultAction | None) -> Response:
        """``POST /v2/fax/received/{faxId}/archive``."""
        fax = self._fax(account, request)
        fax.status = "archived"
        return json_response(fax.detail_json(api_base_url(request)))

    async def download(self, request: Request, account: Account, action: FaultAction | None) -> Response:
        """``GET /v2/fax/received/{faxId}/download``: the PDF, with ranges, the account limit and faults."""
        fax = self._fax(account, request)
        layout = fax.layout
        size = layout.size
        start, end, partial = 0, size, False
        range_header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if range_header and (if_range is None or if_range.strip() == layout.etag):
            parsed = _parse_range(range_header, size)
            if parsed == "unsatisfiable":
                response = error_response(
                    416, "range_not_satisfiable", f"the range {range_header!r} is outside the document ({size} bytes)"
                )
                response.headers["Content-Range"] = f"bytes */{size}"
                return response
            if isinstance(parsed, tuple):
                start, end = parsed
                partial = True
        connection = (request.client.host, request.client.port) if request.client else None
        earlier = self._downloading.pop(connection, None) if connection else None
        if earlier is not None:
            # A new request on a connection means its last response was complete, even if that
            # response's task has not run again since its last frame went out: its slot is free (a
            # keep-alive client at the limit otherwise saw a 429 now and then).
            earlier.release()
        limit = self.config.max_concurrent_downloads
        if account.downloads_current >= limit:
            account.downloads_refused += 1
            return error_response(
                429,
                "too_many_concurrent_downloads",
                f"at most {limit} concurrent downloads per account",
                retry_after=self.config.retry_after,
            )
        faults = self.faults.faults
        length = end - start
        cut_at: int | None = None
        if action is not None and action.kind == "truncate":
            cut_at = length // 2
        elif action is not None and action.kind == "drop":
            cut_at = self.faults.cut_point(account.key, fax.id, length)
        chunk_size = CHUNK_SIZE if faults.bandwidth is None else max(1024, min(CHUNK_SIZE, faults.bandwidth // 20))
        data = self.documents.materialize(f"{self.config.seed}|{account.key}|{fax.id}", layout)
        # A document held in memory goes out in bigger pieces: each piece is one pass of the server's
        # event loop, and ten downloads at once queue behind each other's passes.
        send_size = MEMORY_CHUNK_SIZE if faults.bandwidth is None else chunk_size
        chunks = (
            (data[i : min(i + send_size, end)] for i in range(start, end, send_size))
            if data is not None
            else self.documents.iter_range(layout, start, end, chunk_size)
        )
        headers = {
            "Content-Type": "application/pdf",
            "Content-Length": str(length),
            "ETag": layout.etag,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'attachment; filename="{fax.id}.pdf"',
        }
        if partial:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"

        # Admitted: the slot is held until the body is sent, cut, or the client goes away.
        account.downloads_current += 1
        account.downloads_highest = max(account.downloads_highest, account.downloads_current)

        def on_chunk(n: int) -> None:
            account.bytes_served += n

        def on_done() -> None:
            account.downloads_current -= 1
            if connection is not None and self._downloading.get(connection) is document:
                del self._downloading[connection]

        document = DocumentResponse(
            status_code=206 if partial else 200,
            headers=headers,
            chunks=chunks,
            length=length,
            cut_at=cut_at,
            bandwidth=faults.bandwidth,
            slow_first_byte=faults.slow_first_byte,
            on_chunk=on_chunk,
            on_done=on_done,
        )
        if connection is not None:
            self._downloading[connection] = document
        return document

    async def create_webhook(self, request: Request, account: Account, _action: FaultAction | None) -> Response:
        """``POST /v2/fax/webhooks``."""
        data = await _json_body(request)
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequest(422, "validation_error", "url is required")
        parsed = httpx2.URL(url) if url.startswith(("http://", "https://")) else None
        if parsed is None or not parsed.host:
            raise BadRequest(422, "validation_error", "url must be an absolute http or https URL")
        events = data.get("events")
        if not isinstance(events, list) or not events or any(e not in WEBHOOK_EVENTS for e in events):
            raise BadRequest(422, "validation_error", f"events must be a non-empty list of {', '.join(WEBHOOK_EVENTS)}")
        fmt = data.get("format", "json")
        if fmt not in WEBHOOK_FORMATS:
            raise BadRequest(422, "validation_error", "format must be json or xml")
        webhook = Webhook(
            id=account.next_id("wh"),
            url=url,
            events=list(dict.fromkeys(events)),
            enabled=_bool_field(data, "enabled", True),
            format=fmt,
            created_at=utc_now(),
        )
        account.webhooks.append(webhook)
        return json_response(webhook.to_json(), status_code=201)

    async def create_routing(self, request: Request, account: Account, _action: FaultAction | None) -> Response:
        """``POST /v2/fax/routing``."""
        data = await _json_body(request)
        kind = data.get("type")
        if kind not in ROUTING_TYPES:
            raise BadRequest(422, "validation_error", "type must be email or webhook")
        destination = data.get("destination")
        if not isinstance(destination, str) or not destination:
            raise BadRequest(422, "validation_error", "destination is required")
        if kind == "email" and not _EMAIL.match(destination):
            raise BadRequest(422, "validation_error", "destination must be an email address")
        if kind == "webhook" and not destination.startswith(("http://", "https://")):
            raise BadRequest(422, "validation_error", "destination must be an http or https URL")
        rule = RoutingRule(
            id=account.next_id("rt"),
            type=kind,
            destination=destination,
            attach_document=_bool_field(data, "attach_document", False),
            enabled=_bool_field(data, "enabled", True),
            created_at=utc_now(),
        )
        account.routing.append(rule)
        return json_response(rule.to_json(), status_code=201)

    async def create_numbers(self, request: Request, account: Account, _action: FaultAction | None) -> Response:
        """``POST /v2/fax/numbers``: at most ``max_numbers`` per account, refused whole beyond."""
        data = await _json_body(request)
        area = data.get("area_code")
        if not isinstance(area, str) or not _AREA_CODE.fullmatch(area):
            raise BadRequest(422, "validation_error", "area_code must be a string of digits")
        quantity = data.get("quantity", 1)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise BadRequest(422, "validation_error", "quantity must be a positive integer")
        limit = self.config.max_numbers
        held = len(account.numbers)
        if held + quantity > limit:
            raise BadRequest(
                409,
                "number_limit_exceeded",
                f"an account may hold at most {limit} fax numbers; it holds {held}, {quantity} more requested",
            )
        taken = {n["number"] for n in account.numbers}
        created: list[dict[str, Any]] = []
        now = utc_now()
        while len(created) < quantity:
            number = _new_number(area, account.rng.randrange(2_000_000, 10_000_000))
            if number in taken:
                continue
            taken.add(number)
            created.append(
                {"id": account.next_id("num"), "number": number, "area_code": area, "created_at": format_datetime(now)}
            )
        account.numbers.extend(created)
        return json_response({"numbers": created}, status_code=201)

    # -- events ---------------------------------------------------------------------------------

    def notify(self, account: Account, event: str, fax: Fax, base_url: str) -> None:
        """Deliver ``event`` to every enabled subscriber (webhooks, and webhook routing rules for arrivals)."""
        dispatcher = self.dispatcher
        if dispatcher is None:  # pragma: no cover - only outside a running server
            return
        for hook in account.webhooks:
            if hook.enabled and event in hook.events:
                dispatcher.deliver(
                    account,
                    event=event,
                    fax=fax,
                    url=hook.url,
                    fmt=hook.format,
                    source="webhook",
                    subscription_id=hook.id,
                    base_url=base_url,
                )
        if event != "fax_received":
            return
        for rule in account.routing:
            if not rule.enabled:
                continue
            if rule.type == "webhook":
                dispatcher.deliver(
                    account,
                    event=event,
                    fax=fax,
                    url=rule.destination,
                    fmt="json",
                    source="routing",
                    subscription_id=rule.id,
                    base_url=base_url,
                )
            else:
                message: dict[str, Any] = {
                    "rule_id": rule.id,
                    "to": rule.destination,
                    "subject": f"Fax received from {fax.from_number} ({fax.pages} pages)",
                    "fax_id": fax.id,
                    "sent_at": format_datetime(utc_now()),
                    "attachment": None,
                }
                if rule.attach_document:
                    message["attachment"] = {
                        "filename": f"{fax.id}.pdf",
                        "size": fax.layout.size,
                        "content_type": "application/pdf",
                    }
                account.outbox.append(message)

    def arrive(self, account: Account, fax: Fax, base_url: str) -> None:
        """A fax arrives: stored, then announced."""
        account.add_fax(fax)
        self.notify(account, "fax_received", fax, base_url)

    def reset(self, key: str | None = None) -> None:
        """Forget one account or everything (faults and scripts too, then)."""
        self.state.drop(key)
        if key is None:
            self.faults.faults = self.config.faults
            self.faults.clear_scripts(everything=True)
            self.faults.forget_all()
            self.documents.clear()
        else:
            self.faults.clear_scripts(key)
            self.faults.forget_account(key)


def _fault_status(action: FaultAction) -> Response:
    messages = {
        429: ("rate_limited", "too many requests; retry later"),
        500: ("internal_error", "internal server error"),
        502: ("bad_gateway", "bad gateway"),
        503: ("service_unavailable", "the service is temporarily unavailable"),
        504: ("gateway_timeout", "gateway timeout"),
    }
    code, message = messages.get(action.status, ("error", f"emulated failure {action.status}"))
    return error_response(action.status, code, message, retry_after=action.retry_after)


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``(start, end_exclusive)``, ``"unsatisfiable"``, or ``None`` to ignore the header (RFC 9110)."""
    match = _RANGE.match(header)
    if match is None:
        return None  # malformed or several ranges: answer with the whole document
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size)


class RequestIdMiddleware:
    """Adds a unique ``X-Request-Id`` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id().encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the application serves at the request's path (RFC 9110's ``Allow``)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and isinstance(route, Route) and route.methods:
            methods |= route.methods
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    response = error_response(exc.status_code, code, message)
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal_error", f"emulator bug: {type(exc).__name__}: {exc}")


def create_app(config: EmulatorConfig | None = None, *, core: EmulatorCore | None = None) -> Starlette:
    """The emulator as an ASGI application (``app.state.core`` is its :class:`EmulatorCore`)."""
    from ._admin import admin_routes

    core = core or EmulatorCore(config or EmulatorConfig())
    install_log_filter()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        timeout = httpx2.Timeout(core.config.webhook_timeout)
        async with httpx2.AsyncClient(timeout=timeout) as client, anyio.create_task_group() as tg:
            core.dispatcher = Dispatcher(tg, client, time_scale=core.time_scale)
            try:
                yield
            finally:
                core.dispatcher = None
                tg.cancel_scope.cancel()

    fax = "/v2/fax/received/{fax_id}"
    routes = [
        Route("/v2/fax/received", core.api("list", core.list_faxes), methods=["GET"]),
        Route(fax, core.api("get", core.get_fax), methods=["GET"]),
        Route(fax, core.api("update", core.update_fax), methods=["PUT"]),
        Route(fax + "/archive", core.api("archive", core.archive_fax), methods=["POST"]),
        Route(fax + "/download", core.api("download", core.download), methods=["GET"]),
        Route("/v2/fax/webhooks", core.api("webhooks", core.create_webhook), methods=["POST"]),
        Route("/v2/fax/routing", core.api("routing", core.create_routing), methods=["POST"]),
        Route("/v2/fax/numbers", core.api("numbers", core.create_numbers), methods=["POST"]),
        *admin_routes(core),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.core = core
    app.add_middleware(RequestIdMiddleware)
    return app
