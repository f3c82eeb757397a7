"""Webhook bodies (JSON or XML) to :class:`WebhookEvent`. Pure functions: no I/O.

XML goes through defusedxml's expat parser with DTDs forbidden, so entity bombs, external entities
and DTD tricks stop at the ``<!DOCTYPE`` before any expansion. The parser feeds a small target that
keeps only the fields of ``<event>`` and refuses nesting deeper than one level, so no element tree
is built and memory stays a small multiple of the body (which the receiver caps).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser, ParseError

from .._converter import structure
from .._exceptions import ValidationError, WebhookError
from .._models import WebhookEvent, WebhookEventType, WebhookFormat

__all__ = [
    "DELIVERY_ID_HEADER",
    "EVENT_HEADER",
    "EVENT_ID_HEADER",
    "PAYLOAD_FIELDS",
    "header_lookup",
    "parse_event",
    "payload_format",
]

EVENT_HEADER = "x-audian-event"
EVENT_ID_HEADER = "x-audian-event-id"
DELIVERY_ID_HEADER = "x-audian-delivery-id"

PAYLOAD_FIELDS = (
    "event",
    "id",
    "from_number",
    "from_name",
    "to_number",
    "pages",
    "received_at",
    "file_size",
    "format",
    "document_url",
    "status",
)
"""The body fields of a delivery (the reference's payload; ``fax_processed`` adds ``status``)."""

_REQUIRED = ("event", "id")
_REQUIRED_FOR_KNOWN = ("from_number", "to_number", "received_at")
_INT_FIELDS = frozenset({"pages", "file_size"})
_MAX_XML_FIELDS = 64
_MAX_ID_HEADER = 200
# ``event`` and ``id`` make the de-duplication key: bounded, so a store's memory is bounded per key.
_MAX_LENGTHS = {"event": 64, "id": 256}


def payload_format(content_type: str | None) -> WebhookFormat | None:
    """The payload format a ``Content-Type`` names (``application/json``, ``application/xml``,
    ``text/xml``, ``*+json``, ``*+xml``), or ``None`` when it names neither."""
    if not content_type:
        return None
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/json" or mime.endswith("+json"):
        return WebhookFormat.JSON
    if mime in ("application/xml", "text/xml") or mime.endswith("+xml"):
        return WebhookFormat.XML
    return None


def header_lookup(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers with lower-case names (the first value wins when a name repeats)."""
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        out.setdefault(name.lower(), value)
    return out


def parse_event(body: bytes, content_type: str, *, headers: Mapping[str, str] | None = None) -> WebhookEvent:
    """Parse one delivery's body into a :class:`WebhookEvent`.

    ``headers`` (any case) supply ``event_id`` (``X-Audian-Event-Id``, the same on every retry of
    one event) and ``delivery_id`` (``X-Audian-Delivery-Id``); without them the event is still
    recognised across retries by :attr:`WebhookEvent.dedupe_key` (``"{event}:{id}"``).

    An event type this SDK does not know parses normally; check :attr:`WebhookEvent.is_known`::

        event = parse_event(body, request.headers["content-type"], headers=request.headers)
        if event.is_known and event.event == WebhookEventType.FAX_RECEIVED:
            ...

    Raises :class:`WebhookError` with ``status_code`` 415 for a content type that is neither JSON
    nor XML, and 400 for a body that is not well-formed JSON or XML, or XML with a DTD, entity
    declaration or external reference. A body that parses but has a missing or mistyped field
    raises :class:`ValidationError` (``path`` names the field). Both derive from ``AudianError``.
    """
    fmt = payload_format(content_type)
    if fmt is None:
        raise WebhookError(
            f"unsupported content type {content_type.split(';', 1)[0].strip()[:60]!r}: "
            "expected application/json or application/xml",
            status_code=415,
        )
    fields = _json_fields(body) if fmt is WebhookFormat.JSON else _xml_fields(body)
    return _build_event(fields, header_lookup(headers))


# -- JSON ------------------------------------------------------------------------------------


def _json_fields(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise WebhookError("malformed JSON: not UTF-8 text") from None
    except ValueError as exc:
        raise WebhookError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise WebhookError("malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ValidationError(f"expected a JSON object, got {type(data).__name__}", path="$", model="WebhookEvent")
    return {name: data[name] for name in PAYLOAD_FIELDS if name in data}


# -- XML -------------------------------------------------------------------------------------


class _XMLRefused(Exception):
    """Raised inside the parser's callbacks to stop at the first unexpected element."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _EventTarget:
    """Collects the text of each child of ``<event>``; refuses anything deeper."""

    def __init__(self) -> None:
        self.depth = 0
        self.fields: dict[str, str] = {}
        self._name: str | None = None
        self._text: list[str] = []

    def start(self, tag: str, _attrib: dict[str, str]) -> None:
        self.depth += 1
        name = _local(tag)
        if self.depth == 1:
            if name != "event":
                raise _XMLRefused(f"root element must be <event>, got <{name[:40]}>")
        elif self.depth == 2:
            if name in self.fields:
                raise _XMLRefused(f"field <{name[:40]}> appears twice")
            if len(self.fields) >= _MAX_XML_FIELDS:
                raise _XMLRefused(f"more than {_MAX_XML_FIELDS} fields")
            self._name, self._text = name, []
        else:
            raise _XMLRefused(f"unexpected element <{name[:40]}> inside <{self._name}>")

    def end(self, _tag: str) -> None:
        if self.depth == 2 and self._name is not None:
            self.fields[self._name] = "".join(self._text).strip()
            self._name = None
        self.depth -= 1

    def data(self, data: str) -> None:
        if self.depth == 2:
            self._text.append(data)

    def close(self) -> None:
        pass


def _xml_fields(body: bytes) -> dict[str, Any]:
    target = _EventTarget()
    parser = DefusedXMLParser(target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    try:
        parser.feed(body)
        parser.close()
    except DTDForbidden:
        raise WebhookError("XML with a DTD (<!DOCTYPE>) is refused") from None
    except EntitiesForbidden:
        raise WebhookError("XML entity declarations are refused") from None
    except ExternalReferenceForbidden:
        raise WebhookError("XML external references are refused") from None
    except DefusedXmlException as exc:
        raise WebhookError(f"XML refused: {type(exc).__name__}") from None
    except ParseError as exc:
        raise WebhookError(f"malformed XML: {exc}") from None
    except _XMLRefused as exc:
        raise ValidationError(f"unexpected XML shape: {exc}", path="$", model="WebhookEvent") from None
    texts = target.fields
    fields: dict[str, Any] = {}
    for name in PAYLOAD_FIELDS:
        if name not in texts:
            continue
        text = texts[name]
        if text == "":
            fields[name] = None
        elif name in _INT_FIELDS:
            fields[name] = _xml_int(name, text)
        else:
            fields[name] = text
    return fields


def _xml_int(name: str, text: str) -> int:
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise ValidationError(f"{name}: expected an integer, got {text[:40]!r}", path=f"$.{name}", model="WebhookEvent")
    return int(text)


# -- both ------------------------------------------------------------------------------------


def _build_event(fields: dict[str, Any], headers: Mapping[str, str]) -> WebhookEvent:
    for name in _REQUIRED:
        _require(fields, name)
    event_type = fields["event"]
    if isinstance(event_type, str) and event_type in set(WebhookEventType):
        for name in _REQUIRED_FOR_KNOWN:
            _require(fields, name)
    header_event = headers.get(EVENT_HEADER)
    if header_event is not None and isinstance(event_type, str) and header_event.strip() != event_type:
        raise WebhookError(f"X-Audian-Event header {header_event[:40]!r} does not match the body's {event_type[:40]!r}")
    event = structure(fields, WebhookEvent)
    return attrs.evolve(
        event,
        event_id=_header_id(headers, EVENT_ID_HEADER, "X-Audian-Event-Id"),
        delivery_id=_header_id(headers, DELIVERY_ID_HEADER, "X-Audian-Delivery-Id"),
    )


def _require(fields: Mapping[str, Any], name: str) -> None:
    value = fields.get(name)
    if value is None:
        raise ValidationError(f"missing required field {name!r}", path=f"$.{name}", model="WebhookEvent")
    if not isinstance(value, str):
        return  # the converter names the wrong type
    if not value.strip():
        raise ValidationError(f"field {name!r} is empty", path=f"$.{name}", model="WebhookEvent")
    limit = _MAX_LENGTHS.get(name)
    if limit is not None and (len(value) > limit or not value.isprintable()):
        raise ValidationError(
            f"field {name!r} is longer than {limit} characters or has control characters",
            path=f"$.{name}",
            model="WebhookEvent",
        )


def _header_id(headers: Mapping[str, str], name: str, display: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_ID_HEADER or not value.isascii() or not value.isprintable():
        raise WebhookError(f"invalid {display} header")
    return value
