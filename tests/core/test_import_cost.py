"""What importing the package and making a client load, checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = """
import json, sys
names = ("httpcore2", "h11", "aiohttp", "redis", "starlette", "uvicorn", "click", "rich", "caio")
import audian_fax_async
after_import = [name for name in names if name in sys.modules]
audian_fax_async.FaxClient("sk_test_0123456789abcdef", base_url="http://127.0.0.1:9/v2")
after_client = [name for name in names if name in sys.modules]
print(json.dumps([after_import, after_client]))
"""


def test_the_package_loads_no_extra_and_the_http_stack_only_with_the_first_client() -> None:
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    after_import, after_client = json.loads(out.stdout)
    # The optional extras (aiohttp, redis, the emulator's and the CLI's) load only when used; the
    # connection pool (httpcore2, h11) with the first client's transport.
    assert after_import == []
    assert after_client == ["httpcore2", "h11"]
