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

import typing as _typing

from ._bulk import AfterAction, BulkDownload, BulkProgress
from ._client import DefaultAsyncHttpClient, FaxClient
from ._config import DEFAULT_BASE_URL
from ._converter import format_datetime, parse_datetime
from ._download import DocumentStream
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
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    UnprocessableEntityError,
    ValidationError,
    WebhookError,
)
from ._limiter import DownloadLimiter, LimiterStatistics, LocalLimiter
from ._logs import setup_logging as _setup_logging
from ._manifest import Manifest, ManifestEntry
from ._models import (
    DownloadOutcome,
    DownloadResult,
    EventName,
    FaxNumber,
    FaxPage,
    FaxStatus,
    FormatName,
    OutcomeKind,
    ReceivedFax,
    RoutingRule,
    RoutingType,
    RoutingTypeName,
    StatusName,
    Webhook,
    WebhookEvent,
    WebhookEventType,
    WebhookFormat,
)
from ._options import NOT_GIVEN, CallOptions, NotGiven, TimeoutTypes
from ._response import APIResponse
from ._retry import RetryPolicy
from ._telemetry import TelemetryOptions
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._aiohttp import AiohttpTransport as AiohttpTransport
    from .redis import OnUnavailable as OnUnavailable
    from .redis import RedisLimiter as RedisLimiter
    from .redis import RedisLimiterOptions as RedisLimiterOptions

# A library logs, the application decides where it goes; AUDIAN_LOG=debug|info|warning sends it to stderr.
_setup_logging()

__all__ = [
    "DEFAULT_BASE_URL",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponse",
    "APIStatusError",
    "APITimeoutError",
    "AfterAction",
    "AiohttpTransport",
    "AudianError",
    "AuthenticationError",
    "BadRequestError",
    "BulkDownload",
    "BulkProgress",
    "CallOptions",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "DefaultAsyncHttpClient",
    "DestinationError",
    "DocumentStream",
    "DownloadError",
    "DownloadLimiter",
    "DownloadOutcome",
    "DownloadResult",
    "EventName",
    "FaxClient",
    "FaxNumber",
    "FaxPage",
    "FaxStatus",
    "FormatName",
    "IncompleteDownloadError",
    "InternalServerError",
    "InvalidRequestError",
    "LimiterError",
    "LimiterStatistics",
    "LocalLimiter",
    "Manifest",
    "ManifestEntry",
    "NotFoundError",
    "NotGiven",
    "OnUnavailable",
    "OutcomeKind",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReceivedFax",
    "RedisLimiter",
    "RedisLimiterOptions",
    "ResponseTooLargeError",
    "RetryPolicy",
    "RoutingRule",
    "RoutingType",
    "RoutingTypeName",
    "StatusName",
    "TelemetryOptions",
    "TimeoutTypes",
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


def __getattr__(name: str) -> _typing.Any:
    # ``RedisLimiter`` needs the ``redis`` extra: imported on first use, never at package import.
    if name in ("RedisLimiter", "RedisLimiterOptions", "OnUnavailable"):
        from . import redis

        return getattr(redis, name)
    # ``AiohttpTransport`` needs the ``aiohttp`` extra (imported when one is constructed).
    if name == "AiohttpTransport":
        from ._aiohttp import AiohttpTransport

        return AiohttpTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
