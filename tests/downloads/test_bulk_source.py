"""The bulk engine fed by a source of faxes instead of the listing (``BulkDownload(faxes=...)``), with a
slot of the caller's held around each download attempt (``download_slot=``): the hooks the mirror uses."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from audian_fax_async import BulkDownload, FaxClient, FaxStatus, ManifestEntry, OutcomeKind, ReceivedFax
from audian_fax_async.emulator import AdminClient

from .conftest import assert_matches_emulator


def bulk(client: FaxClient, dest: Path, faxes: AsyncIterator[ReceivedFax], **kwargs: object) -> BulkDownload:
    return BulkDownload(
        client,
        dest,
        filters={},
        after=None,
        path_template=None,
        on_progress=None,
        overwrite=False,
        page_size=100,
        concurrency=None,
        faxes=faxes,
        **kwargs,  # type: ignore[arg-type]
    )


def manifest_ids(dest: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (dest / ".audian-manifest.jsonl").read_text().splitlines() if line]


async def test_a_source_fax_given_again_after_its_outcome_is_skipped_and_recorded_once(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    faxes = [fax async for fax in client.received.iter()][:3]
    finished = anyio.Event()

    async def source() -> AsyncIterator[ReceivedFax]:
        for fax in faxes:
            yield fax
        await finished.wait()
        yield faxes[0]

    kinds: list[tuple[str, OutcomeKind]] = []
    async with bulk(client, tmp_path, source()) as outcomes:
        async for outcome in outcomes:
            kinds.append((outcome.fax.id, outcome.kind))
            if len(kinds) == len(faxes):
                finished.set()
        assert set(outcomes.completed) == {fax.id for fax in faxes}
    assert [kind for _, kind in kinds].count(OutcomeKind.DOWNLOADED) == 3
    assert kinds[-1] == (faxes[0].id, OutcomeKind.SKIPPED)  # its new manifest entry, not the file adopted
    assert sorted(manifest_ids(tmp_path)) == sorted(fax.id for fax in faxes)
    for fax in faxes:
        assert_matches_emulator(audian_admin, audian_api_key, fax.id, tmp_path / f"{fax.id}.pdf")


async def test_the_download_slot_is_held_around_every_attempt_of_its_fax(
    client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    faxes = [fax async for fax in client.received.iter()][:2]
    audian_admin.script("download", [503], key=audian_api_key)  # one fax needs a second attempt
    entered: list[str] = []

    class Slot:
        def __init__(self, fax_id: str) -> None:
            self.fax_id = fax_id

        async def __aenter__(self) -> None:
            entered.append(self.fax_id)

        async def __aexit__(self, *exc_info: object) -> None:
            pass

    async def source() -> AsyncIterator[ReceivedFax]:
        for fax in faxes:
            yield fax

    async with bulk(client, tmp_path, source(), download_slot=lambda fax: Slot(fax.id)) as outcomes:
        assert {o.kind async for o in outcomes} == {OutcomeKind.DOWNLOADED}
    assert set(entered) == {fax.id for fax in faxes}
    assert sorted(Counter(entered).values()) == [1, 2]  # the retried fax held it for each of its two attempts


async def test_record_appends_to_the_manifest_and_is_what_the_run_knows(client: FaxClient, tmp_path: Path) -> None:
    [fax] = [fax async for fax in client.received.iter()][:1]

    async def source() -> AsyncIterator[ReceivedFax]:
        yield fax

    async with bulk(client, tmp_path, source()) as outcomes:
        [outcome] = [o async for o in outcomes]
        entry = outcomes.completed[fax.id]
        archived = ManifestEntry(entry.id, entry.path, entry.bytes, entry.sha256, marked=FaxStatus.ARCHIVED.value)
        await outcomes.record(archived)
        assert outcomes.completed[fax.id] == archived
    assert outcome.kind is OutcomeKind.DOWNLOADED
    lines = [json.loads(line) for line in (tmp_path / ".audian-manifest.jsonl").read_text().splitlines()]
    assert [line["marked"] for line in lines] == [None, "archived"]
