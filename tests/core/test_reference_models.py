"""The reference's example responses, byte for byte, parse into the expected models."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import cattrs
import pytest
import respx

from audian_fax_async import (
    FaxClient,
    FaxPage,
    FaxStatus,
    ReceivedFax,
    ValidationError,
    WebhookEvent,
    WebhookEventType,
)
from audian_fax_async._converter import make_fax_converter, structure

from ._fakes import fax_json

# Copied from receive-fax-api.txt, "List Faxes Success (200)".
LIST_RESPONSE = """{
"faxes": [
{
"id": "fax_received_123",
"from_number": "+12025551234",
"from_name": "John Smith",
"to_number": "+15551234567",
"pages": 5,
"received_at": "2024-02-04T13:15:00Z",
"status": "received",
"format": "pdf",
"file_size": 450000,
"document_url": "https://api.audian.com:8443/v2/fax/received/fax_received_123/download",
"processed": false
}
],
"total": 5,
"limit": 20,
"offset": 0
}"""

# Copied from receive-fax-api.txt, "Get Fax Details" response.
DETAIL_RESPONSE = """{
"id": "fax_received_123",
"from_number": "+12025551234",
"from_name": "John Smith",
"to_number": "+15551234567",
"pages": 5,
"received_at": "2024-02-04T13:15:00Z",
"status": "received",
"format": "pdf",
"file_size": 450000,
"duration": 45,
"baud_rate": 14400,
"document_url": "https://api.audian.com:8443/v2/fax/received/fax_received_123/download",
"processed": false,
"created_at": "2024-02-04T13:15:00Z"
}"""

# Copied from receive-fax-api.txt, "Webhook Payload".
WEBHOOK_PAYLOAD = """{
"event": "fax_received",
"id": "fax_received_123",
"from_number": "+12025551234",
"from_name": "John Smith",
"to_number": "+15551234567",
"pages": 5,
"received_at": "2024-02-04T13:15:00Z",
"file_size": 450000,
"format": "pdf",
"document_url": "https://api.audian.com:8443/v2/fax/received/fax_received_123/download"
}"""

AT = datetime(2024, 2, 4, 13, 15, tzinfo=UTC)
DOCUMENT_URL = "https://api.audian.com:8443/v2/fax/received/fax_received_123/download"

EXPECTED_LISTED = ReceivedFax(
    id="fax_received_123",
    from_number="+12025551234",
    from_name="John Smith",
    to_number="+15551234567",
    pages=5,
    received_at=AT,
    status=FaxStatus.RECEIVED,
    format="pdf",
    file_size=450000,
    document_url=DOCUMENT_URL,
    processed=False,
)


async def test_the_reference_list_response_parses_into_a_fax_page(client: FaxClient, api: respx.MockRouter) -> None:
    api.get("/fax/received").respond(200, content=LIST_RESPONSE.encode(), content_type="application/json")

    page = await client.received.list()

    assert page == FaxPage(faxes=[EXPECTED_LISTED], total=5, limit=20, offset=0)
    assert page.faxes[0].received_at.tzinfo is UTC
    assert page.faxes[0].duration is None and page.faxes[0].created_at is None
    assert page.has_more


async def test_the_reference_detail_response_parses_with_duration_baud_rate_and_created_at(
    client: FaxClient, api: respx.MockRouter
) -> None:
    api.get("/fax/received/fax_received_123").respond(
        200, content=DETAIL_RESPONSE.encode(), content_type="application/json"
    )

    fax = await client.received.get("fax_received_123")

    assert fax == ReceivedFax(
        id="fax_received_123",
        from_number="+12025551234",
        from_name="John Smith",
        to_number="+15551234567",
        pages=5,
        received_at=AT,
        status=FaxStatus.RECEIVED,
        format="pdf",
        file_size=450000,
        duration=45,
        baud_rate=14400,
        document_url=DOCUMENT_URL,
        processed=False,
        created_at=AT,
    )
    assert fax.created_at is not None and fax.created_at.tzinfo is UTC


def test_the_reference_webhook_payload_parses_into_a_webhook_event() -> None:
    event = structure(json.loads(WEBHOOK_PAYLOAD), WebhookEvent)

    assert event == WebhookEvent(
        event=WebhookEventType.FAX_RECEIVED,
        id="fax_received_123",
        from_number="+12025551234",
        from_name="John Smith",
        to_number="+15551234567",
        pages=5,
        received_at=AT,
        file_size=450000,
        format="pdf",
        document_url=DOCUMENT_URL,
    )
    assert event.is_known
    assert event.dedupe_key == "fax_received:fax_received_123"


@pytest.mark.parametrize(
    ("text", "cls"),
    [(LIST_RESPONSE, FaxPage), (DETAIL_RESPONSE, ReceivedFax), (WEBHOOK_PAYLOAD, WebhookEvent)],
    ids=["list", "detail", "webhook"],
)
def test_a_strict_converter_accepts_every_reference_example(text: str, cls: type[Any]) -> None:
    # Drift detection: a field the reference documents but the models lack would fail here.
    strict = make_fax_converter(forbid_extra_keys=True, detailed=True)

    assert strict.structure(json.loads(text), cls) == structure(json.loads(text), cls)


def test_the_strict_converter_notices_an_undocumented_field() -> None:
    strict = make_fax_converter(forbid_extra_keys=True, detailed=True)

    with pytest.raises(cattrs.ClassValidationError) as caught:
        strict.structure({**json.loads(DETAIL_RESPONSE), "color": True}, ReceivedFax)

    assert cattrs.transform_error(caught.value) == ["extra fields found (color) @ $"]


def test_the_production_converter_ignores_unknown_fields() -> None:
    data = {**json.loads(DETAIL_RESPONSE), "color": True, "resolution": {"dpi": 200}}

    fax = structure(data, ReceivedFax)

    assert fax == structure(json.loads(DETAIL_RESPONSE), ReceivedFax)


def test_an_unknown_status_stays_a_plain_string() -> None:
    fax = structure(fax_json("fax_1", status="quarantined"), ReceivedFax)

    assert fax.status == "quarantined"
    assert type(fax.status) is str
    assert structure(fax_json("fax_1", status="processed"), ReceivedFax).status is FaxStatus.PROCESSED


def test_an_unknown_webhook_event_stays_a_plain_string() -> None:
    event = structure({**json.loads(WEBHOOK_PAYLOAD), "event": "fax_deleted"}, WebhookEvent)

    assert event.event == "fax_deleted"
    assert not event.is_known


def test_timestamps_with_offsets_become_utc() -> None:
    fax = structure(fax_json("fax_1", received_at="2024-02-04T15:15:00+02:00"), ReceivedFax)

    assert fax.received_at == AT
    assert fax.received_at.utcoffset() is not None and fax.received_at.utcoffset() == AT.utcoffset()


def _page(*faxes: dict[str, Any]) -> dict[str, Any]:
    return {"faxes": list(faxes), "total": len(faxes), "limit": 20, "offset": 0}


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (_page(fax_json("a"), _without(fax_json("b"), "received_at")), "$.faxes[1].received_at"),
        (_page(fax_json("a"), fax_json("b", pages="5")), "$.faxes[1].pages"),
        (_page(fax_json("a", received_at="yesterday")), "$.faxes[0].received_at"),
        (_page(fax_json("a", id=123)), "$.faxes[0].id"),
        (_page(fax_json("a", processed="false")), "$.faxes[0].processed"),
        (_page(fax_json("a", status=None)), "$.faxes[0].status"),
        ({**_page(), "total": "5"}, "$.total"),
        ({**_page(), "total": True}, "$.total"),
        ({**_page(), "faxes": None}, "$.faxes"),
        (_without(_page(), "total"), "$.total"),
    ],
    ids=[
        "missing-received_at",
        "str-pages",
        "bad-date",
        "int-id",
        "str-bool",
        "null-status",
        "str-total",
        "bool-total",
        "null-faxes",
        "no-total",
    ],
)
def test_a_missing_or_mistyped_field_raises_validation_error_naming_it(data: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        structure(data, FaxPage)

    assert caught.value.path == path
    assert path in str(caught.value)
    assert caught.value.model == "FaxPage"


async def test_a_mistyped_list_response_raises_validation_error_from_the_client(
    client: FaxClient, api: respx.MockRouter
) -> None:
    api.get("/fax/received").respond(200, json=_page(fax_json("a"), _without(fax_json("b"), "received_at")))

    with pytest.raises(ValidationError) as caught:
        await client.received.list()

    assert caught.value.path == "$.faxes[1].received_at"


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b"<html>502 Bad Gateway</html>", "text/html", "not valid JSON"),
        (b"", "application/json", "expected a JSON object"),
        (b'{"faxes": [', "application/json", "not valid JSON"),
    ],
    ids=["html", "empty", "truncated"],
)
async def test_a_non_json_body_raises_validation_error(
    client: FaxClient, api: respx.MockRouter, content: bytes, content_type: str, reason: str
) -> None:
    api.get("/fax/received/fax_1").respond(200, content=content, content_type=content_type)

    with pytest.raises(ValidationError, match=reason) as caught:
        await client.received.get("fax_1")

    assert caught.value.path == "$"


@pytest.mark.parametrize("body", [[], "fax", None, 5], ids=["array", "string", "null", "number"])
async def test_a_json_body_that_is_not_an_object_raises_validation_error(
    client: FaxClient, api: respx.MockRouter, body: Any
) -> None:
    api.get("/fax/received/fax_1").respond(200, json=body)

    with pytest.raises(ValidationError) as caught:
        await client.received.get("fax_1")

    assert caught.value.path == "$"


# A numbers request has bought numbers once it succeeded: an answer of another shape than the
# reference's is read as well as it can be, with a warning, never raised as an error.


async def test_a_numbers_response_without_its_envelope_is_read_with_a_warning(
    client: FaxClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    api.post("/fax/numbers").respond(201, json=[{"number": "+12025550100"}, "+12025550101"])

    with caplog.at_level(logging.WARNING, logger="audian_fax_async"):
        numbers = await client.numbers.request(area_code="202", quantity=2)

    assert [n.number for n in numbers] == ["+12025550100", "+12025550101"]
    assert "not the documented shape" in caplog.text


async def test_a_numbers_response_with_a_bad_item_keeps_the_good_ones(
    client: FaxClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    api.post("/fax/numbers").respond(201, json={"numbers": [{"number": "+12025550100"}, {"id": "num_2"}]})

    with caplog.at_level(logging.WARNING, logger="audian_fax_async"):
        numbers = await client.numbers.request(area_code="202", quantity=2)

    assert [n.number for n in numbers] == ["+12025550100"]
    assert "$[1].number" in caplog.text  # the warning says what did not fit


async def test_a_numbers_response_naming_no_number_warns_that_they_may_be_bought(
    client: FaxClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    api.post("/fax/numbers").respond(201, content=b"")

    with caplog.at_level(logging.WARNING, logger="audian_fax_async"):
        assert await client.numbers.request(area_code="202") == []

    assert "may have been bought" in caplog.text
