"""``client.routing``: where incoming faxes are routed (email or webhook)."""

from __future__ import annotations

import functools
from typing import Unpack

from .._exceptions import InvalidRequestError
from .._models import RoutingRule, RoutingType, RoutingTypeName
from .._options import CallOptions
from .._response import to_raw_response
from ._base import Resource, enum_value, merged_with

__all__ = ["Routing", "RoutingWithRawResponse"]


class Routing(Resource):
    """Routing rules (``POST /fax/routing``)."""

    @functools.cached_property
    def with_raw_response(self) -> RoutingWithRawResponse:
        """The same calls, returning an :class:`~audian_fax_async.APIResponse` instead of the model."""
        return RoutingWithRawResponse(self)

    async def create(
        self,
        *,
        type: RoutingType | RoutingTypeName,
        destination: str,
        attach_document: bool = False,
        enabled: bool = True,
        **options: Unpack[CallOptions],
    ) -> RoutingRule:
        """Route incoming faxes to an email address or a URL.

        Not retried once the request may have reached the API (a retry could create two rules)::

            rule = await client.routing.create(type="email", destination="faxes@example.com",
                                               attach_document=True)
        """
        if not isinstance(destination, str) or not destination.strip():
            raise InvalidRequestError("destination must be a non-empty string")
        body = {
            "type": enum_value(type, RoutingType, "type"),
            "destination": destination,
            "attach_document": bool(attach_document),
            "enabled": bool(enabled),
        }
        return await self._client.request_model(
            "POST",
            "fax/routing",
            RoutingRule,
            json=body,
            idempotent=False,
            fallback=merged_with(RoutingRule, body),
            **options,
        )


class RoutingWithRawResponse:
    """``client.routing.with_raw_response``: the same calls, answering an APIResponse."""

    def __init__(self, resource: Routing) -> None:
        self.create = to_raw_response(resource.create)
