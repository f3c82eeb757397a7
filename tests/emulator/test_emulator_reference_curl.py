"""The reference's own curl commands, verbatim but for the host, work against the emulator."""

from __future__ import annotations

import io
import shlex
import shutil
import subprocess
from pathlib import Path

import pypdf
import pytest

from audian_fax_async.emulator import AdminClient, Emulator

# Copied from the API reference (receive-fax-api.txt), in its order.
REFERENCE_COMMANDS = [
    """curl -X GET "https://api.audian.com:8443/v2/fax/received?limit=20&offset=0" \\
-H "X-Auth-Token: YOUR_API_KEY\"""",
    """curl -X GET "https://api.audian.com:8443/v2/fax/received?from_date=2024-01-28T00:00:00Z" \\
-H "X-Auth-Token: YOUR_API_KEY\"""",
    """curl -X GET https://api.audian.com:8443/v2/fax/received/fax_received_123 \\
-H "X-Auth-Token: YOUR_API_KEY\"""",
    """curl -X GET https://api.audian.com:8443/v2/fax/received/fax_received_123/download \\
-H "X-Auth-Token: YOUR_API_KEY" \\
-o received_fax.pdf""",
    """curl -X POST https://api.audian.com:8443/v2/fax/webhooks \\
-H "X-Auth-Token: YOUR_API_KEY" \\
-H "Content-Type: application/json" \\
-d '{
"url": "https://your-domain.com/webhook/fax",
"events": ["fax_received"],
"enabled": true,
"format": "json"
}'""",
    """curl -X POST https://api.audian.com:8443/v2/fax/routing \\
-H "X-Auth-Token: YOUR_API_KEY" \\
-H "Content-Type: application/json" \\
-d '{
"type": "email",
"destination": "receiving@company.com",
"attach_document": true,
"enabled": true
}'""",
    """curl -X POST https://api.audian.com:8443/v2/fax/routing \\
-H "X-Auth-Token: YOUR_API_KEY" \\
-H "Content-Type: application/json" \\
-d '{
"type": "webhook",
"destination": "https://your-crm.com/api/fax",
"attach_document": false,
"enabled": true
}'""",
    """curl -X PUT https://api.audian.com:8443/v2/fax/received/fax_received_123 \\
-H "X-Auth-Token: YOUR_API_KEY" \\
-H "Content-Type: application/json" \\
-d '{
"status": "processed"
}'""",
    """curl -X POST https://api.audian.com:8443/v2/fax/received/fax_received_123/archive \\
-H "X-Auth-Token: YOUR_API_KEY\"""",
    """curl -X POST https://api.audian.com:8443/v2/fax/numbers \\
-H "X-Auth-Token: YOUR_API_KEY" \\
-H "Content-Type: application/json" \\
-d '{
"area_code": "202",
"quantity": 1
}'""",
]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_reference_curl_commands_succeed_with_only_the_host_changed(
    emulator: Emulator, admin: AdminClient, tmp_path: Path
) -> None:
    admin.inject("YOUR_API_KEY", faxes=[{"id": "fax_received_123", "pages": 5, "received_at": "2024-02-04T13:15:00Z"}])
    origin = emulator.base_url.removesuffix("/v2")
    for command in REFERENCE_COMMANDS:
        args = shlex.split(command.replace("https://api.audian.com:8443", origin).replace("\\\n", " "))
        result = subprocess.run(
            [*args, "-sS", "-w", "\n%{http_code}"], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        status = result.stdout.rsplit("\n", 1)[-1]
        assert status in ("200", "201"), f"{command}\n{result.stdout}\n{result.stderr}"
    document = (tmp_path / "received_fax.pdf").read_bytes()
    assert len(pypdf.PdfReader(io.BytesIO(document)).pages) == 5
    assert admin.stats("YOUR_API_KEY")["requests"]["archive"] == {"200": 1}
