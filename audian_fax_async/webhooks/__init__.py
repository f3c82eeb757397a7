"""Receive the API's webhooks: parse JSON and XML deliveries, see each event once, trust with care.

::

    from audian_fax_async.webhooks import WebhookReceiver
    from audian_fax_async import WebhookEvent, WebhookEventType

    async def on_event(event: WebhookEvent) -> None:
        if event.event == WebhookEventType.FAX_RECEIVED:
            print("fax", event.id, "from", event.from_number)

    receiver = WebhookReceiver(on_event, allow_senders={"+12025551234"})
    app.mount("/webhooks/fax", receiver)     # Starlette / FastAPI (subscribe ".../webhooks/fax/")
    # or: uvicorn module:receiver            # served alone

See ``docs/webhooks.md`` for de-duplication, confirmation by fetch and what each protects against.
"""

from .._exceptions import ValidationError, WebhookError
from .._models import WebhookEvent, WebhookEventType
from ._parse import parse_event, payload_format
from ._receiver import (
    DEFAULT_MAX_BODY_BYTES,
    ConfirmedEvent,
    DeliveryOutcome,
    DeliveryResult,
    ReceiverStatistics,
    WebhookReceiver,
    normalize_number,
)
from ._store import DEFAULT_LEASE, DEFAULT_TTL, Claim, ClaimStatus, IdempotencyStore, MemoryIdempotencyStore

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TTL",
    "Claim",
    "ClaimStatus",
    "ConfirmedEvent",
    "DeliveryOutcome",
    "DeliveryResult",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "ReceiverStatistics",
    "ValidationError",
    "WebhookError",
    "WebhookEvent",
    "WebhookEventType",
    "WebhookReceiver",
    "normalize_number",
    "parse_event",
    "payload_format",
]
