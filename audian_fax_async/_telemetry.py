"""What the SDK tells OpenTelemetry: the names, the options, and the hooks the core modules call.

Everything goes through ``opentelemetry-api`` (the ``otel`` extra), which is imported with the first
client or receiver, never with the package; without it installed, or with
``TelemetryOptions(enabled=False)``, every hook is one of the no-ops below. With the API but no SDK
configured, the API's own no-op tracer and meter answer and no attribute is built (the
implementation, ``_telemetry_otel``, checks ``span.is_recording()`` first). Bytes are counted once
per download, never per chunk.

This module decides every span, attribute and metric name. Attributes never hold the API key, a
document's bytes, a query string, or a sender's number unless ``sender_numbers=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Self

from attrs import frozen

from ._exceptions import APIStatusError

if TYPE_CHECKING:
    import httpx2
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._client import FaxClient
    from ._models import ReceivedFax, WebhookEvent
else:  # resolved at run time without importing OpenTelemetry (the annotations are for type checkers)
    MeterProvider = TracerProvider = object

__all__ = [
    "NO_BULK",
    "NO_CALL",
    "NO_DELIVERY",
    "Bulk",
    "Call",
    "Delivery",
    "Telemetry",
    "TelemetryOptions",
    "telemetry_for",
]

#: The instrumentation scope: the tracer's and the meter's name.
SCOPE = "audian_fax_async"

# -- span attributes: the HTTP semantic conventions where they apply, ``audian.*`` otherwise ------
HTTP_METHOD = "http.request.method"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
URL_PATH = "url.path"  # the path only: a query string can carry filters such as a sender's number
HTTP_STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"
ATTEMPTS = "audian.attempts"
REQUEST_ID = "audian.request_id"
FAX_ID = "audian.fax.id"
FROM_NUMBER = "audian.fax.from_number"  # only with TelemetryOptions(sender_numbers=True)
DOWNLOAD_BYTES = "audian.download.bytes"
DOWNLOAD_RESUMED = "audian.download.resumed"
DOWNLOAD_SLOT_WAIT = "audian.download.slot_wait"
#: A bulk run's counts when it ends: ``audian.bulk.listed``, ``.downloaded``, ``.skipped``, ``.failed``,
#: ``.retries`` and ``.bytes``.
BULK_PREFIX = "audian.bulk."
WEBHOOK_OUTCOME = "audian.webhook.outcome"
WEBHOOK_EVENT = "audian.webhook.event"
WEBHOOK_EVENT_ID = "audian.webhook.event_id"
#: The span event of each retry, with its reason (``error.type`` of the failed attempt), the attempt
#: that failed (1-based) and the wait before the next one in seconds.
RETRY_EVENT = "audian.retry"
RETRY_REASON = "audian.retry.reason"
RETRY_ATTEMPT = "audian.retry.attempt"
RETRY_DELAY = "audian.retry.delay"
#: Metric attributes besides the ones above.
OPERATION = "audian.operation"
OUTCOME = "audian.outcome"

# -- span names ---------------------------------------------------------------------------------
BULK_SPAN = "received.download_all"
DOWNLOAD_SPAN = "received.download"
STREAM_SPAN = "received.stream"
DELIVERY_SPAN = "webhook.delivery"

# -- metrics (name, unit) --------------------------------------------------------------------------
IN_FLIGHT = ("audian.downloads.in_flight", "{download}")
SLOT_WAIT = ("audian.download.slot_wait", "s")
DURATION = ("audian.download.duration", "s")
BYTES = ("audian.download.bytes", "By")
RETRIES = ("audian.retries", "{retry}")
OUTCOMES = ("audian.bulk.outcomes", "{fax}")
DELIVERIES = ("audian.webhook.deliveries", "{delivery}")
#: Histogram buckets in seconds (the API's default ones are for milliseconds).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

#: API calls by (method, path below the base URL); ``fax/received/{id}[/...]`` by their last segment.
_ROUTES = {
    ("GET", "fax/received"): "received.list",
    ("POST", "fax/webhooks"): "webhooks.create",
    ("POST", "fax/routing"): "routing.create",
    ("POST", "fax/numbers"): "numbers.request",
}
_FAX_ROUTES = {
    ("GET", ""): "received.get",
    ("PUT", ""): "received.update",
    ("POST", "archive"): "received.archive",
    ("GET", "download"): DOWNLOAD_SPAN,
}


def operation_name(method: str, path: str) -> str:
    """The span name of a call: the SDK method it belongs to (``received.get``), or the HTTP method
    alone for a path the SDK does not wrap (the semantic conventions' name without a route)."""
    route = path.split("?", 1)[0].strip("/")
    name = _ROUTES.get((method, route))
    if name is not None:
        return name
    parts = route.split("/")
    if parts[:2] == ["fax", "received"] and len(parts) in (3, 4):
        name = _FAX_ROUTES.get((method, parts[3] if len(parts) == 4 else ""))
    return name or method


def error_type(exc: BaseException) -> str:
    """``error.type`` of a failure, also a retry's reason: the HTTP status of an error answer, else
    the exception's class name (``APITimeoutError``, ``IncompleteDownloadError``)."""
    if isinstance(exc, APIStatusError):
        return str(exc.status_code)
    return type(exc).__name__


@frozen(kw_only=True)
class TelemetryOptions:
    """Where a :class:`FaxClient` or a :class:`~audian_fax_async.webhooks.WebhookReceiver` sends its
    spans and metrics (the ``otel`` extra)::

        client = FaxClient(telemetry=TelemetryOptions(tracer_provider=provider, meter_provider=meters))

    * ``tracer_provider`` / ``meter_provider``: OpenTelemetry providers; by default the global ones
      (``opentelemetry.trace.set_tracer_provider``), looked up when a span or metric is made, so a
      provider configured after the client is created is used too.
    * ``sender_numbers``: put the sender's number (``audian.fax.from_number``) on download and
      delivery spans. Off by default: a phone number is personal data.
    * ``enabled``: ``False`` reports nothing, even with providers configured.
    """

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    sender_numbers: bool = False
    enabled: bool = True


# -- the hooks: no-ops here, OpenTelemetry in ``_telemetry_otel`` -----------------------------------


class Call:
    """One API call (or one download) as a span, across its retries. This base does nothing."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        return None

    def retried(self, exc: BaseException, attempt: int, delay: float) -> None:
        """Attempt ``attempt`` failed with ``exc``; the next one follows in ``delay`` seconds."""

    def answered(self, response: httpx2.Response) -> None:
        """The call's final answer arrived (a success: errors are seen on exit)."""

    def in_slot(self, waited: float) -> AbstractContextManager[object]:
        """A download attempt got its slot after ``waited`` seconds and holds it for the block."""
        return _HOLD

    def finished(self, size: int, resumed: bool) -> None:
        """A download is complete: its size in bytes and whether it was resumed."""


class Bulk:
    """A ``download_all`` run as a span, and its outcomes counted. This base does nothing."""

    __slots__ = ()

    def enter(self) -> None:
        """Make the run's span the parent of what the calling task (and the ones it starts) do."""

    def outcome(self, kind: str) -> None:
        """One fax ended as ``kind`` (an :class:`~audian_fax_async.OutcomeKind` value)."""

    def end(self, counts: Mapping[str, int], exc: BaseException | None) -> None:
        """The run ended (``exc``: with that error) with these counts (``listed``, ``downloaded``...)."""


class Delivery:
    """One webhook delivery as a SERVER span. This base does nothing."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        return None

    def answered(self, outcome: str, status: int, event: WebhookEvent | None) -> None:
        """The receiver's answer: its outcome, its HTTP status, and the event when one was parsed."""


NO_CALL = Call()
NO_BULK = Bulk()
NO_DELIVERY = Delivery()
_HOLD: AbstractContextManager[object] = nullcontext()


class Telemetry:
    """What one client or receiver reports. This base reports nothing (no OpenTelemetry API, or
    ``enabled=False``); ``_telemetry_otel.OtelTelemetry`` reports through the API."""

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Add ``traceparent`` (and the other configured propagators' headers) when a recording span
        is current."""

    def call(self, client: FaxClient, method: str, path: str) -> Call:
        """The span of one API call of ``client`` to ``path`` (below its base URL)."""
        return NO_CALL

    def download(
        self, client: FaxClient, path: str, fax_id: str, fax: ReceivedFax | None, *, stream: bool = False
    ) -> Call:
        """The span of one document download (``stream``: handed to the caller, not to a file; the
        span is current while the caller reads it)."""
        return NO_CALL

    def bulk(self, *, traced: bool = True) -> Bulk:
        """The span of one ``download_all`` run (started now, ended by :meth:`Bulk.end`); with
        ``traced=False`` (a run fed by a long-lived source, the mirror) no span, only its counts."""
        return NO_BULK

    def delivery(self, headers: Mapping[str, str]) -> Delivery:
        """The span of one webhook delivery, linked to the context its headers carry."""
        return NO_DELIVERY

    def delivered(self, outcome: str) -> None:
        """Count one delivery answered with ``outcome``."""


_OFF = Telemetry()
_cache: dict[TelemetryOptions, Telemetry] = {}


def telemetry_for(options: TelemetryOptions | None) -> Telemetry:
    """The telemetry of ``options`` (the global providers when None), made once per options: the
    instruments a meter gives are made once, and OpenTelemetry is imported with the first one."""
    options = options if options is not None else TelemetryOptions()
    if not options.enabled:
        return _OFF
    found = _cache.get(options)
    if found is None:
        try:
            from ._telemetry_otel import OtelTelemetry
        except ImportError as exc:
            if not (exc.name or "").startswith("opentelemetry"):
                raise
            found = _OFF  # the otel extra is not installed: nothing is reported
        else:
            found = OtelTelemetry(options)
        if len(_cache) >= 64:
            _cache.clear()
        _cache[options] = found
    return found
