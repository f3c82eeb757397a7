"""A ``download_all`` of 50 faxes under injected faults, as spans and metrics: the tree, the counts,
and the retries the emulator saw."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.trace import SpanKind, StatusCode

from audian_fax_async import OutcomeKind
from audian_fax_async.emulator import AdminClient, Emulator

from .conftest import Telemetry, all_values, attrs, make_client

FAXES = 50
DOWNLOAD_FAULTS = [500, "drop", {"status": 429, "retry_after": 0}, "truncate", 503]


def requests(admin: AdminClient, key: str, route: str) -> int:
    return sum(admin.stats(key)["requests"].get(route, {}).values())


async def test_a_bulk_run_is_one_span_over_its_listing_downloads_markings_and_retries(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry, tmp_path: Path
) -> None:
    faxes = admin.inject(key, count=FAXES, pages=1)
    admin.script("list", [503], key=key)
    admin.script("download", DOWNLOAD_FAULTS, key=key)
    admin.script("update", [502], key=key)
    async with make_client(emulator, key, otel) as client:
        run = client.received.download_all(tmp_path, after="processed", page_size=20)
        async with run as outcomes:
            done = [outcome async for outcome in outcomes]
    assert {o.kind for o in done} == {OutcomeKind.DOWNLOADED} and len(done) == FAXES

    [bulk] = otel.spans("received.download_all")
    lists, downloads, updates = (otel.spans(n) for n in ("received.list", "received.download", "received.update"))
    assert len(downloads) == FAXES and len(updates) == FAXES and len(lists) >= FAXES // 20
    assert len(otel.spans()) == 1 + len(lists) + 2 * FAXES  # nothing else
    # The tree: every call of the run is a child of the run's span, in its trace.
    assert bulk.parent is None and bulk.kind is SpanKind.INTERNAL
    for span in lists + downloads + updates:
        assert span.parent is not None and span.parent.span_id == bulk.context.span_id
        assert span.context.trace_id == bulk.context.trace_id
        assert span.kind is SpanKind.CLIENT and span.status.status_code is not StatusCode.ERROR
    assert {attrs(d)["audian.fax.id"] for d in downloads} == {f["id"] for f in faxes}
    assert attrs(bulk)["audian.bulk.downloaded"] == FAXES
    assert attrs(bulk)["audian.bulk.retries"] == run.progress.retries == len(DOWNLOAD_FAULTS) + 2

    # Each span's attempts are what the emulator answered; each retry is an event on its call's span.
    for route, spans in (("list", lists), ("download", downloads), ("update", updates)):
        attempts = [int(attrs(s)["audian.attempts"]) for s in spans]
        assert sum(attempts) == requests(admin, key, route), route
        assert [len(s.events) for s in spans] == [n - 1 for n in attempts]
    events = [e for s in otel.spans() for e in s.events]
    assert all(e.name == "audian.retry" for e in events) and len(events) == len(DOWNLOAD_FAULTS) + 2
    reasons = sorted(str(e.attributes["audian.retry.reason"]) for e in events if e.attributes)
    assert {"500", "429", "503", "502"} <= set(reasons)
    for download in downloads:
        attributes = attrs(download)
        assert attributes["http.request.method"] == "GET" and attributes["http.response.status_code"] in (200, 206)
        assert str(attributes["url.path"]).endswith(f"/fax/received/{attributes['audian.fax.id']}/download")
        assert attributes["audian.download.bytes"] == (tmp_path / f"{attributes['audian.fax.id']}.pdf").stat().st_size
        assert isinstance(attributes["audian.download.slot_wait"], float) and attributes["audian.request_id"]
    assert sum(bool(attrs(d)["audian.download.resumed"]) for d in downloads) <= 2

    # The metrics agree with the spans and with the emulator.
    assert otel.total("audian.downloads.in_flight") == 0
    assert otel.total("audian.bulk.outcomes", **{"audian.outcome": "downloaded"}) == FAXES
    assert otel.total("audian.bulk.outcomes") == FAXES
    assert otel.total("audian.download.bytes") == sum(o.bytes or 0 for o in done)
    assert otel.total("audian.retries") == len(events)
    assert otel.total("audian.retries", **{"audian.operation": "received.download"}) == len(DOWNLOAD_FAULTS)
    assert otel.total("audian.retries", **{"audian.retry.reason": "502"}) == 1
    [duration] = otel.points("audian.download.duration")
    assert duration.count == FAXES
    [slot_wait] = otel.points("audian.download.slot_wait")
    assert slot_wait.count == requests(admin, key, "download")

    # Nothing of the key, nor of a sender's number, in any span.
    numbers = {f["from_number"] for f in faxes}
    for span in otel.spans():
        for value in all_values(span):
            assert key not in value
            assert not any(number in value for number in numbers)


async def test_a_failed_fax_is_an_error_span_and_a_failed_outcome(
    emulator: Emulator, admin: AdminClient, key: str, otel: Telemetry, tmp_path: Path
) -> None:
    admin.inject(key, count=3, pages=1)
    admin.script("download", [404], key=key)
    async with make_client(emulator, key, otel) as client, client.received.download_all(tmp_path) as outcomes:
        kinds = sorted([o.kind.value async for o in outcomes])
    assert kinds == ["downloaded", "downloaded", "failed"]
    [failed] = [s for s in otel.spans("received.download") if s.status.status_code is StatusCode.ERROR]
    assert attrs(failed)["error.type"] == "404" and attrs(failed)["http.response.status_code"] == 404
    assert "audian.download.bytes" not in attrs(failed) and attrs(failed)["audian.attempts"] == 1
    assert otel.total("audian.bulk.outcomes", **{"audian.outcome": "failed"}) == 1
    assert otel.total("audian.downloads.in_flight") == 0
    durations = {p.attributes.get("error.type"): p.count for p in otel.points("audian.download.duration")}
    assert durations == {None: 2, "404": 1}
