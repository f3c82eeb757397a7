"""Fair turns on the event loop when hundreds of downloads share it.

asyncio runs every callback that is ready in one loop iteration. With 50 accounts x 10 slots in one
process, hundreds of downloads reach their heavy steps together (opening a connection and sending
the request; closing the response and committing the file), each step a few hundred microseconds
of CPU on httpx2. One iteration then runs for 100-400 ms, and every other task of the process (a web
request, a heartbeat) waits behind it (benchmarks/README.md, scenario 5).

:class:`Pacer` lets at most ``per_iteration`` downloads through such a step per loop iteration
while more than ``engage_above`` downloads are in flight on the loop; the others take the next
iterations, and other tasks get the loop in between. With fewer downloads in flight (one account's
10 slots) it never waits: there the extra iteration would only slow a CPU-bound bulk download.
Measured in scenario 5: event-loop lag p99 98-125 ms without pacing, 17-21 ms with it, and more
faxes per second at full loopback speed, not fewer.

Only on asyncio; elsewhere (trio) it lets everything through.
"""

from __future__ import annotations

import asyncio
import collections
import weakref

__all__ = ["Pacer", "pacer"]

DEFAULT_PER_ITERATION = 2
DEFAULT_ENGAGE_ABOVE = 32


class _LoopState:
    # No reference to the loop: the pacer keeps one state per loop in a WeakKeyDictionary, and a
    # value that referred to its key would keep every finished loop alive.
    __slots__ = ("active", "per_iteration", "reset_scheduled", "used", "waiters")

    def __init__(self, per_iteration: int) -> None:
        self.per_iteration = per_iteration
        self.active = 0
        self.used = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.reset_scheduled = False

    def schedule_reset(self) -> None:
        if not self.reset_scheduled:
            self.reset_scheduled = True
            asyncio.get_running_loop().call_soon(self.reset)  # called on the loop (turn, reset)

    def reset(self) -> None:
        """A new loop iteration: hand out its turns, first come first served."""
        self.reset_scheduled = False
        self.used = 0
        waiters = self.waiters
        while waiters and self.used < self.per_iteration:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                self.used += 1
        if waiters or self.used:
            self.schedule_reset()


class Pacer:
    """Turns per event-loop iteration for the downloads of that loop (see the module's docstring)."""

    def __init__(self, per_iteration: int = DEFAULT_PER_ITERATION, *, engage_above: int = DEFAULT_ENGAGE_ABOVE) -> None:
        if per_iteration < 1:
            raise ValueError("per_iteration must be >= 1")
        self.per_iteration = per_iteration
        self.engage_above = engage_above
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _LoopState] | None = None

    def _state(self) -> _LoopState | None:
        # No running asyncio loop in this thread: trio (or no loop at all), where nothing is paced.
        # (Cheaper than asking sniffio, and this runs several times per download.)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        last = self._last
        if last is not None and last[0]() is loop:  # the usual case: one loop (no weakref made)
            return last[1]
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState(self.per_iteration)
        self._last = (weakref.ref(loop), state)
        return state

    def in_flight(self) -> int:
        """Downloads holding a slot on the running loop."""
        state = self._state()
        return 0 if state is None else state.active

    def downloading(self) -> _Downloading:
        """``async with pacer.downloading():`` around a download that holds a slot: counts it in
        flight and waits for a turn before its first step."""
        return _Downloading(self)

    async def turn(self) -> None:
        """Wait for a turn; returns at once while few downloads are in flight or turns are left."""
        state = self._state()
        if state is None or (state.active <= self.engage_above and not state.waiters):
            return
        if state.used < state.per_iteration and not state.waiters:
            state.used += 1
            state.schedule_reset()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiters.append(future)
        state.schedule_reset()
        try:
            await future
        except BaseException:
            if not future.done():
                future.cancel()
            raise


class _Downloading:
    __slots__ = ("_pacer", "_state")

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer
        self._state: _LoopState | None = None

    async def __aenter__(self) -> None:
        state = self._state = self._pacer._state()
        if state is not None:
            state.active += 1
        try:
            await self._pacer.turn()
        except BaseException:
            if state is not None:
                state.active -= 1
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        if self._state is not None:
            self._state.active -= 1


#: The process's pacer, used by every download.
pacer = Pacer()
