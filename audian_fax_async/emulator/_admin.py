"""The admin API under ``/_emulator``: statistics, fault control, scripts, injection and inspection.

Not part of Audian. Accounts are addressed by their API key as a path segment. If the server was
configured with ``admin_key``, every admin request must carry it in ``X-Admin-Key``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._app import BadRequest, EmulatorCore, api_base_url, parse_datetime
from ._config import FaultConfig
from ._faults import parse_action
from ._responses import error_response, json_response
from ._state import FAX_STATUSES, Account, Fax, utc_now

__all__ = ["admin_routes"]

_FAX_FIELDS = {
    "id": str,
    "from_number": str,
    "from_name": str,
    "to_number": str,
    "pages": int,
    "status": str,
    "duration": int,
    "baud_rate": int,
    "size": int,
}
_MAX_INJECT = 100_000


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadRequest(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(422, "validation_error", "the request body must be a JSON object")
    return data


def _fax_overrides(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadRequest(422, "validation_error", "each fax must be a JSON object")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "received_at":
            if not isinstance(value, str):
                raise BadRequest(422, "validation_error", "received_at must be an ISO 8601 string")
            out["received_at"] = parse_datetime(value, "received_at").replace(microsecond=0)
            continue
        kind = _FAX_FIELDS.get(name)
        if kind is None:
            raise BadRequest(422, "validation_error", f"unknown fax field {name!r}")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BadRequest(422, "validation_error", f"{name} must be a {kind.__name__}")
        out[name] = value
    if "status" in out and out["status"] not in FAX_STATUSES:
        raise BadRequest(422, "validation_error", f"status must be one of {', '.join(FAX_STATUSES)}")
    if "pages" in out and out["pages"] < 1:
        raise BadRequest(422, "validation_error", "pages must be at least 1")
    return out


def admin_routes(core: EmulatorCore) -> list[BaseRoute]:
    """The admin API's routes for ``core``."""

    def admin(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            wanted = core.config.admin_key
            if wanted is not None and request.headers.get("x-admin-key") != wanted:
                return error_response(401, "unauthorized", "the admin API needs X-Admin-Key")
            try:
                return await handler(request)
            except BadRequest as exc:
                return error_response(exc.status_code, exc.code, exc.message)
            except ValueError as exc:
                return error_response(422, "validation_error", str(exc))

        return endpoint

    def account(request: Request) -> Account:
        return core.state.account(request.path_params["key"])

    async def health(_request: Request) -> Response:
        return json_response({"ok": True})

    async def stats_all(_request: Request) -> Response:
        return json_response(
            {
                "accounts": {key: a.stats_json() for key, a in core.state.accounts.items()},
                "unauthenticated": {str(k): v for k, v in core.state.unauthenticated.items()},
                "documents": {
                    "cached": core.documents.cache_entries,
                    "cached_bytes": core.documents.cached_bytes,
                },
                "faults": core.faults.faults.to_json(),
                "scripts": core.faults.pending(),
            }
        )

    async def stats(request: Request) -> Response:
        return json_response(account(request).stats_json())

    async def get_faults(_request: Request) -> Response:
        return json_response(core.faults.faults.to_json())

    async def put_faults(request: Request) -> Response:
        data = await _body(request)
        replace = bool(data.pop("replace", False))
        base = FaultConfig() if replace else core.faults.faults
        core.faults.faults = FaultConfig.from_json(data, base=base)
        return json_response(core.faults.faults.to_json())

    async def get_scripts(_request: Request) -> Response:
        return json_response({"scripts": core.faults.pending()})

    async def post_script(request: Request) -> Response:
        data = await _body(request)
        route = data.get("route")
        responses = data.get("responses")
        key = data.get("key")
        if not isinstance(route, str) or not isinstance(responses, list) or not responses:
            raise BadRequest(422, "validation_error", "route (a name) and responses (a non-empty list) are required")
        if key is not None and not isinstance(key, str):
            raise BadRequest(422, "validation_error", "key must be a string")
        core.faults.script(route, [parse_action(r) for r in responses], key)
        return json_response({"scripts": core.faults.pending()}, status_code=201)

    async def delete_scripts(_request: Request) -> Response:
        core.faults.clear_scripts(everything=True)
        return json_response({"scripts": []})

    async def reset_all(_request: Request) -> Response:
        core.reset()
        return json_response({"reset": "all"})

    async def reset_account(request: Request) -> Response:
        core.reset(request.path_params["key"])
        return json_response({"reset": request.path_params["key"]})

    def make_faxes(acct: Account, data: dict[str, Any]) -> list[Fax]:
        factory = core.state.factory(acct)
        explicit = data.get("faxes")
        count = data.get("count")
        made: list[Fax] = []
        if explicit is not None:
            if not isinstance(explicit, list):
                raise BadRequest(422, "validation_error", "faxes must be a list of objects")
            for raw in explicit:
                fields = _fax_overrides(raw)
                received_at = fields.pop("received_at", None) or utc_now()
                made.append(factory.make(received_at, **fields))
        if count is not None:
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= _MAX_INJECT:
                raise BadRequest(422, "validation_error", f"count must be an integer from 0 to {_MAX_INJECT}")
            common = _fax_overrides(data.get("fields", {}))
            received_at = common.pop("received_at", None)
            common.pop("id", None)
            made.extend(factory.make(received_at or utc_now(), **common) for _ in range(count))
        if explicit is None and count is None:
            made.append(factory.make(utc_now()))
        for fax in made:
            if fax.id in acct.by_id:
                raise BadRequest(409, "conflict", f"fax {fax.id} already exists")
            fax.layout  # noqa: B018 - a bad explicit size fails here, before anything is stored
        return made

    async def inject(request: Request) -> Response:
        acct = account(request)
        data = await _body(request)
        made = make_faxes(acct, data)
        base = api_base_url(request)
        for fax in made:
            if data.get("arrive", False):
                core.arrive(acct, fax, base)
            else:
                acct.add_fax(fax)
        return json_response({"faxes": [f.detail_json(base) for f in made]}, status_code=201)

    async def arrivals(request: Request) -> Response:
        acct = account(request)
        data = await _body(request)
        made = make_faxes(acct, data)
        base = api_base_url(request)
        for fax in made:
            core.arrive(acct, fax, base)
        return json_response({"faxes": [f.detail_json(base) for f in made]}, status_code=201)

    async def start_stream(request: Request) -> Response:
        acct = account(request)
        data = await _body(request)
        rate = data.get("rate")
        count = data.get("count")
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
            raise BadRequest(422, "validation_error", "rate (arrivals per second) must be a positive number")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise BadRequest(422, "validation_error", "count must be a positive integer")
        if core.dispatcher is None:  # pragma: no cover - only outside a running server
            raise BadRequest(503, "not_running", "the server is not running")
        if acct.arrival_stream is not None:
            acct.arrival_stream.cancel()
        base = api_base_url(request)
        interval = 1.0 / float(rate)

        async def stream() -> None:
            made = 0
            try:
                while count is None or made < count:
                    await anyio.sleep(interval)
                    core.arrive(acct, core.state.factory(acct).make(utc_now()), base)
                    made += 1
            finally:
                if acct.arrival_stream is scope:
                    acct.arrival_stream = None

        scope = core.dispatcher.spawn(acct, stream)
        acct.arrival_stream = scope
        return json_response({"streaming": True, "rate": rate, "count": count}, status_code=201)

    async def stop_stream(request: Request) -> Response:
        acct = account(request)
        running = acct.arrival_stream is not None
        if acct.arrival_stream is not None:
            acct.arrival_stream.cancel()
            acct.arrival_stream = None
        return json_response({"streaming": False, "was_streaming": running})

    async def outbox(request: Request) -> Response:
        return json_response({"messages": account(request).outbox})

    async def deliveries(request: Request) -> Response:
        return json_response({"deliveries": [d.to_json() for d in account(request).deliveries]})

    async def subscriptions(request: Request) -> Response:
        acct = account(request)
        return json_response(
            {
                "webhooks": [w.to_json() for w in acct.webhooks],
                "routing": [r.to_json() for r in acct.routing],
                "numbers": acct.numbers,
            }
        )

    async def document(request: Request) -> Response:
        acct = account(request)
        fax_id = request.path_params["fax_id"]
        fax = acct.by_id.get(fax_id)
        if fax is None:
            raise BadRequest(404, "fax_not_found", f"no received fax with id {fax_id!r}")
        layout = fax.layout
        key = f"{core.config.seed}|{acct.key}|{fax.id}"
        if layout.size > core.documents.materialize_limit:
            # Hashing a huge streamed document takes a while: off the event loop, away from the cache.
            digest = await anyio.to_thread.run_sync(core.documents.sha256_streamed, layout)
        else:
            digest = core.documents.sha256(key, layout)
        return json_response({"fax_id": fax.id, "sha256": digest, "file_size": layout.size, "etag": layout.etag})

    base = "/_emulator"
    acct_base = base + "/accounts/{key}"
    table: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        (base + "/health", health, "GET"),
        (base + "/stats", stats_all, "GET"),
        (base + "/faults", get_faults, "GET"),
        (base + "/faults", put_faults, "PUT"),
        (base + "/scripts", get_scripts, "GET"),
        (base + "/scripts", post_script, "POST"),
        (base + "/scripts", delete_scripts, "DELETE"),
        (base + "/reset", reset_all, "POST"),
        (acct_base + "/stats", stats, "GET"),
        (acct_base + "/reset", reset_account, "POST"),
        (acct_base + "/faxes", inject, "POST"),
        (acct_base + "/arrivals", arrivals, "POST"),
        (acct_base + "/arrivals/stream", start_stream, "POST"),
        (acct_base + "/arrivals/stream", stop_stream, "DELETE"),
        (acct_base + "/outbox", outbox, "GET"),
        (acct_base + "/deliveries", deliveries, "GET"),
        (acct_base + "/subscriptions", subscriptions, "GET"),
        (acct_base + "/faxes/{fax_id}/document", document, "GET"),
    ]
    return [Route(path, admin(handler), methods=[method]) for path, handler, method in table]
