"""``SweepTracker``: one sweep's bookkeeping, the faxes it waits for and the earliest that did not
complete (which the high-water mark must not pass)."""

from __future__ import annotations

from datetime import datetime

import anyio

from .._models import ReceivedFax

__all__ = ["SweepTracker"]


class SweepTracker:
    """What one sweep waits for: ``waiting`` (fax ids queued or in flight), settled once the listing
    is done and each has an outcome; ``held_back``, the earliest ``received_at`` among those that
    failed or that another mirror holds (``deferred``). Create it inside an event loop."""

    def __init__(self) -> None:
        self.waiting: set[str] = set()
        self.listed = 0
        self.downloaded = 0
        self.failed = 0
        self.listed_max: datetime | None = None
        self.held_back: datetime | None = None
        self.settled = anyio.Event()
        self.listing_done = False

    def hold_back(self, at: datetime) -> None:
        self.held_back = at if self.held_back is None else min(self.held_back, at)

    def resolve(self, fax: ReceivedFax, *, ok: bool, downloaded: bool = False, deferred: bool = False) -> None:
        """The outcome of a fax (ignored unless the sweep waits for it)."""
        if fax.id not in self.waiting:
            return
        self.waiting.discard(fax.id)
        if downloaded:
            self.downloaded += 1
        if not ok:
            self.hold_back(fax.received_at)
            if not deferred:
                self.failed += 1
        self.check()

    def check(self) -> None:
        """Settle once the listing is done and nothing is waited for."""
        if self.listing_done and not self.waiting:
            self.settled.set()
