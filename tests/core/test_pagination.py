"""``received.iter`` yields every fax that matched when the walk began exactly once, while the inbox changes.

The fake inbox implements the API's list semantics; the naive offset walks at the end prove it
reproduces both drift problems, so the keyset walk's passing is meaningful.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import respx

from audian_fax_async import FaxClient, ReceivedFax
from audian_fax_async._converter import structure
from audian_fax_async._pagination import KeysetWalk

from ._fakes import T0, FakeInbox, fax_json


@pytest.fixture
def inbox(api: respx.MockRouter) -> FakeInbox:
    fake = FakeInbox()
    fake.mount(api)
    return fake


def arrive_after_each_page(count: int) -> tuple[list[str], Callable[[FakeInbox], None]]:
    """An ``after_list`` hook that adds ``count`` new newest faxes after every page, and their ids."""
    arrived: list[str] = []

    def hook(inbox: FakeInbox) -> None:
        arrived.extend(inbox.add_many(count, start=inbox.newest() + timedelta(seconds=1), prefix="new"))

    return arrived, hook


async def naive_offset_walk(client: FaxClient, page_size: int, **filters: str) -> list[str]:
    """What a user would write without ``iter``: offset += limit until a short page."""
    ids: list[str] = []
    offset = 0
    while True:
        page = await client.received.list(page_size, offset, **filters)  # type: ignore[arg-type]
        ids.extend(fax.id for fax in page.faxes)
        if len(page.faxes) < page_size:
            return ids
        offset += page_size


def newest_first(inbox: FakeInbox, ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda i: (inbox.faxes[i]["received_at"], i), reverse=True)


# -- the fake itself ---------------------------------------------------------------------------


async def test_the_fake_inbox_lists_newest_first_with_inclusive_bounds_filters_and_total(
    client: FaxClient, inbox: FakeInbox
) -> None:
    ids = inbox.add_many(6)  # fax_0000 at T0 ... fax_0005 at T0+5min
    inbox.set_status(ids[4], "processed")

    page = await client.received.list(
        2, 1, from_date=T0 + timedelta(minutes=1), to_date=T0 + timedelta(minutes=5), status="received"
    )

    # Matches, newest first: fax_0005, fax_0003, fax_0002, fax_0001 (fax_0004 is processed).
    assert [f.id for f in page.faxes] == ["fax_0003", "fax_0002"]
    assert (page.total, page.limit, page.offset) == (4, 2, 1)


# -- case A: faxes arrive during the walk ------------------------------------------------------


async def test_iter_yields_each_original_fax_once_while_new_faxes_arrive(client: FaxClient, inbox: FakeInbox) -> None:
    original = inbox.add_many(23)
    arrived, hook = arrive_after_each_page(3)
    inbox.after_list = hook

    ids = [fax.id async for fax in client.received.iter(page_size=5)]

    assert ids == newest_first(inbox, original)
    assert arrived and not set(arrived) & set(ids)
    assert len(inbox.list_requests) >= 5


async def test_a_naive_offset_walk_repeats_faxes_when_new_ones_arrive(client: FaxClient, inbox: FakeInbox) -> None:
    original = inbox.add_many(23)
    _, hook = arrive_after_each_page(3)
    inbox.after_list = hook

    ids = await naive_offset_walk(client, 5)

    repeated = [fax_id for fax_id, n in Counter(ids).items() if n > 1]
    assert repeated, "the fake must reproduce the duplicates that offset paging suffers"
    assert set(original) - set(ids) == set()


# -- case B: faxes leave a status filter during the walk ---------------------------------------


async def test_iter_yields_each_received_fax_once_while_the_loop_marks_them_processed(
    client: FaxClient, inbox: FakeInbox
) -> None:
    original = inbox.add_many(23)
    already_done = original[::7]
    for fax_id in already_done:
        inbox.set_status(fax_id, "processed")
    to_walk = [i for i in original if i not in already_done]

    ids = []
    async for fax in client.received.iter(page_size=5, status="received"):
        ids.append(fax.id)
        await client.received.mark_processed(fax.id)

    assert ids == newest_first(inbox, to_walk)
    assert all(inbox.faxes[i]["status"] == "processed" for i in original)


async def test_a_naive_offset_walk_skips_faxes_marked_processed_during_the_walk(
    client: FaxClient, inbox: FakeInbox
) -> None:
    original = inbox.add_many(23)

    ids = []
    offset = 0
    while True:
        page = await client.received.list(5, offset, status="received")
        for fax in page.faxes:
            ids.append(fax.id)
            await client.received.mark_processed(fax.id)
        if len(page.faxes) < 5:
            break
        offset += 5

    assert set(original) - set(ids), "the fake must reproduce the skips that offset paging suffers"


async def test_iter_survives_arrivals_and_processing_at_once(client: FaxClient, inbox: FakeInbox) -> None:
    original = inbox.add_many(31)
    arrived, hook = arrive_after_each_page(2)
    inbox.after_list = hook

    ids = []
    async for fax in client.received.iter(page_size=4, status="received"):
        ids.append(fax.id)
        await client.received.mark_processed(fax.id)

    assert ids == newest_first(inbox, original)
    assert not set(arrived) & set(ids)


# -- ties: many faxes share one received_at ----------------------------------------------------


async def test_iter_yields_every_fax_once_when_more_faxes_than_a_page_share_a_timestamp(
    client: FaxClient, inbox: FakeInbox
) -> None:
    older = inbox.add_many(3, start=T0 - timedelta(hours=1))
    tied = inbox.add_many(11, step=timedelta(0))
    newer = inbox.add_many(2, start=T0 + timedelta(hours=1))

    ids = [fax.id async for fax in client.received.iter(page_size=4)]

    assert ids == newest_first(inbox, older + tied + newer)


@pytest.mark.parametrize("page_size", [1, 2, 3, 5, 7, 100])
async def test_iter_yields_every_fax_once_for_any_page_size_over_clustered_timestamps(
    client: FaxClient, inbox: FakeInbox, page_size: int
) -> None:
    expected: list[str] = []
    for cluster, size in enumerate([1, 4, 2, 6, 1, 3]):
        expected += inbox.add_many(size, start=T0 + timedelta(minutes=cluster), step=timedelta(0))

    ids = [fax.id async for fax in client.received.iter(page_size=page_size)]

    assert ids == newest_first(inbox, expected)


async def test_iter_with_ties_survives_arrivals(client: FaxClient, inbox: FakeInbox) -> None:
    tied = inbox.add_many(9, step=timedelta(0))
    older = inbox.add_many(4, start=T0 - timedelta(minutes=10))
    arrived, hook = arrive_after_each_page(2)
    inbox.after_list = hook

    ids = [fax.id async for fax in client.received.iter(page_size=3)]

    assert ids == newest_first(inbox, tied + older)
    assert not set(arrived) & set(ids)


async def test_iter_respects_the_callers_date_bounds(client: FaxClient, inbox: FakeInbox) -> None:
    ids = inbox.add_many(10)

    walked = [
        fax.id
        async for fax in client.received.iter(
            page_size=2, from_date=T0 + timedelta(minutes=2), to_date=T0 + timedelta(minutes=7)
        )
    ]

    assert walked == newest_first(inbox, ids[2:8])
    assert all(params["from_date"] == "2024-02-04T13:17:00Z" for params in inbox.list_requests)


async def test_iter_over_an_empty_inbox_makes_one_request(client: FaxClient, inbox: FakeInbox) -> None:
    assert [fax async for fax in client.received.iter()] == []
    assert len(inbox.list_requests) == 1


# -- ties while faxes leave the filter ---------------------------------------------------------


@pytest.mark.parametrize("page_size", [2, 3, 4, 10])
async def test_iter_yields_every_tied_fax_once_while_the_loop_marks_them_processed(
    client: FaxClient, inbox: FakeInbox, page_size: int
) -> None:
    older = inbox.add_many(5, start=T0 - timedelta(minutes=5))
    tied = inbox.add_many(13, step=timedelta(0))
    newer = inbox.add_many(3, start=T0 + timedelta(minutes=5))
    expected = newest_first(inbox, older + tied + newer)

    ids = []
    async for fax in client.received.iter(page_size=page_size, status="received"):
        ids.append(fax.id)
        await client.received.mark_processed(fax.id)

    assert ids == expected


async def test_iter_yields_every_tied_fax_once_when_only_some_are_marked_processed(
    client: FaxClient, inbox: FakeInbox
) -> None:
    tied = inbox.add_many(17, step=timedelta(0))
    older = inbox.add_many(4, start=T0 - timedelta(minutes=5))
    expected = newest_first(inbox, tied + older)

    ids = []
    async for fax in client.received.iter(page_size=4, status="received"):
        ids.append(fax.id)
        if len(ids) % 3 == 0:
            await client.received.mark_processed(fax.id)

    assert ids == expected


async def test_a_naive_offset_walk_skips_tied_faxes_marked_processed(client: FaxClient, inbox: FakeInbox) -> None:
    tied = inbox.add_many(13, step=timedelta(0))

    ids = []
    offset = 0
    while True:
        page = await client.received.list(4, offset, status="received")
        for fax in page.faxes:
            ids.append(fax.id)
            await client.received.mark_processed(fax.id)
        if len(page.faxes) < 4:
            break
        offset += 4

    assert set(tied) - set(ids)


@pytest.mark.parametrize("seed", range(40))
async def test_iter_yields_every_original_fax_once_over_random_inboxes_and_consumers(
    client: FaxClient, inbox: FakeInbox, seed: int
) -> None:
    rng = random.Random(seed)
    for cluster in range(rng.randint(1, 8)):
        inbox.add_many(rng.choice([1, 1, 2, 3, 7, 12]), start=T0 + timedelta(minutes=cluster), step=timedelta(0))
    for fax_id in rng.sample(sorted(inbox.faxes), k=len(inbox.faxes) // 4):
        inbox.set_status(fax_id, "processed")
    status = rng.choice([None, "received"])
    expected = newest_first(inbox, [i for i, f in inbox.faxes.items() if status is None or f["status"] == status])
    mark_ratio = rng.choice([0.0, 0.5, 1.0])
    if rng.random() < 0.5:
        _, hook = arrive_after_each_page(rng.randint(1, 3))
        inbox.after_list = hook

    ids = []
    filters = {"status": status} if status else {}
    async for fax in client.received.iter(page_size=rng.randint(2, 6), **filters):  # type: ignore[arg-type]
        ids.append(fax.id)
        if rng.random() < mark_ratio:
            await client.received.mark_processed(fax.id)

    assert ids == expected


# -- KeysetWalk, pure --------------------------------------------------------------------------


def fax(fax_id: str, minutes: int) -> ReceivedFax:
    return structure(fax_json(fax_id, T0 + timedelta(minutes=minutes)), ReceivedFax)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_keyset_walk_starts_at_the_callers_bound_from_offset_zero() -> None:
    assert KeysetWalk(page_size=3).next_request() == (None, 0)
    assert KeysetWalk(page_size=3, upper=T0).next_request() == (T0, 0)


def test_keyset_walk_ends_on_a_short_page() -> None:
    walk = KeysetWalk(page_size=3)

    assert walk.accept([fax("b", 2), fax("a", 1)]) == [fax("b", 2), fax("a", 1)]
    assert walk.done


def test_keyset_walk_moves_its_bound_to_the_last_timestamp_of_a_full_page() -> None:
    walk = KeysetWalk(page_size=3)

    walk.accept([fax("c", 3), fax("b", 2), fax("a", 1)])

    assert not walk.done
    assert walk.next_request() == (at(1), 0)


def test_keyset_walk_drops_faxes_already_yielded_at_the_boundary() -> None:
    walk = KeysetWalk(page_size=3)
    walk.accept([fax("d", 3), fax("c", 1), fax("b", 1)])

    fresh = walk.accept([fax("c", 1), fax("b", 1), fax("a", 1)])

    assert fresh == [fax("a", 1)]
    # The next page starts on the last fax yielded at the boundary, to notice a shift.
    assert walk.next_request() == (at(1), 2)


def test_keyset_walk_drops_faxes_above_its_bound() -> None:
    walk = KeysetWalk(page_size=3, upper=at(2))

    assert walk.accept([fax("new", 5), fax("b", 2), fax("a", 1)]) == [fax("b", 2), fax("a", 1)]


def test_keyset_walk_pages_inside_one_timestamp_overlapping_by_one() -> None:
    walk = KeysetWalk(page_size=3)

    assert walk.accept([fax("g", 0), fax("f", 0), fax("e", 0)]) == [fax("g", 0), fax("f", 0), fax("e", 0)]
    assert walk.next_request() == (T0, 2)
    assert walk.accept([fax("e", 0), fax("d", 0), fax("c", 0)]) == [fax("d", 0), fax("c", 0)]
    assert walk.next_request() == (T0, 4)
    assert walk.accept([fax("c", 0), fax("b", 0), fax("a", -1)]) == [fax("b", 0), fax("a", -1)]
    assert walk.next_request() == (at(-1), 0)
    assert walk.accept([fax("a", -1)]) == []
    assert walk.done


def test_keyset_walk_steps_back_when_yielded_faxes_left_the_listing() -> None:
    walk = KeysetWalk(page_size=3)
    walk.accept([fax("g", 0), fax("f", 0), fax("e", 0)])  # then g, f, e are marked processed

    # Offset 2 now lands on c: e is gone, so d and c moved up past the offset.
    assert walk.accept([fax("c", 0), fax("b", 0), fax("a", 0)]) == []
    assert walk.next_request() == (T0, 0)
    assert walk.accept([fax("d", 0), fax("c", 0), fax("b", 0)]) == [fax("d", 0), fax("c", 0), fax("b", 0)]
    assert walk.next_request() == (T0, 2)


def test_keyset_walk_with_pages_of_one_pages_inside_a_timestamp_by_offset() -> None:
    walk = KeysetWalk(page_size=1)

    assert walk.accept([fax("b", 0)]) == [fax("b", 0)]
    assert walk.next_request() == (T0, 1)
    assert walk.accept([fax("a", 0)]) == [fax("a", 0)]
    assert walk.next_request() == (T0, 2)
    assert walk.accept([]) == []
    assert walk.done
