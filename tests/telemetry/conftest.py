"""Fixtures of the telemetry tests: local OpenTelemetry SDK providers (never the global ones) whose
spans and metrics stay in memory, an emulator of their own, and clients that never sleep."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from audian_fax_async import FaxClient, RetryPolicy, TelemetryOptions
from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig, EmulatorThread


async def no_sleep(_: float) -> None:
    """Retries go at once: the emulator's scripted faults do not depend on time."""
    await anyio.sleep(0)


class Telemetry:
    """A tracer provider and a meter provider of the test's own, and what they recorded."""

    def __init__(self, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.options = TelemetryOptions(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        """The data points of ``metric`` (cumulative since the provider was made)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        found.extend(item.data.data_points)
        return found

    def total(self, metric: str, **attributes: object) -> float:
        """The sum of a counter's points whose attributes include ``attributes``."""
        return float(sum(p.value for p in self.points(metric) if attributes.items() <= dict(p.attributes).items()))

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.shutdown()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """No generated faxes: each test injects small ones (one page) into its own account."""
    with EmulatorThread(EmulatorConfig(faxes=0, seed=19, time_scale=1e-5)) as emu:
        yield emu


@pytest.fixture
def admin(emulator: Emulator) -> Iterator[AdminClient]:
    with emulator.admin() as client:
        client.reset()
        yield client


@pytest.fixture
def key() -> str:
    return "test_" + secrets.token_hex(8)


class RecordingTransport(httpx2.AsyncBaseTransport):
    """httpx2's own transport, keeping the headers of every request as sent."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.sent: list[httpx2.Headers] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append(request.headers.copy())
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_client(emulator: Emulator, key: str, otel: Telemetry | None, **kwargs: Any) -> FaxClient:
    return FaxClient(
        key,
        base_url=emulator.base_url,
        retry_policy=RetryPolicy(max_retries=6, sleep=no_sleep),
        telemetry=otel.options if otel is not None else None,
        **kwargs,
    )


def attrs(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes (an empty dict for none)."""
    return dict(span.attributes or {})


def all_values(span: ReadableSpan) -> list[str]:
    """Every string a span carries: its name, attribute values, events' names and attribute values."""
    out = [span.name, *(str(v) for v in (span.attributes or {}).values())]
    for event in span.events:
        out += [event.name, *(str(v) for v in (event.attributes or {}).values())]
    return out
