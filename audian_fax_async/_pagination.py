"""A walk over the received-fax listing that does not drift while the inbox changes.

The API pages by ``offset`` over a list sorted newest first. Paging by offset over a changing list
goes wrong in two ways: a fax that arrives during the walk pushes every item one place down, so the
next page repeats an item; and a walk filtered by ``status=received`` while faxes are marked
processed loses items, because each processed fax pulls the rest one place up.

:class:`KeysetWalk` steps by ``received_at`` instead (keyset pagination): after each page the next
request asks for ``to_date = <received_at of the page's last fax>`` (the API's date bounds are
inclusive) from offset 0, and drops the faxes at that boundary timestamp it has already yielded.
Items that leave the filtered set, or arrive, above the boundary cannot shift what lies below it.

When more faxes than a page share one timestamp, the walk must page by offset inside that
timestamp, past the faxes it has yielded there. Those faxes may leave the listing meanwhile (the
caller marks them processed), which would make the offset skip unseen ones. So each such page
starts one place early, on the last fax already yielded: if that fax is still there, nothing
moved; if not, the walk steps back until it finds the end of what it has yielded. The cost is one
fax per page, plus one request per step back.

This module is pure: it decides what to request and what to yield; the resource does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from attrs import define, field

from ._exceptions import PaginationError
from ._models import ReceivedFax

__all__ = ["KeysetWalk"]


@define
class KeysetWalk:
    """State of one drift-proof walk.

    ``upper`` starts as the caller's ``to_date`` (or open) and only ever moves down. ``offset`` is
    the next request's offset inside ``to_date=upper``; when ``verify`` is set, the fax at that
    offset must be one already yielded at ``upper`` (the overlap that detects a shift).
    """

    page_size: int
    upper: datetime | None = None
    offset: int = 0
    done: bool = False
    verify: bool = False
    _seen_at_upper: set[str] = field(factory=set)
    #: The states reached since the last page that yielded something: one reached twice means the
    #: listing is ignoring ``to_date``/``offset`` and the walk would go round forever.
    _idle_states: set[tuple[datetime | None, int, bool, int]] = field(factory=set)
    _idle_pages: int = 0

    def next_request(self) -> tuple[datetime | None, int]:
        """The ``to_date`` and ``offset`` of the next page to fetch."""
        return self.upper, self.offset

    def accept(self, faxes: Sequence[ReceivedFax]) -> list[ReceivedFax]:
        """Take one page as returned by the API and return the faxes to yield, in order.

        Raises :class:`~audian_fax_async.PaginationError` when pages stop making progress.
        """
        fresh = self._accept(faxes)
        if fresh or self.done:
            self._idle_states.clear()
            self._idle_pages = 0
            return fresh
        self._idle_pages += 1
        # An honest walk goes without yielding only while it steps back over faxes that left a
        # shared timestamp: at most one page per page_size - 1 of them, and a few more.
        idle_limit = 3 + len(self._seen_at_upper) // max(1, self.page_size - 1)
        state = (self.upper, self.offset, self.verify, len(self._seen_at_upper))
        if state in self._idle_states or self._idle_pages > idle_limit:
            raise PaginationError(
                f"the listing made no progress at to_date={self.upper.isoformat() if self.upper else None} "
                f"offset={self.offset}: the API returned the same faxes again (does it ignore to_date and offset?)"
            )
        self._idle_states.add(state)
        return fresh

    def _accept(self, faxes: Sequence[ReceivedFax]) -> list[ReceivedFax]:
        upper, requested = self.upper, self.offset
        if self.verify and not self._is_seen_at_upper(faxes[0] if faxes else None):
            # Faxes yielded at this timestamp left the listing, so the rest moved up: look earlier.
            self.offset = max(0, requested - max(1, self.page_size - 1))
            self.verify = self.offset > 0
            return []

        fresh = [
            fax
            for fax in faxes
            if upper is None
            or fax.received_at < upper
            or (fax.received_at == upper and fax.id not in self._seen_at_upper)
        ]
        if len(faxes) < self.page_size:
            self.done = True
            return fresh

        last = faxes[-1].received_at
        if upper is not None and last > upper:
            # The page never reached below the boundary (the API ignores to_date): the boundary
            # never moves up, so nothing yielded can be yielded again; the walk stays where it is.
            return fresh
        at_last = {fax.id for fax in faxes if fax.received_at == last}
        if last == upper:
            # The page ends inside the boundary timestamp; everything up to its end has been yielded.
            self._seen_at_upper |= at_last
            self._continue_inside(requested + len(faxes))
        else:
            self.upper = last
            self._seen_at_upper = at_last
            if len(at_last) == len(faxes):
                # A page made of one timestamp only: its faxes open the next listing; page past them.
                self._continue_inside(len(faxes))
            else:
                self.offset, self.verify = 0, False
        return fresh

    def _continue_inside(self, yielded_prefix: int) -> None:
        # Start one place early (on the last fax yielded) to notice a shift; a page of one cannot.
        if self.page_size > 1:
            self.offset, self.verify = yielded_prefix - 1, True
        else:
            self.offset, self.verify = yielded_prefix, False

    def _is_seen_at_upper(self, fax: ReceivedFax | None) -> bool:
        return fax is not None and fax.received_at == self.upper and fax.id in self._seen_at_upper
