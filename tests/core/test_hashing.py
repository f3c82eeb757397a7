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
