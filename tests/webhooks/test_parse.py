"""parse_event: JSON and XML bodies to typed events, and every way a body is refused."""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import UTC, datetime

import pytest

from audian_fax_async import AudianError, FaxStatus
from audian_fax_async.webhooks import (
    ValidationError,
    WebhookError,
    WebhookEvent,
    WebhookEventType,
    parse_event,
    payload_format,
)

from .payloads import XML_ATTACKS, delivery_headers, json_body, xml_body

EXPECTED = WebhookEvent(
    event=WebhookEventType.FAX_RECEIVED,
    id="fax_received_123",
    from_number="+12025551234",
    from_name="John Smith",
    to_number="+15551234567",
    pages=5,
    received_at=datetime(2024, 2, 4, 13, 15, tzinfo=UTC),
    file_size=450000,
    format="pdf",
    document_url="https://api.audian.com:8443/v2/fax/received/fax_received_123/download",
)


def test_reference_json_payload_parses_to_typed_event() -> None:
    assert parse_event(json_body(), "application/json") == EXPECTED


def test_xml_payload_parses_to_the_same_event_as_json() -> None:
    assert parse_event(xml_body(), "application/xml") == EXPECTED
    assert parse_event(xml_body(), "text/xml; charset=utf-8") == EXPECTED


def test_pretty_printed_namespaced_xml_parses() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<event xmlns="urn:audian:webhook">
  <event>fax_received</event>
  <id>fax_received_123</id>
  <from_number> +12025551234 </from_number>
  <to_number>+15551234567</to_number>
  <received_at>2024-02-04T13:15:00Z</received_at>
  <pages>5</pages>
  <from_name/>
  <!-- a comment -->
</event>"""
    event = parse_event(body, "application/xml")
    assert (event.id, event.from_number, event.pages, event.from_name) == (
        "fax_received_123",
        "+12025551234",
        5,
        None,
    )


def test_fax_processed_carries_status() -> None:
    event = parse_event(json_body(event="fax_processed", status="processed"), "application/json")
    assert event.event is WebhookEventType.FAX_PROCESSED
    assert event.status is FaxStatus.PROCESSED
    xml_event = parse_event(xml_body(event="fax_processed", status="processed"), "application/xml")
    assert xml_event == event


def test_headers_supply_event_and_delivery_ids_in_any_case() -> None:
    headers = {"x-audian-event-id": "evt_abc", "X-AUDIAN-DELIVERY-ID": "dlv_1"}
    event = parse_event(json_body(), "application/json", headers=headers)
    assert (event.event_id, event.delivery_id, event.dedupe_key) == ("evt_abc", "dlv_1", "evt_abc")


def test_without_headers_the_dedupe_key_is_stable_and_format_independent() -> None:
    from_json = parse_event(json_body(), "application/json")
    from_xml = parse_event(xml_body(), "application/xml")
    assert from_json.event_id is None
    assert from_json.dedupe_key == from_xml.dedupe_key == "fax_received:fax_received_123"


def test_body_fields_never_override_header_ids() -> None:
    event = parse_event(json_body(event_id="evt_forged"), "application/json", headers={"X-Audian-Event-Id": "evt_1"})
    assert event.event_id == "evt_1"
    assert parse_event(json_body(event_id="evt_forged"), "application/json").event_id is None


def test_unknown_event_type_parses_and_is_recognisable() -> None:
    event = parse_event(json_body(event="fax_teleported", from_number=...), "application/json")
    assert event.event == "fax_teleported"
    assert not event.is_known
    assert parse_event(xml_body(event="fax_teleported"), "application/xml").is_known is False


def test_unknown_fields_are_tolerated() -> None:
    assert parse_event(json_body(priority="high"), "application/json") == EXPECTED
    assert parse_event(xml_body(priority="high"), "application/xml") == EXPECTED


@pytest.mark.parametrize("missing", ["event", "id", "from_number", "to_number", "received_at"])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_missing_required_field_names_it(missing: str, fmt: str) -> None:
    body = json_body(**{missing: ...}) if fmt == "json" else xml_body(**{missing: ...})
    with pytest.raises(ValidationError, match=f"missing required field '{missing}'") as info:
        parse_event(body, f"application/{fmt}")
    assert info.value.path == f"$.{missing}"


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"pages": "five"}, "$.pages"),
        ({"pages": True}, "$.pages"),
        ({"received_at": "yesterday"}, "$.received_at"),
        ({"id": 123}, "$.id"),
        ({"event": ["fax_received"]}, "$.event"),
    ],
)
def test_wrong_types_raise_validation_error_naming_the_field(changes: dict[str, object], path: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_event(json_body(**changes), "application/json")
    assert info.value.path == path
    assert isinstance(info.value, AudianError)


def test_xml_non_integer_pages_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="pages: expected an integer") as info:
        parse_event(xml_body(pages="5 pages"), "application/xml")
    assert info.value.path == "$.pages"


@pytest.mark.parametrize("changes", [{"id": "f" * 257}, {"id": "fax\n1"}, {"event": "e" * 65}])
def test_oversized_or_control_character_keys_are_refused(changes: dict[str, str]) -> None:
    # event and id make the de-duplication key: a megabyte-long id must not become a store key.
    with pytest.raises(ValidationError, match="longer than"):
        parse_event(json_body(**changes), "application/json")


def test_empty_id_is_refused() -> None:
    with pytest.raises(ValidationError, match="'id' is empty"):
        parse_event(json_body(id="  "), "application/json")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe\x00garbage", "malformed JSON"),
        (b"[" * 100_000, "malformed JSON"),
        (b"", "malformed JSON"),
    ],
)
def test_malformed_json_is_a_webhook_error_400(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookError, match=reason) as info:
        parse_event(body, "application/json")
    assert info.value.status_code == 400


def test_json_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValidationError, match="expected a JSON object, got list"):
        parse_event(json.dumps([1, 2]).encode(), "application/json")


@pytest.mark.parametrize(
    ("body", "error", "reason"),
    [
        (b"<event><id>x</event>", WebhookError, "malformed XML"),
        (b"", WebhookError, "malformed XML"),
        (b"<fax><id>x</id></fax>", ValidationError, "root element must be <event>"),
        (b"<event><id><b>x</b></id></event>", ValidationError, "unexpected element <b>"),
        (b"<event><id>a</id><id>b</id></event>", ValidationError, "appears twice"),
    ],
)
def test_malformed_or_misshapen_xml_is_refused(body: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        parse_event(body, "application/xml")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "multipart/form-data"])
def test_unsupported_content_type_is_415(content_type: str) -> None:
    with pytest.raises(WebhookError, match="unsupported content type") as info:
        parse_event(json_body(), content_type)
    assert info.value.status_code == 415


def test_payload_format_recognises_json_and_xml_families() -> None:
    assert payload_format("Application/JSON; charset=utf-8") == "json"
    assert payload_format("application/vnd.audian+json") == "json"
    assert payload_format("application/atom+xml") == "xml"
    assert payload_format("text/html") is None
    assert payload_format(None) is None


def test_event_header_that_contradicts_the_body_is_refused() -> None:
    with pytest.raises(WebhookError, match="does not match"):
        parse_event(json_body(), "application/json", headers={"X-Audian-Event": "fax_processed"})


def test_invalid_event_id_header_is_refused() -> None:
    with pytest.raises(WebhookError, match="X-Audian-Event-Id"):
        parse_event(json_body(), "application/json", headers={"X-Audian-Event-Id": "x" * 500})


def test_delivery_headers_helper_round_trip() -> None:
    event = parse_event(json_body(), "application/json", headers=delivery_headers(event_id="evt_9", attempt=3))
    assert (event.event_id, event.delivery_id) == ("evt_9", "dlv_evt_9_3")


@pytest.mark.parametrize("name", sorted(XML_ATTACKS))
def test_xml_attacks_are_refused_fast_with_bounded_memory(name: str) -> None:
    body = XML_ATTACKS[name]
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(WebhookError, match="DTD") as info:
            parse_event(body, "application/xml")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.status_code == 400
    assert elapsed < 1.0, f"{name} took {elapsed:.3f}s"  # an expansion would take minutes
    # Refused at the DOCTYPE: the parser holds little beyond the body itself.
    assert peak < len(body) + 256 * 1024, f"{name} peaked at {peak} bytes"
