"""The hooks of ``_telemetry`` over the OpenTelemetry API (imported with the first client or receiver
when ``opentelemetry-api`` is installed; never the SDK).

Spans are started with ``Tracer.start_span`` and made current with ``context.attach`` (detached in
the same task); an attribute is built only when ``span.is_recording()``. While no tracer provider is
configured (the API's proxy or no-op one) no span is started at all. Instruments are made once per
:class:`OtelTelemetry` (one per ``TelemetryOptions``).

Downloads in flight, bytes downloaded and bulk outcomes are counted in plain integers and reported
by observable instruments when a reader collects (:class:`_Counts`, one per meter provider): a
synchronous measurement costs tens of microseconds in the OpenTelemetry SDK (its exemplars), and a
download would otherwise take four of them besides its two histograms.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from contextvars import Token
from typing import TYPE_CHECKING, ClassVar, Self

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from . import _telemetry as names
from ._exceptions import APIStatusError, find_request_id
from ._telemetry import Bulk, Call, Delivery, Telemetry, TelemetryOptions, error_type, operation_name
from ._version import __version__

if TYPE_CHECKING:
    import httpx2
    from opentelemetry.context import Context

    from ._client import FaxClient
    from ._models import ReceivedFax, WebhookEvent

__all__ = ["OtelTelemetry"]

Attributes = dict[str, str | int | float | bool]


class OtelTelemetry(Telemetry):
    """A tracer and the SDK's instruments, from the providers of ``options`` (else the global ones)."""

    def __init__(self, options: TelemetryOptions) -> None:
        self.sender_numbers = options.sender_numbers
        self._tracer_provider = options.tracer_provider
        self.tracer = trace.get_tracer(names.SCOPE, __version__, tracer_provider=options.tracer_provider)
        meter = metrics.get_meter(names.SCOPE, __version__, meter_provider=options.meter_provider)
        self.counts = _Counts.of(options.meter_provider, meter)
        self.slot_wait = meter.create_histogram(
            names.SLOT_WAIT[0],
            unit=names.SLOT_WAIT[1],
            description="Time a download attempt waited for a download slot",
            explicit_bucket_boundaries_advisory=names.SECONDS_BUCKETS,
        )
        self.duration = meter.create_histogram(
            names.DURATION[0],
            unit=names.DURATION[1],
            description="Time to download one document, retries included",
            explicit_bucket_boundaries_advisory=names.SECONDS_BUCKETS,
        )
        self.retries = meter.create_counter(
            names.RETRIES[0], unit=names.RETRIES[1], description="Retries of API calls, by reason"
        )
        self.deliveries = meter.create_counter(
            names.DELIVERIES[0], unit=names.DELIVERIES[1], description="Webhook deliveries answered, by outcome"
        )
        self.hold = _Hold(self.counts)

    def tracing(self) -> bool:
        """Whether a tracer provider is configured (the global one is looked up each time: it may
        be set after this client was made)."""
        provider = self._tracer_provider or trace.get_tracer_provider()
        return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        if self.tracing() and trace.get_current_span().is_recording():
            propagate.inject(headers)

    def call(self, client: FaxClient, method: str, path: str) -> Call:
        return _Call(self, client, operation_name(method, path), method, path)

    def download(
        self, client: FaxClient, path: str, fax_id: str, fax: ReceivedFax | None, *, stream: bool = False
    ) -> Call:
        return _Download(self, client, names.STREAM_SPAN if stream else names.DOWNLOAD_SPAN, path, fax_id, fax)

    def bulk(self, *, traced: bool = True) -> Bulk:
        return _Bulk(self, traced=traced)

    def delivery(self, headers: Mapping[str, str]) -> Delivery:
        return _Delivery(self, headers)

    def delivered(self, outcome: str) -> None:
        self.deliveries.add(1, {names.WEBHOOK_OUTCOME: outcome})


class _Counts:
    """Downloads in flight, bytes downloaded and bulk outcomes of every client reporting to one meter
    provider, read by its observable instruments when a reader collects. Updated from the event
    loops, read from the reader's thread (plain integers under a lock)."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _global: ClassVar[_Counts | None] = None
    _by_provider: ClassVar[weakref.WeakKeyDictionary[object, _Counts]] = weakref.WeakKeyDictionary()

    def __init__(self, meter: Meter) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.bytes = 0
        self.outcomes: Counter[str] = Counter()
        meter.create_observable_up_down_counter(
            names.IN_FLIGHT[0],
            callbacks=[self._observe_in_flight],
            unit=names.IN_FLIGHT[1],
            description="Downloads holding a slot right now",
        )
        meter.create_observable_counter(
            names.BYTES[0],
            callbacks=[self._observe_bytes],
            unit=names.BYTES[1],
            description="Bytes of documents downloaded",
        )
        meter.create_observable_counter(
            names.OUTCOMES[0],
            callbacks=[self._observe_outcomes],
            unit=names.OUTCOMES[1],
            description="Faxes of bulk downloads, by outcome",
        )

    @classmethod
    def of(cls, provider: object | None, meter: Meter) -> _Counts:
        """The counts of ``provider`` (None: the global one), made with its instruments the first
        time: an observable instrument made twice under one name would report only once."""
        with cls._lock:
            if provider is None:
                if cls._global is None:
                    cls._global = cls(meter)
                return cls._global
            found = cls._by_provider.get(provider)
            if found is None:
                found = cls._by_provider[provider] = cls(meter)
            return found

    def add_in_flight(self, change: int) -> None:
        with self.lock:
            self.in_flight += change

    def add_download(self, size: int) -> None:
        with self.lock:
            self.bytes += size

    def add_outcome(self, kind: str) -> None:
        with self.lock:
            self.outcomes[kind] += 1

    def _observe_in_flight(self, _: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            return [Observation(self.in_flight)]

    def _observe_bytes(self, _: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            return [Observation(self.bytes)]

    def _observe_outcomes(self, _: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            return [Observation(count, {names.OUTCOME: kind}) for kind, count in self.outcomes.items()]


class _Hold:
    """A download holding its slot: one more in flight for the block."""

    __slots__ = ("_counts",)

    def __init__(self, counts: _Counts) -> None:
        self._counts = counts

    def __enter__(self) -> None:
        self._counts.add_in_flight(1)

    def __exit__(self, *exc_info: object) -> None:
        self._counts.add_in_flight(-1)


def _failed(span: trace.Span, attributes: Attributes, exc: BaseException) -> None:
    attributes[names.ERROR_TYPE] = error_type(exc)
    if isinstance(exc, APIStatusError):
        attributes[names.HTTP_STATUS] = exc.status_code
        if exc.request_id:
            attributes[names.REQUEST_ID] = exc.request_id
    span.set_status(Status(StatusCode.ERROR))


class _Call(Call):
    """A CLIENT span, current while the call runs, with the HTTP attributes and a retry event each."""

    __slots__ = ("_client", "_method", "_name", "_path", "_telemetry", "_token", "retries", "span")

    def __init__(self, telemetry: OtelTelemetry, client: FaxClient, name: str, method: str, path: str) -> None:
        self._telemetry, self._client, self._name, self._method, self._path = telemetry, client, name, method, path
        self.retries = 0
        self.span: trace.Span = trace.INVALID_SPAN
        self._token: Token[Context] | None = None

    def __enter__(self) -> Self:
        if not self._telemetry.tracing():
            return self  # metrics only
        self.span = span = self._telemetry.tracer.start_span(self._name, kind=SpanKind.CLIENT)
        if span.is_recording():
            span.set_attributes(self.start_attributes())
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return self

    def start_attributes(self) -> Attributes:
        path = self._path.split("?", 1)[0]
        if path.startswith(("http://", "https://")):
            url = self._client.url_for(path)
            path = url.path
        else:  # below the base URL: no URL to parse
            url = self._client.base_url
            path = url.path + path.lstrip("/")
        attributes: Attributes = {
            names.HTTP_METHOD: self._method,
            names.SERVER_ADDRESS: url.host,
            names.URL_PATH: path,
        }
        if url.port is not None:
            attributes[names.SERVER_PORT] = url.port
        elif url.scheme in ("http", "https"):
            attributes[names.SERVER_PORT] = 443 if url.scheme == "https" else 80
        return attributes

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        span = self.span
        if span.is_recording():
            attributes: Attributes = {names.ATTEMPTS: self.retries + 1}
            if exc is not None:
                _failed(span, attributes, exc)
            self.end_attributes(attributes, exc)
            span.set_attributes(attributes)
        span.end()

    def end_attributes(self, attributes: Attributes, exc: BaseException | None) -> None:
        """What a subclass adds when the span ends."""

    def retried(self, exc: BaseException, attempt: int, delay: float) -> None:
        self.retries += 1
        reason = error_type(exc)
        self._telemetry.retries.add(1, {names.RETRY_REASON: reason, names.OPERATION: self._name})
        if self.span.is_recording():
            self.span.add_event(
                names.RETRY_EVENT,
                {names.RETRY_REASON: reason, names.RETRY_ATTEMPT: attempt, names.RETRY_DELAY: float(delay)},
            )

    def answered(self, response: httpx2.Response) -> None:
        if self.span.is_recording():
            self.span.set_attribute(names.HTTP_STATUS, response.status_code)
            request_id = find_request_id(response.headers)
            if request_id:
                self.span.set_attribute(names.REQUEST_ID, request_id)


class _Download(_Call):
    """A download's span, plus its metrics: slot waits, slots held, duration, and bytes once at the end."""

    __slots__ = ("_fax", "_fax_id", "_size", "_slot_wait", "_started")

    def __init__(
        self, telemetry: OtelTelemetry, client: FaxClient, name: str, path: str, fax_id: str, fax: ReceivedFax | None
    ) -> None:
        super().__init__(telemetry, client, name, "GET", path)
        self._fax_id, self._fax = fax_id, fax
        self._slot_wait = 0.0
        self._size: tuple[int, bool] | None = None  # bytes and resumed, once complete
        self._started = 0.0

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        return super().__enter__()

    def start_attributes(self) -> Attributes:
        attributes = super().start_attributes()
        attributes[names.FAX_ID] = self._fax_id
        if self._telemetry.sender_numbers and self._fax is not None and self._fax.from_number:
            attributes[names.FROM_NUMBER] = self._fax.from_number
        return attributes

    def in_slot(self, waited: float) -> AbstractContextManager[object]:
        self._slot_wait += waited
        self._telemetry.slot_wait.record(waited)
        return self._telemetry.hold

    def finished(self, size: int, resumed: bool) -> None:
        self._size = (size, resumed)

    def end_attributes(self, attributes: Attributes, exc: BaseException | None) -> None:
        attributes[names.DOWNLOAD_SLOT_WAIT] = self._slot_wait
        if self._size is not None:
            attributes[names.DOWNLOAD_BYTES], attributes[names.DOWNLOAD_RESUMED] = self._size

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        telemetry = self._telemetry
        telemetry.duration.record(
            time.perf_counter() - self._started, {names.ERROR_TYPE: error_type(exc)} if exc is not None else None
        )
        if self._size is not None:
            telemetry.counts.add_download(self._size[0])
        super().__exit__(exc_type, exc, tb)


class _Bulk(Bulk):
    """The span of a ``download_all`` run: the parent of its listing, downloads and markings."""

    __slots__ = ("_span", "_telemetry")

    def __init__(self, telemetry: OtelTelemetry, *, traced: bool) -> None:
        self._telemetry = telemetry
        tracing = traced and telemetry.tracing()
        self._span = telemetry.tracer.start_span(names.BULK_SPAN, kind=SpanKind.INTERNAL) if tracing else None

    def enter(self) -> None:
        # Never detached: the calling task's context ends with the task (the run's engine).
        if self._span is not None:
            otel_context.attach(trace.set_span_in_context(self._span))

    def outcome(self, kind: str) -> None:
        self._telemetry.counts.add_outcome(kind)

    def end(self, counts: Mapping[str, int], exc: BaseException | None) -> None:
        span = self._span
        if span is None:
            return
        if span.is_recording():
            attributes: Attributes = {names.BULK_PREFIX + name: count for name, count in counts.items()}
            if exc is not None:
                _failed(span, attributes, exc)
            span.set_attributes(attributes)
        span.end()


class _Delivery(Delivery):
    """A SERVER span per delivery, current while it is handled, linked to the context its headers carry."""

    __slots__ = ("_headers", "_span", "_telemetry", "_token")

    def __init__(self, telemetry: OtelTelemetry, headers: Mapping[str, str]) -> None:
        self._telemetry, self._headers = telemetry, headers
        self._span: trace.Span = trace.INVALID_SPAN
        self._token: Token[Context] | None = None

    def __enter__(self) -> Self:
        if not self._telemetry.tracing():
            return self
        links = None
        if "traceparent" in self._headers:  # the sender's trace: linked (a delivery is not part of its request)
            sender = trace.get_current_span(propagate.extract(self._headers)).get_span_context()
            if sender.is_valid:
                links = [Link(sender)]
        self._span = self._telemetry.tracer.start_span(names.DELIVERY_SPAN, kind=SpanKind.SERVER, links=links)
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._token is None:
            return
        otel_context.detach(self._token)
        if exc is not None and self._span.is_recording():
            attributes: Attributes = {}
            _failed(self._span, attributes, exc)
            self._span.set_attributes(attributes)
        self._span.end()

    def answered(self, outcome: str, status: int, event: WebhookEvent | None) -> None:
        span = self._span
        if not span.is_recording():
            return
        attributes: Attributes = {names.WEBHOOK_OUTCOME: outcome, names.HTTP_STATUS: status}
        if event is not None:
            attributes[names.WEBHOOK_EVENT] = str(event.event)
            attributes[names.FAX_ID] = event.id
            attributes[names.WEBHOOK_EVENT_ID] = event.dedupe_key
            if self._telemetry.sender_numbers and event.from_number:
                attributes[names.FROM_NUMBER] = event.from_number
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.set_attributes(attributes)
