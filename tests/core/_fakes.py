"""An in-memory inbox that answers ``GET /fax/received`` and ``PUT /fax/received/{id}`` like the API.

It is mounted on a respx router, so it sees and answers with respx's models (httpx's classes).

List semantics (from the reference): newest first by ``received_at`` (ties broken by ``id``,
descending), inclusive ``from_date``/``to_date``, ``status`` and ``from_number`` filters,
``limit``/``offset`` paging, and ``total`` counting every match.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import respx

T0 = datetime(2024, 2, 4, 13, 15, tzinfo=UTC)


def iso_z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fax_json(
    fax_id: str, received_at: datetime | str = T0, *, status: str | None = "received", **extra: Any
) -> dict[str, Any]:
    """A fax as the list endpoint returns it."""
    record: dict[str, Any] = {
        "id": fax_id,
        "from_number": "+12025551234",
        "from_name": "John Smith",
        "to_number": "+15551234567",
        "pages": 5,
        "received_at": received_at if isinstance(received_at, str) else iso_z(received_at),
        "status": status,
        "format": "pdf",
        "file_size": 450000,
        "document_url": f"https://api.audian.com:8443/v2/fax/received/{fax_id}/download",
        "processed": status != "received",
    }
    record.update(extra)
    return record


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class FakeInbox:
    """The faxes of one account, and the list/update endpoints over them."""

    def __init__(self) -> None:
        self.faxes: dict[str, dict[str, Any]] = {}
        self.list_requests: list[httpx.QueryParams] = []
        #: Called after each list page is computed (before it is returned): the place to change the inbox.
        self.after_list: Callable[[FakeInbox], None] | None = None

    def add(self, fax_id: str, received_at: datetime, *, status: str = "received") -> None:
        self.faxes[fax_id] = fax_json(fax_id, received_at, status=status)

    def add_many(
        self, count: int, *, start: datetime = T0, step: timedelta = timedelta(minutes=1), prefix: str = "fax"
    ) -> list[str]:
        """``count`` faxes, the first the oldest; returns their ids."""
        ids = []
        for i in range(count):
            fax_id = f"{prefix}_{len(self.faxes):04d}"
            self.add(fax_id, start + i * step)
            ids.append(fax_id)
        return ids

    def newest(self) -> datetime:
        return max(_parse(f["received_at"]) for f in self.faxes.values())

    def set_status(self, fax_id: str, status: str) -> None:
        self.faxes[fax_id]["status"] = status
        self.faxes[fax_id]["processed"] = status != "received"

    def matching(self, params: httpx.QueryParams) -> list[dict[str, Any]]:
        found = list(self.faxes.values())
        if "status" in params:
            found = [f for f in found if f["status"] == params["status"]]
        if "from_number" in params:
            found = [f for f in found if f["from_number"] == params["from_number"]]
        if "from_date" in params:
            lower = _parse(params["from_date"])
            found = [f for f in found if _parse(f["received_at"]) >= lower]
        if "to_date" in params:
            upper = _parse(params["to_date"])
            found = [f for f in found if _parse(f["received_at"]) <= upper]
        return sorted(found, key=lambda f: (_parse(f["received_at"]), f["id"]), reverse=True)

    def handle_list(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        self.list_requests.append(params)
        limit = int(params.get("limit", "20"))
        offset = int(params.get("offset", "0"))
        matches = self.matching(params)
        body = {
            "faxes": [dict(f) for f in matches[offset : offset + limit]],
            "total": len(matches),
            "limit": limit,
            "offset": offset,
        }
        if self.after_list is not None:
            self.after_list(self)
        return httpx.Response(200, json=body)

    def handle_update(self, request: httpx.Request) -> httpx.Response:
        fax_id = unquote(request.url.path.rsplit("/", 1)[1])
        if fax_id not in self.faxes:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such fax"}})
        self.set_status(fax_id, json.loads(request.content)["status"])
        return httpx.Response(200, json=self.faxes[fax_id])

    def mount(self, router: respx.MockRouter) -> None:
        router.get("/fax/received").mock(side_effect=self.handle_list)
        router.put(path__regex=r"/fax/received/[^/]+$").mock(side_effect=self.handle_update)
