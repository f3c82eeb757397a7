"""Without ``telemetry=``, a client reports to the global providers, also those set after it was made.

In a fresh interpreter: the global providers can be set once per process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import json, os, tempfile, anyio
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from audian_fax_async import FaxClient
    from audian_fax_async.emulator import EmulatorConfig, EmulatorThread

    async def main(emulator):
        client = FaxClient("k", base_url=emulator.base_url)
        await client.received.list(limit=1)  # before any provider: the API's no-ops
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        async with client:
            page = await client.received.list(limit=1)
            with tempfile.TemporaryDirectory() as folder:
                await client.received.download(page.faxes[0].id, os.path.join(folder, "a.pdf"))
        names = [span.name for span in exporter.get_finished_spans()]
        found = {m.name for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics}
        return names, sorted(found)

    with EmulatorThread(EmulatorConfig(faxes=2, seed=5)) as emulator:
        print(json.dumps(anyio.run(main, emulator)))
    """
)


def test_a_client_made_before_the_global_providers_reports_to_them() -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    names, found = json.loads(done.stdout)
    assert names == ["received.list", "received.download"]
    assert {"audian.download.bytes", "audian.download.duration", "audian.downloads.in_flight"} <= set(found)
