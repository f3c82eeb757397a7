"""Idempotency stores: remember which webhook events were handled, so retries are seen once.

A key moves through three states::

    (absent) --claim--> in flight (token, short lease) --complete--> done (long TTL)
                              |                                        |
                              +--release / lease expiry--> (absent) <--+ TTL expiry

``claim`` is one atomic step: of many concurrent claims of one key exactly one gets the token.
``complete`` and ``release`` only act while the caller's token still holds the key, so a holder whose
lease ran out cannot undo a later claim. The shape is that of Redis's ``SET key token NX PX lease``
(claim) and two compare-and-set scripts (complete, release); the Redis store plugs in unchanged.
"""

from __future__ import annotations

import abc
import enum
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from attrs import define, frozen

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_TTL",
    "Claim",
    "ClaimStatus",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "new_token",
]

DEFAULT_TTL = 48 * 3600.0
"""Seconds a handled event is remembered: twice the API's 24-hour retry window, so late retries and
clock skew between the API and this host still find the record."""

DEFAULT_LEASE = 15 * 60.0
"""Seconds an in-flight claim holds its key if its holder neither completes nor releases it (the
process died). A handler that runs longer than this may see a redelivery of its event run again."""


class ClaimStatus(enum.Enum):
    """What :meth:`IdempotencyStore.claim` found."""

    CLAIMED = "claimed"
    """The key was free: the caller now holds it and must ``complete`` or ``release`` it."""
    IN_FLIGHT = "in_flight"
    """Another holder is handling this event right now."""
    DONE = "done"
    """The event was handled already."""


@frozen
class Claim:
    """The result of a claim. Only a ``CLAIMED`` claim carries a token to complete or release."""

    key: str
    status: ClaimStatus
    token: str | None = None

    @property
    def acquired(self) -> bool:
        """True when this caller holds the key."""
        return self.status is ClaimStatus.CLAIMED


def new_token() -> str:
    """A random claim token (unguessable, so one holder never passes for another)."""
    return secrets.token_hex(16)


class IdempotencyStore(abc.ABC):
    """Where the receiver records which events it is handling and which it has handled.

    Implementations must make :meth:`claim` atomic across every process that shares the store.
    Times are seconds. A store is used from one event loop; it needs no thread safety.
    """

    @abc.abstractmethod
    async def claim(self, key: str, *, lease: float = DEFAULT_LEASE) -> Claim:
        """Take ``key`` for ``lease`` seconds if it is free; otherwise say whether it is in flight or done."""

    @abc.abstractmethod
    async def complete(self, claim: Claim, *, ttl: float = DEFAULT_TTL) -> bool:
        """Mark the claimed key done for ``ttl`` seconds. False if the claim no longer holds the key."""

    @abc.abstractmethod
    async def release(self, claim: Claim) -> bool:
        """Free the claimed key so a redelivery is handled again. False if the claim no longer holds it."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release the store's resources (connections). The in-memory store has none."""


@define
class _Entry:
    token: str | None  # None once done
    expires_at: float


class MemoryIdempotencyStore(IdempotencyStore):
    """An in-process store: bounded, with TTL and least-recently-written eviction.

    At most ``max_entries`` keys are kept; beyond that the oldest written key is dropped first, so
    under a flood of distinct events an old event's redelivery may be handled a second time (the
    price of bounded memory: about 200 bytes a key). ``clock`` returns seconds (monotonic by default)
    and is injectable for tests::

        store = MemoryIdempotencyStore(max_entries=50_000)
        receiver = WebhookReceiver(on_event, store=store)

    Records live in this process only: several processes or hosts behind one webhook URL need a
    shared store (Redis).
    """

    def __init__(self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.evicted = 0
        """Keys dropped to stay within ``max_entries`` before they expired."""

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _put(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self._trim()

    def _trim(self) -> None:
        now = self._clock()
        # Expired keys at the old end go first; mixed TTLs mean a few expired keys may wait longer,
        # but never beyond max_entries.
        while self._entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            if oldest.expires_at <= now:
                del self._entries[oldest_key]
            elif len(self._entries) > self.max_entries:
                del self._entries[oldest_key]
                self.evicted += 1
            else:
                break

    async def claim(self, key: str, *, lease: float = DEFAULT_LEASE) -> Claim:
        # No await between the look-up and the write: atomic within the event loop.
        now = self._clock()
        entry = self._live(key, now)
        if entry is not None:
            return Claim(key, ClaimStatus.DONE if entry.token is None else ClaimStatus.IN_FLIGHT)
        token = new_token()
        self._put(key, _Entry(token, now + lease))
        return Claim(key, ClaimStatus.CLAIMED, token)

    async def complete(self, claim: Claim, *, ttl: float = DEFAULT_TTL) -> bool:
        now = self._clock()
        entry = self._live(claim.key, now)
        if claim.token is None or entry is None or entry.token != claim.token:
            return False
        self._put(claim.key, _Entry(None, now + ttl))
        return True

    async def release(self, claim: Claim) -> bool:
        entry = self._live(claim.key, self._clock())
        if claim.token is None or entry is None or entry.token != claim.token:
            return False
        del self._entries[claim.key]
        return True
