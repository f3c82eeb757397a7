"""``WebhookReceiver``: an ASGI app (and a framework-free ``handle``) that takes deliveries in.

One delivery goes through a fixed pipeline; each step can end it with an HTTP answer::

    content type (415) → size (413) → parse (400) → unknown type (200, ignored)
    → allow-list (403) → claim in the idempotency store (200 duplicate / 409 in flight / 503)
    → confirm by fetch (403 forged / 503 API unavailable) → handler (200, or 500 so the API retries;
      with background=True: 202 now, handler later)

Any answer but 2xx makes the API redeliver, and every path that does not end in a handled event
releases its claim, so the redelivery is handled again.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

import anyio
import anyio.abc
from attrs import field, frozen

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    InvalidRequestError,
    NotFoundError,
    ValidationError,
    WebhookError,
)
from .._models import ReceivedFax, WebhookEvent
from .._telemetry import NO_DELIVERY, Delivery, TelemetryOptions, telemetry_for
from ._parse import header_lookup, parse_event, payload_format
from ._store import DEFAULT_LEASE, DEFAULT_TTL, Claim, ClaimStatus, IdempotencyStore, MemoryIdempotencyStore

if TYPE_CHECKING:
    from .._client import FaxClient

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ConfirmedEvent",
    "DeliveryOutcome",
    "DeliveryResult",
    "ReceiverStatistics",
    "WebhookReceiver",
    "normalize_number",
]

logger = logging.getLogger("audian_fax_async.webhooks")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""Bodies larger than this (1 MiB) are refused with 413; a real payload is well under 1 KiB."""

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_NUMBER_PUNCTUATION = str.maketrans("", "", " -().\t")
_RETRY_AFTER = "30"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Disconnected(Exception):
    """The sender closed the connection before the body was complete."""


@frozen
class ConfirmedEvent:
    """An event whose fax the API confirmed: the delivery's payload and the API's own record.

    Trust ``fax`` (fetched with the account's key) over ``event`` (sent by whoever reached the URL)::

        async def on_fax(confirmed: ConfirmedEvent) -> None:
            print(confirmed.fax.from_number, confirmed.fax.pages)
    """

    event: WebhookEvent
    fax: ReceivedFax


E = TypeVar("E", WebhookEvent, ConfirmedEvent)


class DeliveryOutcome(enum.StrEnum):
    """How the receiver answered one delivery."""

    HANDLED = "handled"
    """200: the handler ran and returned."""
    ACCEPTED = "accepted"
    """202: claimed (and confirmed); the handler runs in the background."""
    DUPLICATE = "duplicate"
    """200: this event was handled before; the handler was not called."""
    IN_FLIGHT = "in_flight"
    """409: this event is being handled right now; the sender should retry later."""
    IGNORED = "ignored"
    """200: an event type this SDK does not know (see ``handle_unknown``)."""
    REFUSED = "refused"
    """403: sender not allowed, or the API does not confirm the event."""
    INVALID = "invalid"
    """400: malformed body, missing or mistyped fields, bad headers."""
    UNSUPPORTED = "unsupported"
    """415: neither JSON nor XML."""
    TOO_LARGE = "too_large"
    """413: the body is over ``max_body_bytes``."""
    NOT_ALLOWED = "method_not_allowed"
    """405: not a POST (ASGI only)."""
    FAILED = "failed"
    """500: the handler raised; the sender should retry."""
    UNAVAILABLE = "unavailable"
    """503: the store or the API could not be reached, or too much background work is pending."""


_STATUS = {
    DeliveryOutcome.HANDLED: 200,
    DeliveryOutcome.ACCEPTED: 202,
    DeliveryOutcome.DUPLICATE: 200,
    DeliveryOutcome.IN_FLIGHT: 409,
    DeliveryOutcome.IGNORED: 200,
    DeliveryOutcome.REFUSED: 403,
    DeliveryOutcome.INVALID: 400,
    DeliveryOutcome.UNSUPPORTED: 415,
    DeliveryOutcome.TOO_LARGE: 413,
    DeliveryOutcome.NOT_ALLOWED: 405,
    DeliveryOutcome.FAILED: 500,
    DeliveryOutcome.UNAVAILABLE: 503,
}


@frozen
class DeliveryResult:
    """The receiver's answer to one delivery: what to send back, and why.

    ``body`` is a small JSON document (``{"outcome": ..., "reason": ...}``); ``headers`` adds
    ``Retry-After`` to 409 and 503 answers.
    """

    outcome: DeliveryOutcome
    reason: str = ""
    event: WebhookEvent | None = field(default=None, eq=False)

    @property
    def status_code(self) -> int:
        """The HTTP status to answer with."""
        return _STATUS[self.outcome]

    @property
    def ok(self) -> bool:
        """True for a 2xx answer (the sender will not redeliver)."""
        return 200 <= self.status_code < 300

    @property
    def body(self) -> bytes:
        """The answer's JSON body."""
        data = {"outcome": self.outcome.value}
        if self.reason:
            data["reason"] = self.reason
        return json.dumps(data, separators=(",", ":")).encode()

    @property
    def headers(self) -> dict[str, str]:
        """The answer's headers (content type, and ``Retry-After`` where a retry is expected)."""
        out = {"content-type": "application/json"}
        if self.outcome in (DeliveryOutcome.IN_FLIGHT, DeliveryOutcome.UNAVAILABLE):
            out["retry-after"] = _RETRY_AFTER
        if self.outcome is DeliveryOutcome.NOT_ALLOWED:
            out["allow"] = "POST"
        if self.outcome is DeliveryOutcome.TOO_LARGE:
            # The rest of the body is never read: the connection cannot be reused.
            out["connection"] = "close"
        return out


@frozen
class ReceiverStatistics:
    """Counters of one receiver: answers by outcome, body bytes consumed, background handlers pending."""

    outcomes: Mapping[DeliveryOutcome, int]
    bytes_received: int
    background_pending: int

    def count(self, outcome: DeliveryOutcome) -> int:
        """How many deliveries ended with ``outcome``."""
        return self.outcomes.get(outcome, 0)


def normalize_number(number: str) -> str:
    """A phone number without spaces, dashes, dots and parentheses (``"+1 (202) 555-1234"`` →
    ``"+12025551234"``)."""
    return number.translate(_NUMBER_PUNCTUATION)


def _allow_list(numbers: Collection[str] | None) -> frozenset[str] | None:
    if numbers is None:
        return None
    if isinstance(numbers, str):
        raise InvalidRequestError("allow_senders must be a collection of numbers, not one string")
    out = set()
    for number in numbers:
        normal = normalize_number(number) if isinstance(number, str) else ""
        if not _E164.match(normal):
            raise InvalidRequestError(f"allow_senders: {number!r} is not an E.164 number such as +12025551234")
        out.add(normal)
    return frozenset(out)


class WebhookReceiver(Generic[E]):
    """Receives the API's webhook deliveries and calls ``handler`` once per event.

    An ASGI application: serve it alone, or mount it in Starlette or FastAPI::

        async def on_event(event: WebhookEvent) -> None:
            if event.event == WebhookEventType.FAX_RECEIVED:
                ...

        receiver = WebhookReceiver(on_event, allow_senders={"+12025551234"})
        app.router.routes.append(Route("/webhooks/fax", receiver, methods=["POST"]))
        # or app.mount("/webhooks/fax", receiver), and subscribe ".../webhooks/fax/"

    Anything else can call ``result = await receiver.handle(body, headers)`` and answer
    ``result.status_code`` with ``result.body``.

    * Each event reaches the handler once: retries and concurrent duplicates are recognised by
      ``store`` (an in-memory :class:`MemoryIdempotencyStore` by default; share a Redis store
      between processes). A duplicate of an event still being handled gets 409, so the sender
      retries later instead of losing the event if that first attempt fails.
    * A handler exception answers 500 and forgets the claim, so the API's redelivery runs it again.
    * ``allow_senders``: E.164 numbers; events from other numbers get 403.
    * ``confirm_with=client``: the fax is fetched by id through the API before the handler runs;
      an id the API does not know, or numbers that differ from its record, get 403. The handler
      then receives a :class:`ConfirmedEvent` carrying the API's record.
    * ``background=True``: answer 202 once the event is claimed (and confirmed) and run the
      handler in the receiver's task group, at most ``max_pending`` at once (503 beyond). The
      task group runs while the receiver is entered (``async with receiver:``) or, when served
      as the top-level app, during the ASGI lifespan. A failure in the background is logged and
      the claim released, but the delivery was already acknowledged: the API will not retry it.
    * ``handle_unknown``: pass events of unknown types to the handler too (by default they are
      answered 200 and skipped).
    * ``telemetry``: where the span of each delivery and the count of answers by outcome go (the
      ``otel`` extra; the global OpenTelemetry providers by default).
    """

    @overload
    def __init__(
        self: WebhookReceiver[WebhookEvent],
        handler: Callable[[WebhookEvent], Awaitable[object]],
        *,
        store: IdempotencyStore | None = ...,
        allow_senders: Collection[str] | None = ...,
        confirm_with: None = ...,
        max_body_bytes: int = ...,
        background: bool = ...,
        max_pending: int = ...,
        handle_unknown: bool = ...,
        ttl: float = ...,
        lease: float = ...,
        telemetry: TelemetryOptions | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: WebhookReceiver[ConfirmedEvent],
        handler: Callable[[ConfirmedEvent], Awaitable[object]],
        *,
        store: IdempotencyStore | None = ...,
        allow_senders: Collection[str] | None = ...,
        confirm_with: FaxClient,
        max_body_bytes: int = ...,
        background: bool = ...,
        max_pending: int = ...,
        handle_unknown: bool = ...,
        ttl: float = ...,
        lease: float = ...,
        telemetry: TelemetryOptions | None = ...,
    ) -> None: ...

    def __init__(
        self,
        handler: Callable[[Any], Awaitable[object]],
        *,
        store: IdempotencyStore | None = None,
        allow_senders: Collection[str] | None = None,
        confirm_with: FaxClient | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        background: bool = False,
        max_pending: int = 1000,
        handle_unknown: bool = False,
        ttl: float = DEFAULT_TTL,
        lease: float = DEFAULT_LEASE,
        telemetry: TelemetryOptions | None = None,
    ) -> None:
        if max_body_bytes < 1:
            raise InvalidRequestError(f"max_body_bytes must be >= 1, got {max_body_bytes!r}")
        if max_pending < 1:
            raise InvalidRequestError(f"max_pending must be >= 1, got {max_pending!r}")
        if ttl <= 0 or lease <= 0:
            raise InvalidRequestError("ttl and lease must be positive numbers of seconds")
        self._handler = handler
        self.store: IdempotencyStore = store if store is not None else MemoryIdempotencyStore()
        self.allow_senders = _allow_list(allow_senders)
        self._client = confirm_with
        self.max_body_bytes = max_body_bytes
        self.background = background
        self.max_pending = max_pending
        self.handle_unknown = handle_unknown
        self.ttl = ttl
        self.lease = lease
        self._outcomes: Counter[DeliveryOutcome] = Counter()
        self._telemetry = telemetry_for(telemetry)
        self._bytes_received = 0
        self._pending = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._tg_cm: anyio.abc.TaskGroup | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._tg_cm is not None:
            raise RuntimeError("this WebhookReceiver is already running")
        self._tg_cm = anyio.create_task_group()
        self._tg = await self._tg_cm.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        """Wait for the background handlers still running, then stop taking background work."""
        assert self._tg_cm is not None
        cm, self._tg_cm = self._tg_cm, None
        try:
            return await cm.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None

    def statistics(self) -> ReceiverStatistics:
        """Answers by outcome, body bytes read, and background handlers pending."""
        return ReceiverStatistics(dict(self._outcomes), self._bytes_received, self._pending)

    # -- the framework-free entry ------------------------------------------------------------

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        """Process one delivery whose body is already read; answer ``status_code`` with ``body``.

        ``headers`` is any mapping of the request's headers (names in any case)::

            result = await receiver.handle(await request.body(), request.headers)
            return Response(result.body, status_code=result.status_code, headers=result.headers)
        """
        lookup = header_lookup(headers)
        self._bytes_received += len(body)
        with self._telemetry.delivery(lookup) as span:
            result = self._check_headers(lookup)
            if result is None and len(body) > self.max_body_bytes:
                result = DeliveryResult(DeliveryOutcome.TOO_LARGE, f"body over {self.max_body_bytes} bytes")
            if result is None:
                result = await self._process(body, lookup)
            return self._count(result, span)

    def _check_headers(self, headers: Mapping[str, str]) -> DeliveryResult | None:
        """The answers known from the headers alone: 415, or 413 when Content-Length says so."""
        content_type = headers.get("content-type", "")
        if payload_format(content_type) is None:
            shown = content_type.split(";", 1)[0].strip()[:60] or "none"
            return DeliveryResult(
                DeliveryOutcome.UNSUPPORTED, f"content type {shown!r}: expected application/json or application/xml"
            )
        length = headers.get("content-length")
        if length is not None:
            digits = length.strip()
            if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
                return DeliveryResult(DeliveryOutcome.INVALID, "invalid Content-Length")
            if int(digits) > self.max_body_bytes:
                return DeliveryResult(DeliveryOutcome.TOO_LARGE, f"body over {self.max_body_bytes} bytes")
        return None

    def _count(self, result: DeliveryResult, span: Delivery = NO_DELIVERY) -> DeliveryResult:
        self._outcomes[result.outcome] += 1
        self._telemetry.delivered(result.outcome.value)
        span.answered(result.outcome.value, result.status_code, result.event)
        return result

    # -- the pipeline ------------------------------------------------------------------------

    async def _process(self, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        if self.background and self._tg is None:
            raise RuntimeError(
                "WebhookReceiver(background=True) is not running: enter it with `async with receiver:` "
                "(for example in your app's lifespan) or serve it as the top-level ASGI app"
            )
        try:
            event = parse_event(body, headers.get("content-type", ""), headers=headers)
        except WebhookError as exc:
            outcome = DeliveryOutcome.UNSUPPORTED if exc.status_code == 415 else DeliveryOutcome.INVALID
            return DeliveryResult(outcome, str(exc))
        except ValidationError as exc:
            return DeliveryResult(DeliveryOutcome.INVALID, str(exc))
        if not event.is_known and not self.handle_unknown:
            return DeliveryResult(DeliveryOutcome.IGNORED, f"unknown event type {str(event.event)[:40]!r}", event)
        if not self._sender_allowed(event.from_number):
            return DeliveryResult(DeliveryOutcome.REFUSED, "sender not allowed", event)

        try:
            claim = await self.store.claim(event.dedupe_key, lease=self.lease)
        except Exception:
            logger.exception("idempotency store failed to claim %s", event.dedupe_key)
            return DeliveryResult(DeliveryOutcome.UNAVAILABLE, "idempotency store unavailable", event)
        if claim.status is ClaimStatus.DONE:
            return DeliveryResult(DeliveryOutcome.DUPLICATE, "already handled", event)
        if claim.status is ClaimStatus.IN_FLIGHT:
            return DeliveryResult(DeliveryOutcome.IN_FLIGHT, "being handled; retry later", event)

        try:
            item = await self._confirm(event)
            if isinstance(item, DeliveryResult):
                await self._release(claim)
                return item
            if self.background:
                return await self._start_background(item, claim, event)
            await self._handler(item)
        except Exception:
            logger.exception("webhook handler failed for %s (%s)", event.dedupe_key, event.event)
            await self._release(claim)
            return DeliveryResult(DeliveryOutcome.FAILED, "handler failed", event)
        except BaseException:
            await self._release(claim)
            raise
        await self._complete(claim)
        return DeliveryResult(DeliveryOutcome.HANDLED, "", event)

    def _sender_allowed(self, number: str | None) -> bool:
        if self.allow_senders is None:
            return True
        return number is not None and normalize_number(number) in self.allow_senders

    async def _confirm(self, event: WebhookEvent) -> WebhookEvent | ConfirmedEvent | DeliveryResult:
        if self._client is None:
            return event
        try:
            fax = await self._client.received.get(event.id)
        except NotFoundError:
            return DeliveryResult(DeliveryOutcome.REFUSED, "the API has no such fax", event)
        except InvalidRequestError:
            return DeliveryResult(DeliveryOutcome.INVALID, "invalid fax id", event)
        except (APIStatusError, APIConnectionError, ValidationError) as exc:
            logger.warning("could not confirm %s with the API: %s", event.dedupe_key, exc)
            return DeliveryResult(DeliveryOutcome.UNAVAILABLE, "could not confirm the event with the API", event)
        for name in ("from_number", "to_number"):
            sent, known = getattr(event, name), getattr(fax, name)
            if sent is not None and normalize_number(sent) != normalize_number(known):
                return DeliveryResult(DeliveryOutcome.REFUSED, f"{name} does not match the API's record", event)
        if not self._sender_allowed(fax.from_number):
            return DeliveryResult(DeliveryOutcome.REFUSED, "sender not allowed", event)
        return ConfirmedEvent(event, fax)

    async def _start_background(self, item: object, claim: Claim, event: WebhookEvent) -> DeliveryResult:
        assert self._tg is not None
        if self._pending >= self.max_pending:
            await self._release(claim)
            return DeliveryResult(DeliveryOutcome.UNAVAILABLE, "too many events pending", event)
        self._pending += 1
        self._tg.start_soon(self._run_background, item, claim, event)
        return DeliveryResult(DeliveryOutcome.ACCEPTED, "", event)

    async def _run_background(self, item: object, claim: Claim, event: WebhookEvent) -> None:
        try:
            await self._handler(item)
        except Exception:
            logger.exception("background webhook handler failed for %s (%s)", event.dedupe_key, event.event)
            await self._release(claim)
            self._outcomes[DeliveryOutcome.FAILED] += 1
            self._telemetry.delivered(DeliveryOutcome.FAILED.value)
            return
        except BaseException:
            await self._release(claim)
            raise
        finally:
            self._pending -= 1
        await self._complete(claim)

    async def _complete(self, claim: Claim) -> None:
        with anyio.CancelScope(shield=True):
            try:
                if not await self.store.complete(claim, ttl=self.ttl):
                    logger.warning("claim on %s expired before the handler finished", claim.key)
            except Exception:
                # The handler ran: answering 500 now would run it twice. The lease expires instead.
                logger.exception("idempotency store failed to record %s as handled", claim.key)

    async def _release(self, claim: Claim) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.store.release(claim)
            except Exception:
                logger.exception("idempotency store failed to release %s; it frees itself after the lease", claim.key)

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry: ``http`` deliveries, and ``lifespan`` to run background work."""
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        if scope.get("method") != "POST":
            await self._respond(send, self._count(DeliveryResult(DeliveryOutcome.NOT_ALLOWED, "POST only")))
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            headers.setdefault(raw_name.decode("latin-1").lower(), raw_value.decode("latin-1"))
        with self._telemetry.delivery(headers) as span:
            result = self._check_headers(headers)
            if result is None:
                try:
                    body = await self._read_body(receive)
                except _Disconnected:
                    return  # the sender went away mid-body: nobody to answer
                if body is None:
                    result = DeliveryResult(DeliveryOutcome.TOO_LARGE, f"body over {self.max_body_bytes} bytes")
                else:
                    result = await self._process(body, headers)
            await self._respond(send, self._count(result, span))

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The body, read chunk by chunk; ``None`` as soon as it passes ``max_body_bytes``."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            self._bytes_received += len(chunk)
            if len(body) + len(chunk) > self.max_body_bytes:
                return None
            body += chunk
            if not message.get("more_body", False):
                return bytes(body)

    @staticmethod
    async def _respond(send: Send, result: DeliveryResult) -> None:
        body = result.body
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in result.headers.items()]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": result.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        if self._tg_cm is not None:  # the application entered the receiver itself
            await send({"type": "lifespan.startup.complete"})
            await receive()
        else:
            async with self:
                await send({"type": "lifespan.startup.complete"})
                await receive()
        await send({"type": "lifespan.shutdown.complete"})
