"""What importing the package and making a client load, checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import sys
import audian_fax_async
names = ("audian_fax_async.resources.received", "audian_fax_async._bulk", "httpcore2", "caio.linux_aio_asyncio")
lazy = [name for name in names if name in sys.modules]
audian_fax_async.FaxClient("sk_test_0123456789abcdef", base_url="http://127.0.0.1:9/v2")
loaded = [name for name in names if name in sys.modules]
print(lazy, loaded)
"""


def test_the_resources_load_with_the_first_client_not_with_the_package_nor_inside_the_loop() -> None:
    # httpcore2 (with anyio and trio) and caio (kernel AIO for bulk commits, Linux) load with the
    # first client too: neither at ``import audian_fax_async`` nor inside the first download_all.
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    expected = ["audian_fax_async.resources.received", "audian_fax_async._bulk", "httpcore2"]
    if sys.platform.startswith("linux"):
        expected.append("caio.linux_aio_asyncio")
    assert out.stdout.strip() == f"[] {expected}"
