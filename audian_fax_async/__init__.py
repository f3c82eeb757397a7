"""Async Python SDK for the Audian Receive Fax API.

::

    import anyio
    from audian_fax_async import FaxClient

    async def main() -> None:
        async with FaxClient() as client:  # reads AUDIAN_API_KEY
            async for fax in client.received.iter(status="received"):
                print(fax.id, fax.from_number, fax.pages)

    anyio.run(main)
"""

import logging as _logging

from ._client import FaxClient
from ._config import DEFAULT_BASE_URL
from ._converter import format_datetime, parse_datetime
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AudianError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    DestinationError,
    DownloadError,
    IncompleteDownloadError,
    InternalServerError,
    InvalidRequestError,
    LimiterError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    ValidationError,
    WebhookError,
)
from ._limiter import DownloadLimiter, LimiterStatistics, LocalLimiter
from ._models import (
    DownloadOutcome,
    DownloadResult,
    FaxNumber,
    FaxPage,
    FaxStatus,
    OutcomeKind,
    ReceivedFax,
    RoutingRule,
    RoutingType,
    Webhook,
    WebhookEvent,
    WebhookEventType,
    WebhookFormat,
)
from ._retry import RetryPolicy
from ._version import __version__

# A library logs, the application decides where it goes (no "No handlers" fallback to stderr).
_logging.getLogger("audian_fax_async").addHandler(_logging.NullHandler())

__all__ = [
    "DEFAULT_BASE_URL",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AudianError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "DestinationError",
    "DownloadError",
    "DownloadLimiter",
    "DownloadOutcome",
    "DownloadResult",
    "FaxClient",
    "FaxNumber",
    "FaxPage",
    "FaxStatus",
    "IncompleteDownloadError",
    "InternalServerError",
    "InvalidRequestError",
    "LimiterError",
    "LimiterStatistics",
    "LocalLimiter",
    "NotFoundError",
    "OutcomeKind",
    "PermissionDeniedError",
    "RateLimitError",
    "ReceivedFax",
    "RetryPolicy",
    "RoutingRule",
    "RoutingType",
    "UnprocessableEntityError",
    "ValidationError",
    "Webhook",
    "WebhookError",
    "WebhookEvent",
    "WebhookEventType",
    "WebhookFormat",
    "__version__",
    "format_datetime",
    "parse_datetime",
]
