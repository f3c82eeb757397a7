"""One CLIENT span per API call: its name, its HTTP attributes, its retries, its errors, and the
``traceparent`` it sends (only while a recording span is current)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from audian_fax_async import FaxClient, NotFoundError, TelemetryOptions
from audian_fax_async._telemetry import operation_name
from audian_fax_async._telemetry_otel import _Call
from audian_fax_async.emulator import AdminClient, Emulator

from .conftest import RecordingTransport, Telemetry, all_values, attrs, make_client


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "fax/received", "received.list"),
        ("GET", "/fax/received/", "received.list"),
        ("GET", "fax/received/fax_1", "received.get"),
        ("PUT", "fax/received/fax_1", "received.update"),
        ("POST", "fax/received/fax_1/archive", "received.archive"),
        ("GET", "fax/received/fax_1/download", "received.download"),
        ("POST", "fax/webhooks", "webhooks.create"),
        ("POST", "fax/routing", "routing.create"),
        ("POST", "fax/numbers", "numbers.request"),
        ("GET", "fax/received?limit=5", "received.list"),
        ("DELETE", "fax/received/fax_1", "DELETE"),
        ("GET", "fax/something/else", "GET"),
    ],
)
def test_a_call_is_named_after_the_sdk_method_it_belongs_to(method: str, path: str, name: str) -> None:
    assert operation_name(method, path) == name


async def test_each_call_is_a_client_span_with_the_http_attributes_and_never_the_query(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry
) -> None:
    [fax] = admin.inject(key, count=1, pages=1, from_number="+12025550199")
    async with make_client(emulator, key, otel) as client:
        await client.received.list(limit=5, from_number="+12025550199", to_date=datetime.now(UTC))
        await client.received.get(fax["id"])
        await client.received.mark_processed(fax["id"])
        await client.received.archive(fax["id"])
        await client.webhooks.create(url="https://hooks.example/fax", events=["fax_received"])
        await client.request("GET", "fax/received", params={"limit": 1})
    names = [s.name for s in otel.spans()]
    calls = ["received.list", "received.get", "received.update", "received.archive", "webhooks.create"]
    assert names == [*calls, "received.list"]
    base = client.base_url
    for span in otel.spans():
        attributes = attrs(span)
        assert span.kind is SpanKind.CLIENT and span.parent is None
        assert attributes["server.address"] == base.host == "127.0.0.1" and attributes["server.port"] == base.port
        assert str(attributes["url.path"]).startswith(base.path) and "?" not in str(attributes["url.path"])
        assert attributes["http.response.status_code"] in (200, 201, 204)
        assert attributes["audian.attempts"] == 1 and attributes["audian.request_id"]
        assert all(key not in v and "2025550199" not in v for v in all_values(span))
    assert [s.attributes["http.request.method"] for s in otel.spans()[:4]] == ["GET", "GET", "PUT", "POST"]  # type: ignore[index]


async def test_retries_are_events_and_a_final_error_sets_error_type(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry
) -> None:
    [fax] = admin.inject(key, count=1, pages=1)
    admin.script("get", [503, {"status": 429, "retry_after": 0}], key=key)
    async with make_client(emulator, key, otel) as client:
        await client.received.get(fax["id"])
        with pytest.raises(NotFoundError) as caught:
            await client.received.get("fax_received_missing")
    ok, missing = otel.spans("received.get")
    assert attrs(ok)["audian.attempts"] == 3
    events = [(e.name, dict(e.attributes or {})) for e in ok.events]
    assert [(name, a["audian.retry.reason"], a["audian.retry.attempt"]) for name, a in events] == [
        ("audian.retry", "503", 1),
        ("audian.retry", "429", 2),
    ]
    assert all(isinstance(a["audian.retry.delay"], float) and a["audian.retry.delay"] > 0 for _, a in events)
    assert ok.status.status_code is StatusCode.UNSET
    assert missing.status.status_code is StatusCode.ERROR
    assert attrs(missing)["error.type"] == "404" and attrs(missing)["http.response.status_code"] == 404
    assert attrs(missing)["audian.request_id"] == caught.value.request_id
    assert otel.total("audian.retries", **{"audian.operation": "received.get"}) == 2


async def test_traceparent_goes_out_while_a_recording_span_is_current_and_not_otherwise(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry, tmp_path: Path
) -> None:
    [fax] = admin.inject(key, count=1, pages=1)
    transport = RecordingTransport()
    async with make_client(emulator, key, otel, transport=transport) as client:
        await client.received.get(fax["id"])
        await client.received.download(fax["id"], tmp_path)
    get, get_in_download, download = otel.spans()
    assert [get.name, get_in_download.name, download.name] == ["received.get", "received.get", "received.download"]
    sent = [h.get("traceparent") for h in transport.sent]
    spans = [get, get_in_download, download]
    assert sent == [f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}-{s.context.trace_flags:02x}" for s in spans]

    quiet = RecordingTransport()
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    options = TelemetryOptions(tracer_provider=unsampled, meter_provider=otel.meter_provider)
    async with FaxClient(key, base_url=emulator.base_url, transport=quiet, telemetry=options) as client:
        await client.received.get(fax["id"])
        await client.received.download(fax["id"], tmp_path / "again.pdf")
    assert [h.get("traceparent") for h in quiet.sent] == [None, None]
    assert len(otel.spans()) == 3  # the unsampled client's spans went nowhere


async def test_no_attribute_is_built_for_a_span_that_does_not_record(
    emulator: Emulator, admin: AdminClient, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [fax] = admin.inject(key, count=1, pages=1)

    def refuse(self: object) -> dict[str, object]:
        raise AssertionError("attributes built for a span nobody records")

    monkeypatch.setattr(_Call, "start_attributes", refuse)
    options = TelemetryOptions(tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    async with FaxClient(key, base_url=emulator.base_url, telemetry=options) as client:
        assert (await client.received.get(fax["id"])).id == fax["id"]
    async with FaxClient(key, base_url=emulator.base_url, telemetry=Telemetry().options) as client:
        with pytest.raises(AssertionError, match="nobody records"):
            await client.received.get(fax["id"])


async def test_a_senders_number_is_on_a_download_span_only_when_asked_for(
    emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    [fax] = admin.inject(key, count=1, pages=1, from_number="+12025550142")
    found = {}
    for opt_in in (False, True):
        otel = Telemetry(sender_numbers=opt_in)
        async with make_client(emulator, key, otel) as client:
            await client.received.download(fax["id"], f"{tmp_path}/{opt_in}/")  # a folder: the fax is fetched
        [download] = otel.spans("received.download")
        found[opt_in] = attrs(download).get("audian.fax.from_number")
        otel.shutdown()
    assert found == {False: None, True: "+12025550142"}


async def test_a_stream_is_a_span_current_while_it_is_read_with_its_retries(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry
) -> None:
    [fax] = admin.inject(key, count=1, pages=1)
    admin.script("download", ["drop"], key=key)
    async with make_client(emulator, key, otel) as client, client.received.stream(fax["id"]) as chunks:
        size = sum([len(chunk) async for chunk in chunks])
        inside = trace.get_current_span().get_span_context().span_id
    [stream] = otel.spans("received.stream")
    assert stream.context.span_id == inside and stream.kind is SpanKind.CLIENT
    assert attrs(stream)["audian.attempts"] == 2 and [e.name for e in stream.events] == ["audian.retry"]
    assert attrs(stream)["audian.download.bytes"] == size == fax["file_size"]
    assert attrs(stream)["audian.download.resumed"] is True and attrs(stream)["http.response.status_code"] == 206
    assert otel.total("audian.download.bytes") == size and otel.total("audian.downloads.in_flight") == 0
    [slot_wait] = otel.points("audian.download.slot_wait")
    assert slot_wait.count == 1


async def test_the_calls_made_under_an_applications_span_are_its_children(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry, tmp_path: Path
) -> None:
    [fax] = admin.inject(key, count=1, pages=1)
    async with make_client(emulator, key, otel) as client:
        with otel.tracer_provider.get_tracer("app").start_as_current_span("handle fax") as parent:
            await client.received.download(fax["id"], tmp_path)
        await client.received.get(fax["id"])
    get_in_download, after, download = otel.spans("received.get") + otel.spans("received.download")
    for child in (get_in_download, download):
        assert child.parent is not None and child.parent.span_id == parent.get_span_context().span_id
    assert after.parent is None  # the application's span had ended: the SDK left no context behind


async def test_clients_of_different_options_on_one_meter_provider_are_all_counted(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry, tmp_path: Path
) -> None:
    faxes = admin.inject(key, count=2, pages=1)
    other = TelemetryOptions(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, sender_numbers=True
    )
    second = FaxClient(key, base_url=emulator.base_url, telemetry=other)
    async with make_client(emulator, key, otel) as first, second:
        await first.received.download(faxes[0]["id"], tmp_path)
        await second.received.download(faxes[1]["id"], tmp_path)
    assert otel.total("audian.download.bytes") == sum(f["file_size"] for f in faxes)
    assert otel.total("audian.downloads.in_flight") == 0
    assert [p.count for p in otel.points("audian.download.duration")] == [2]
