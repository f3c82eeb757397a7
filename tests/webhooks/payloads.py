"""Webhook bodies for the tests: the reference's JSON payload, the emulator's XML shape, and attacks."""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape

REFERENCE_PAYLOAD: dict[str, Any] = {
    "event": "fax_received",
    "id": "fax_received_123",
    "from_number": "+12025551234",
    "from_name": "John Smith",
    "to_number": "+15551234567",
    "pages": 5,
    "received_at": "2024-02-04T13:15:00Z",
    "file_size": 450000,
    "format": "pdf",
    "document_url": "https://api.audian.com:8443/v2/fax/received/fax_received_123/download",
}


def payload(**changes: Any) -> dict[str, Any]:
    """The reference payload with fields changed (a value of ``...`` removes the field)."""
    out = dict(REFERENCE_PAYLOAD)
    for name, value in changes.items():
        if value is ...:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def json_body(**changes: Any) -> bytes:
    return json.dumps(payload(**changes)).encode()


def xml_body(**changes: Any) -> bytes:
    """The emulator's XML shape: the payload's fields as children of ``<event>``."""
    children = "".join(f"<{k}>{'' if v is None else escape(str(v))}</{k}>" for k, v in payload(**changes).items())
    return f'<?xml version="1.0" encoding="UTF-8"?><event>{children}</event>'.encode()


def delivery_headers(
    content_type: str = "application/json", *, event_id: str | None = "evt_1", attempt: int = 1
) -> dict[str, str]:
    headers = {"Content-Type": content_type, "X-Audian-Event": "fax_received", "X-Audian-Attempt": str(attempt)}
    if event_id is not None:
        headers["X-Audian-Event-Id"] = event_id
        headers["X-Audian-Delivery-Id"] = f"dlv_{event_id}_{attempt}"
    return headers


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<event><event>fax_received</event><id>&lol9;</id></event>"""

QUADRATIC_BLOWUP = (
    b'<?xml version="1.0"?><!DOCTYPE kaboom [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><event><event>fax_received</event><id>'
    + b"&a;" * 10_000
    + b"</id></event>"
)

XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE event [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<event><event>fax_received</event><id>&xxe;</id></event>"""

XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE event [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<event><event>fax_received</event><id>x</id></event>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE event SYSTEM "http://127.0.0.1:9/event.dtd">
<event><event>fax_received</event><id>x</id></event>"""

XML_ATTACKS = {
    "billion_laughs": BILLION_LAUGHS,
    "quadratic_blowup": QUADRATIC_BLOWUP,
    "xxe_file": XXE_FILE,
    "xxe_parameter_entity": XXE_PARAMETER,
    "external_dtd": EXTERNAL_DTD,
}
