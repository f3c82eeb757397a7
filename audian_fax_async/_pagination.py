"""A walk over the received-fax listing that does not drift while the inbox changes.

The API pages by ``offset`` over a list sorted newest first. Paging by offset over a changing list
goes wrong in two ways: a fax that arrives during the walk pushes every item one place down, so the
next page repeats an item; and a walk filtered by ``status=received`` while faxes are marked
processed loses items, because each processed fax pulls the rest one place up.

:class:`KeysetWalk` steps by ``received_at`` instead (keyset pagination): after each page the next
request asks for ``to_date = <received_at of the page's last fax>`` (the API's date bounds are
inclusive) from offset 0, and drops the faxes at that boundary timestamp it has already yielded.
Items that leave the filtered set, or arrive, above the boundary cannot shift what lies below it.
When more faxes than a page share one timestamp, the walk pages by offset inside that timestamp.

This module is pure: it decides what to request and what to yield; the resource does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from attrs import define, field

from ._models import ReceivedFax

__all__ = ["KeysetWalk"]


@define
class KeysetWalk:
    """State of one drift-proof walk.

    ``upper`` starts as the caller's ``to_date`` (or open) and only ever moves down.
    """

    page_size: int
    upper: datetime | None = None
    skip: int = 0
    done: bool = False
    _seen_at_upper: set[str] = field(factory=set)

    def next_request(self) -> tuple[datetime | None, int]:
        """The ``to_date`` and ``offset`` of the next page to fetch."""
        return self.upper, self.skip

    def accept(self, faxes: Sequence[ReceivedFax]) -> list[ReceivedFax]:
        """Take one page as returned by the API and return the faxes to yield, in order."""
        upper = self.upper
        fresh = []
        for fax in faxes:
            if upper is not None:
                if fax.received_at > upper:
                    continue  # above the fixed bound: arrived after the walk began
                if fax.received_at == upper and fax.id in self._seen_at_upper:
                    continue  # already yielded at the boundary
            fresh.append(fax)

        if len(faxes) < self.page_size:
            self.done = True
            return fresh

        last = faxes[-1].received_at
        at_last = {fax.id for fax in faxes if fax.received_at == last}
        if upper is not None and last == upper:
            # The whole page sits on the boundary timestamp: page inside it by offset.
            self._seen_at_upper |= at_last
            self.skip = len(self._seen_at_upper)
        else:
            self.upper = last
            self._seen_at_upper = at_last
            # A first page made of one timestamp only: skip past it rather than fetch it again.
            self.skip = len(at_last) if len(at_last) == len(faxes) else 0
        return fresh
