"""``client.webhooks``: subscribe a URL to incoming-fax events."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Unpack

import httpx2

from .._exceptions import InvalidRequestError
from .._models import EventName, FormatName, Webhook, WebhookEventType, WebhookFormat
from .._options import CallOptions
from .._response import to_raw_response
from ._base import Resource, enum_value, enum_values, merged_with

__all__ = ["Webhooks", "WebhooksWithRawResponse"]


class Webhooks(Resource):
    """Webhook subscriptions (``POST /fax/webhooks``)."""

    @functools.cached_property
    def with_raw_response(self) -> WebhooksWithRawResponse:
        """The same calls, returning an :class:`~audian_fax_async.APIResponse` instead of the model."""
        return WebhooksWithRawResponse(self)

    async def create(
        self,
        *,
        url: str,
        events: Iterable[WebhookEventType | EventName],
        enabled: bool = True,
        format: WebhookFormat | FormatName = WebhookFormat.JSON,
        **options: Unpack[CallOptions],
    ) -> Webhook:
        """Subscribe ``url`` to ``events`` (``fax_received``, ``fax_processed``).

        Not retried once the request may have reached the API (a retry could subscribe twice)::

            hook = await client.webhooks.create(url="https://example.com/fax", events=["fax_received"])
        """
        try:
            parsed = httpx2.URL(url)
        except (httpx2.InvalidURL, TypeError):
            raise InvalidRequestError(f"url is not a valid URL: {url!r}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise InvalidRequestError(f"url must be an absolute http(s) URL, got {url!r}")
        body = {
            "url": url,
            "events": enum_values(events, WebhookEventType, "events"),
            "enabled": bool(enabled),
            "format": enum_value(format, WebhookFormat, "format"),
        }
        return await self._client.request_model(
            "POST",
            "fax/webhooks",
            Webhook,
            json=body,
            idempotent=False,
            fallback=merged_with(Webhook, body),
            **options,
        )


class WebhooksWithRawResponse:
    """``client.webhooks.with_raw_response``: the same calls, answering an APIResponse."""

    def __init__(self, resource: Webhooks) -> None:
        self.create = to_raw_response(resource.create)
