"""Without ``opentelemetry-api`` (the ``otel`` extra not installed) everything works and reports nothing;
with it, it is imported with the first client, never with the package."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Run in a fresh interpreter where any import of opentelemetry fails, as when it is not installed.
_WITHOUT = textwrap.dedent(
    """
    import importlib.abc, json, sys, tempfile

    class NoOpenTelemetry(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())

    import anyio
    from audian_fax_async import FaxClient, RetryPolicy, TelemetryOptions
    from audian_fax_async.emulator import EmulatorConfig, EmulatorThread
    from audian_fax_async.webhooks import WebhookReceiver

    async def no_sleep(_):
        await anyio.sleep(0)

    async def main(emulator, admin):
        admin.script("download", [503, "drop"], key="k")
        admin.script("list", [500], key="k")
        options = TelemetryOptions(sender_numbers=True)
        policy = RetryPolicy(sleep=no_sleep)
        async with FaxClient("k", base_url=emulator.base_url, retry_policy=policy, telemetry=options) as client:
            page = await client.received.list(limit=5)
            with tempfile.TemporaryDirectory() as folder:
                async with client.received.download_all(folder) as outcomes:
                    kinds = [outcome.kind.value async for outcome in outcomes]
            async with client.received.stream(page.faxes[0].id) as chunks:
                streamed = sum([len(chunk) async for chunk in chunks])

        async def on_event(event):
            pass

        receiver = WebhookReceiver(on_event)
        body = json.dumps({"event": "fax_received", "id": "f1", "from_number": "+12025550100",
                           "to_number": "+15551234567", "pages": 1, "received_at": "2026-01-01T00:00:00Z"}).encode()
        answer = await receiver.handle(body, {"content-type": "application/json"})
        return kinds, streamed, answer.status_code

    with EmulatorThread(EmulatorConfig(faxes=6, seed=3)) as emulator, emulator.admin() as admin:
        kinds, streamed, status = anyio.run(main, emulator, admin, backend=sys.argv[1])
    loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
    print(json.dumps({"kinds": kinds, "streamed": streamed, "status": status, "loaded": loaded}))
    """
)

_IMPORTS = textwrap.dedent(
    """
    import json, sys
    import audian_fax_async
    at_import = any(name.startswith("opentelemetry") for name in sys.modules)
    audian_fax_async.FaxClient("k", base_url="http://127.0.0.1:9/v2")
    print(json.dumps([at_import, "opentelemetry.trace" in sys.modules, "opentelemetry.sdk" in sys.modules]))
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_without_the_opentelemetry_api_every_call_works_and_nothing_is_imported(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT, backend], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["kinds"] == ["downloaded"] * 6
    assert result["streamed"] > 0 and result["status"] == 200
    assert result["loaded"] == []


def test_the_api_is_imported_with_the_first_client_not_with_the_package_and_never_the_sdk() -> None:
    done = subprocess.run([sys.executable, "-c", _IMPORTS], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == [False, True, False]
