"""The public face of ``audian_fax_async.webhooks``: exactly the curated names, all documented."""

from __future__ import annotations

import inspect

import anyio

import audian_fax_async.webhooks as webhooks
from audian_fax_async.webhooks import DeliveryOutcome, WebhookReceiver

from .fakes import Recorder
from .payloads import delivery_headers, json_body

PUBLIC = {
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
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(webhooks.__all__) == PUBLIC
    assert len(webhooks.__all__) == len(PUBLIC)  # no repeats; ruff (RUF022) keeps the order sorted
    exported = {name for name in dir(webhooks) if name.isidentifier() and not name.startswith("_")}
    assert exported == PUBLIC


def test_every_public_class_and_function_has_a_docstring() -> None:
    for name in webhooks.__all__:
        obj = getattr(webhooks, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name


def test_receiver_works_on_trio() -> None:
    handler = Recorder()
    receiver = WebhookReceiver(handler, background=True)

    async def main() -> list[DeliveryOutcome]:
        async with receiver:
            first = await receiver.handle(json_body(), delivery_headers())
        async with receiver:
            second = await receiver.handle(json_body(), delivery_headers())
        return [first.outcome, second.outcome]

    assert anyio.run(main, backend="trio") == [DeliveryOutcome.ACCEPTED, DeliveryOutcome.DUPLICATE]
    assert len(handler.calls) == 1
