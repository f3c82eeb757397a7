"""A bulk download's OpenTelemetry spans and metrics, printed by the SDK's console exporters.

Needs the ``otel`` extra and the OpenTelemetry SDK (``pip install 'audian-fax-async[otel]'
opentelemetry-sdk``). On its own it starts an emulator with a few faxes and two faults, so the
spans show retries::

    python examples/observability.py archive/

With ``AUDIAN_BASE_URL`` (and ``AUDIAN_API_KEY``) set it downloads from that API instead. The SDK
reports to the global providers: configuring them, as below, is all it takes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

import anyio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from audian_fax_async import FaxClient


def configure_opentelemetry() -> tuple[TracerProvider, MeterProvider]:
    """Spans printed as they end; metrics printed when the meter provider shuts down."""
    resource = Resource.create({"service.name": "fax-archiver"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


@contextlib.contextmanager
def api() -> Iterator[tuple[str | None, str | None]]:
    """The API to use: ``AUDIAN_BASE_URL`` if set, else an emulator of our own (key ``demo``)."""
    if os.environ.get("AUDIAN_BASE_URL"):
        yield None, None  # FaxClient reads AUDIAN_API_KEY and AUDIAN_BASE_URL
        return
    from audian_fax_async.emulator import EmulatorConfig, EmulatorThread

    with EmulatorThread(EmulatorConfig(faxes=6, seed=1)) as emulator, emulator.admin() as admin:
        admin.script("download", [503, "drop"], key="demo")  # two retries, one resumed download
        yield "demo", emulator.base_url


async def archive(dest: str, key: str | None, base_url: str | None) -> int:
    async with (
        FaxClient(key, base_url=base_url) as client,
        client.received.download_all(dest) as outcomes,
    ):
        return len([outcome async for outcome in outcomes if outcome.ok])


def main(dest: str) -> int:
    tracer_provider, meter_provider = configure_opentelemetry()
    with api() as (key, base_url):
        saved = anyio.run(archive, dest, key, base_url)
    tracer_provider.shutdown()
    meter_provider.shutdown()  # prints the metrics
    print(f"{saved} faxes saved in {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="faxes-")))
