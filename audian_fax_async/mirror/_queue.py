"""``WorkQueue``: the faxes waiting for a download, live ones (from webhooks) ahead of sweep ones.

Each fax is in the queue at most once: waiting in one lane, or taken (being downloaded) until
:meth:`WorkQueue.finish`. A live fax already waiting in the sweep lane moves to the live lane; one
already taken is left to finish. The sweep lane is bounded, so a sweep's listing runs ahead of
the downloads by a few faxes only; the live lane is not (a delivery is never made to wait). At most
``sweep_taken`` sweep faxes are taken at once: the engine's other workers stay free, so a live fax
finds one at once and only waits for the next free download slot.
"""

from __future__ import annotations

import enum
from collections import deque

import anyio
import anyio.lowlevel

from .._models import ReceivedFax

__all__ = ["Lane", "WorkQueue"]


class Lane(enum.IntEnum):
    """Where a fax came from; the lower lane is served first."""

    LIVE = 0
    SWEEP = 1


class WorkQueue:
    """Two lanes of faxes, served live first; create it inside an event loop."""

    def __init__(self, sweep_capacity: int, *, sweep_taken: int | None = None) -> None:
        if sweep_capacity < 1:
            raise ValueError(f"sweep_capacity must be >= 1, got {sweep_capacity!r}")
        if sweep_taken is not None and sweep_taken < 1:
            raise ValueError(f"sweep_taken must be >= 1, got {sweep_taken!r}")
        self.sweep_capacity = sweep_capacity
        self.sweep_taken = sweep_taken
        self._taken_sweep = 0
        self._lanes: dict[Lane, deque[ReceivedFax]] = {Lane.LIVE: deque(), Lane.SWEEP: deque()}
        self._waiting: dict[str, Lane] = {}
        self._taken: dict[str, Lane] = {}
        self._changed = anyio.Event()
        self.closed = False

    @property
    def queued(self) -> int:
        """Faxes waiting in either lane."""
        return len(self._waiting)

    @property
    def taken(self) -> int:
        """Faxes handed out and not finished yet."""
        return len(self._taken)

    def lane_of(self, fax_id: str) -> Lane | None:
        """The lane of a fax waiting or taken; None when it is neither."""
        return self._waiting.get(fax_id, self._taken.get(fax_id))

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def put_live(self, fax: ReceivedFax) -> bool:
        """Queue ``fax`` ahead of every sweep fax; False if it is already live, taken, or the queue is closed."""
        if self.closed or fax.id in self._taken or self._waiting.get(fax.id) is Lane.LIVE:
            return False
        if self._waiting.get(fax.id) is Lane.SWEEP:
            sweep = self._lanes[Lane.SWEEP]
            for index, waiting in enumerate(sweep):
                if waiting.id == fax.id:
                    del sweep[index]
                    break
        self._lanes[Lane.LIVE].append(fax)
        self._waiting[fax.id] = Lane.LIVE
        self._wake()
        return True

    async def put_sweep(self, fax: ReceivedFax) -> bool:
        """Queue ``fax`` behind the live lane, waiting while the sweep lane is full; False if it is
        already waiting or taken, or the queue is closed."""
        while not self.closed and len(self._lanes[Lane.SWEEP]) >= self.sweep_capacity:
            await self._changed.wait()
        if self.closed or fax.id in self._waiting or fax.id in self._taken:
            await anyio.lowlevel.checkpoint()
            return False
        self._lanes[Lane.SWEEP].append(fax)
        self._waiting[fax.id] = Lane.SWEEP
        self._wake()
        await anyio.lowlevel.checkpoint()
        return True

    async def get(self) -> tuple[ReceivedFax, Lane]:
        """The most urgent fax, now taken; waits while both lanes are empty. Raises
        ``anyio.EndOfStream`` once the queue is closed."""
        while True:
            if self.closed:
                raise anyio.EndOfStream
            for lane in Lane:
                faxes = self._lanes[lane]
                if not faxes or (lane is Lane.SWEEP and not self._room_for_sweep()):
                    continue
                fax = faxes.popleft()
                del self._waiting[fax.id]
                self._taken[fax.id] = lane
                if lane is Lane.SWEEP:
                    self._taken_sweep += 1
                self._wake()
                await anyio.lowlevel.checkpoint()
                return fax, lane
            await self._changed.wait()

    def _room_for_sweep(self) -> bool:
        return self.sweep_taken is None or self._taken_sweep < self.sweep_taken

    def finish(self, fax_id: str) -> Lane | None:
        """A taken fax is done (whatever its outcome); its lane, or None if it was not taken."""
        lane = self._taken.pop(fax_id, None)
        if lane is not None:
            if lane is Lane.SWEEP:
                self._taken_sweep -= 1
            self._wake()
        return lane

    def close(self) -> None:
        """Hand out nothing more: waiting faxes are dropped, :meth:`get` raises ``EndOfStream``."""
        self.closed = True
        for faxes in self._lanes.values():
            faxes.clear()
        self._waiting.clear()
        self._wake()
