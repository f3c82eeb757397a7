"""Webhook deliveries: payloads (JSON or XML) and the retrying sender.

A delivery is attempted at most :data:`MAX_ATTEMPTS` times; the waits between attempts spread over
the reference's 24 hours (:data:`RETRY_DELAYS`) multiplied by the configured time scale. Every
attempt is recorded on the account before it is sent, and its outcome after.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from xml.sax.saxutils import escape

import anyio
import anyio.abc
import httpx2

from ._state import Account, Delivery, Fax, format_datetime, utc_now

__all__ = ["MAX_ATTEMPTS", "RETRY_DELAYS", "Dispatcher", "event_payload", "render_payload"]

MAX_ATTEMPTS = 5
RETRY_DELAYS = (300.0, 1800.0, 7200.0, 77100.0)
"""Seconds to wait after attempts 1..4 before the next one: 5 min, 30 min, 2 h, the rest of 24 h."""


def event_payload(event: str, fax: Fax, base_url: str) -> dict[str, Any]:
    """The reference's webhook payload; ``fax_processed`` adds ``status``."""
    payload: dict[str, Any] = {
        "event": event,
        "id": fax.id,
        "from_number": fax.from_number,
        "from_name": fax.from_name,
        "to_number": fax.to_number,
        "pages": fax.pages,
        "received_at": format_datetime(fax.received_at),
        "file_size": fax.layout.size,
        "format": "pdf",
        "document_url": f"{base_url}/fax/received/{fax.id}/download",
    }
    if event == "fax_processed":
        payload["status"] = fax.status
    return payload


def _xml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def render_payload(payload: dict[str, Any], fmt: str) -> tuple[bytes, str]:
    """The body and content type of a payload in ``json`` or ``xml``."""
    if fmt == "xml":
        children = "".join(f"<{k}>{_xml_value(v)}</{k}>" for k, v in payload.items())
        body = f'<?xml version="1.0" encoding="UTF-8"?><event>{children}</event>'
        return body.encode("utf-8"), "application/xml"
    return json.dumps(payload, separators=(",", ":")).encode("utf-8"), "application/json"


class Dispatcher:
    """Sends deliveries in the background, in a task group owned by the server's lifespan."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        client: httpx2.AsyncClient,
        *,
        time_scale: float,
        clock: Callable[[], Any] = utc_now,
    ) -> None:
        self._tg = task_group
        self._client = client
        self.time_scale = time_scale
        self._clock = clock

    def deliver(
        self,
        account: Account,
        *,
        event: str,
        fax: Fax,
        url: str,
        fmt: str,
        source: str,
        subscription_id: str,
        base_url: str,
    ) -> str:
        """Start delivering one event to one URL; returns the event id."""
        event_id = "evt_" + secrets.token_hex(10)
        body, content_type = render_payload(event_payload(event, fax, base_url), fmt)
        self.spawn(
            account,
            lambda: self._attempts(
                account, event, event_id, fax.id, url, fmt, source, subscription_id, body, content_type
            ),
        )
        return event_id

    def spawn(self, account: Account, work: Callable[[], Awaitable[None]]) -> anyio.CancelScope:
        """Run ``work`` in the background, cancelled when the account is reset; returns its scope."""
        scope = anyio.CancelScope()
        account.scopes.add(scope)

        async def run() -> None:
            try:
                with scope:
                    await work()
            finally:
                account.scopes.discard(scope)

        self._tg.start_soon(run)
        return scope

    async def _attempts(
        self,
        account: Account,
        event: str,
        event_id: str,
        fax_id: str,
        url: str,
        fmt: str,
        source: str,
        subscription_id: str,
        body: bytes,
        content_type: str,
    ) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            delivery = Delivery(
                event_id=event_id,
                delivery_id="dlv_" + secrets.token_hex(10),
                event=event,
                fax_id=fax_id,
                url=url,
                format=fmt,
                attempt=attempt,
                source=source,
                subscription_id=subscription_id,
                started_at=self._clock(),
            )
            account.deliveries.append(delivery)
            headers = {
                "Content-Type": content_type,
                "User-Agent": "audian-emulator-webhooks/1",
                "X-Audian-Event": event,
                "X-Audian-Event-Id": event_id,
                "X-Audian-Delivery-Id": delivery.delivery_id,
                "X-Audian-Attempt": str(attempt),
            }
            try:
                response = await self._client.post(url, content=body, headers=headers)
            except httpx2.HTTPError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
            else:
                delivery.status_code = response.status_code
                if response.is_success:
                    delivery.outcome = "delivered"
                    return
            delivery.outcome = "failed"
            if attempt < MAX_ATTEMPTS:
                await anyio.sleep(RETRY_DELAYS[attempt - 1] * self.time_scale)
