"""The download pacer: turns per event-loop iteration once many downloads share the loop."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
import trio

from audian_fax_async._pacing import Pacer


async def _iterations_of(pacer: Pacer, tasks: int) -> list[int]:
    """Start ``tasks`` turns at once; return the loop iteration (0-based) each one got its turn in."""
    iteration = 0
    stop = False

    async def count_iterations() -> None:
        nonlocal iteration
        while not stop:
            await asyncio.sleep(0)
            iteration += 1

    counter = asyncio.ensure_future(count_iterations())
    got: list[int] = []

    async def one() -> None:
        await pacer.turn()
        got.append(iteration)

    await asyncio.gather(*(one() for _ in range(tasks)))
    stop = True
    await counter
    return got


async def test_few_downloads_in_flight_never_wait() -> None:
    pacer = Pacer(per_iteration=2, engage_above=4)
    async with pacer.downloading(), pacer.downloading():
        assert pacer.in_flight() == 2
        got = await _iterations_of(pacer, 50)
    assert pacer.in_flight() == 0
    assert len(set(got)) == 1  # all fifty in the iteration they asked in


async def test_many_in_flight_get_at_most_per_iteration_turns_each_iteration() -> None:
    pacer = Pacer(per_iteration=2, engage_above=4)
    holders = [pacer.downloading() for _ in range(5)]
    for holder in holders:
        await holder.__aenter__()
    try:
        got = await _iterations_of(pacer, 20)
    finally:
        for holder in holders:
            await holder.__aexit__(None, None, None)
    per_iteration: dict[int, int] = {}
    for it in got:
        per_iteration[it] = per_iteration.get(it, 0) + 1
    assert max(per_iteration.values()) <= 2
    assert len(per_iteration) >= 10  # twenty turns spread over at least ten iterations
    assert pacer.in_flight() == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    pacer = Pacer(per_iteration=1, engage_above=0)
    async with pacer.downloading():  # engaged: one in flight, above zero
        first, second, third = (asyncio.ensure_future(pacer.turn()) for _ in range(3))
        await asyncio.sleep(0)  # the three ask in one iteration: one turn, two wait
        assert first.done() and not second.done() and not third.done()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.wait_for(third, 1)  # the place behind the cancelled one still gets its turn


def test_trio_is_let_through() -> None:
    pacer = Pacer(per_iteration=1, engage_above=0)

    async def main() -> int:
        async with pacer.downloading():
            for _ in range(10):
                await pacer.turn()
        return pacer.in_flight()

    assert trio.run(main) == 0


def test_per_iteration_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_iteration"):
        Pacer(per_iteration=0)


def test_a_finished_event_loop_is_not_kept_alive_by_the_pacer() -> None:
    pacer = Pacer(per_iteration=1, engage_above=0)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def paced() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with pacer.downloading():
            await asyncio.gather(*(pacer.turn() for _ in range(3)))  # engaged: waits for turns

    for _ in range(2):
        asyncio.run(paced())
    gc.collect()

    assert len(loops) == 2
    assert [ref() for ref in loops] == [None, None]
    assert len(pacer._states) == 0
