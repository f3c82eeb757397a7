"""StreamHasher: the sha256 of a stream whose big chunks are hashed in another thread, in order."""

from __future__ import annotations

import hashlib
import os
import random

from audian_fax_async._hashing import StreamHasher


def _chunks(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [rng.choice([1, 100, 4096, 64 * 1024, 200 * 1024, 1024 * 1024]) for _ in range(count)]
    return [os.urandom(size) for size in sizes]


def test_mixed_small_and_big_chunks_give_hashlibs_digest() -> None:
    for seed in range(5):
        chunks = _chunks(seed, 40)
        hasher = StreamHasher(offload_min=128 * 1024)
        for chunk in chunks:
            hasher.update(chunk)
        assert hasher.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_every_chunk_offloaded_with_a_tiny_backlog_still_in_order() -> None:
    chunks = _chunks(7, 60)
    hasher = StreamHasher(offload_min=0, max_pending=0)  # each update waits for the one before
    for chunk in chunks:
        hasher.update(chunk)
    assert hasher.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_a_reset_forgets_what_was_fed_even_while_the_thread_still_hashes_it() -> None:
    hasher = StreamHasher(offload_min=0)
    for chunk in _chunks(3, 30):  # queued for the hashing thread
        hasher.update(chunk)
    hasher.reset()
    fresh = _chunks(4, 10)
    for chunk in fresh:
        hasher.update(chunk)
    assert hasher.hexdigest() == hashlib.sha256(b"".join(fresh)).hexdigest()


def test_digest_of_nothing() -> None:
    assert StreamHasher().hexdigest() == hashlib.sha256().hexdigest()


async def test_adigest_waits_for_the_hashing_thread_without_blocking_the_loop() -> None:
    import asyncio
    import threading

    from audian_fax_async import _hashing

    gate = threading.Event()

    class _Stalled:  # a lane ahead in the queue whose hashing waits for the gate
        def update(self, _: bytes) -> None:
            gate.wait(10)

    stalled = _hashing._Lane()
    stalled.hasher = _Stalled()  # type: ignore[assignment]
    stalled.condition = threading.Condition(threading.Lock())
    stalled.submitted = 1
    _hashing._thread.submit(stalled, b"x")

    chunks = _chunks(11, 8)
    hasher = StreamHasher(offload_min=0)  # every chunk queued behind the stalled one
    for chunk in chunks:
        hasher.update(chunk)
    assert hasher.pending == sum(map(len, chunks))
    ticks = 0

    async def open_the_gate_after_some_loop_turns() -> None:
        nonlocal ticks
        while ticks < 20:
            ticks += 1
            await asyncio.sleep(0)
        gate.set()

    opener = asyncio.get_running_loop().create_task(open_the_gate_after_some_loop_turns())
    digest = await asyncio.wait_for(hasher.adigest(), 10)
    ticks_when_done = ticks
    await opener
    # The loop ran while adigest waited: only the opener task lets the thread go on (a blocking wait
    # would return after the stalled lane's 10 s timeout with no loop turn taken).
    assert ticks_when_done == 20
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert hasher.pending == 0


async def test_adigest_of_inline_chunks_needs_no_thread() -> None:
    hasher = StreamHasher()
    hasher.update(b"%PDF-1.7 small")
    assert hasher.pending == 0
    assert await hasher.adigest() == hashlib.sha256(b"%PDF-1.7 small").hexdigest()
