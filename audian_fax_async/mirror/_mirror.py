"""``Mirror``: keep a folder a complete, verified copy of the account's inbox.

Three sources of work feed one bulk engine (``BulkDownload`` with a fax source), in one task group:

* **live**: a ``fax_received`` delivery, confirmed by fetching the fax, is written to the journal
  (fsynced) and queued in the live lane before it is answered;
* **catch-up**: at start, a listing of the whole inbox (the engine skips what the manifest holds);
* **sweeps**: every ``reconcile_every`` seconds, a listing from the high-water mark minus the
  safety margin, for faxes whose webhook never came.

The engine takes the next fax only when a worker is free, and the live lane is always served
first; each download attempt also passes a :class:`PriorityGate` of the account's size, where a
live fax takes the next free slot ahead of waiting sweep faxes. Below it, the client's limiter
(local, or Redis across processes) holds the account's 10.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import anyio.abc

from .._blocking import run_blocking
from .._bulk import AfterAction, BulkDownload, _single_error
from .._client import check_limit
from .._exceptions import (
    AudianError,
    AuthenticationError,
    DestinationError,
    InvalidRequestError,
    PermissionDeniedError,
)
from .._models import DownloadOutcome, FaxStatus, OutcomeKind, ReceivedFax, WebhookEventType
from ..webhooks._receiver import ConfirmedEvent, DeliveryOutcome, WebhookReceiver, _allow_list, normalize_number
from ..webhooks._store import DEFAULT_TTL, Claim, ClaimStatus, IdempotencyStore, MemoryIdempotencyStore
from ._app import MirrorApp
from ._archive import Archiver
from ._gate import PriorityGate
from ._queue import Lane, WorkQueue
from ._state import (
    FolderLock,
    Journal,
    JournalContents,
    MirrorState,
    SweepRecord,
    advance_mark,
    load_state,
    save_state,
    sweep_from,
)
from ._status import FaxCounts, MirrorEvent, MirrorEventKind, MirrorStatus, WebhookCounts
from ._sweep import SweepTracker

if TYPE_CHECKING:
    from .._client import FaxClient

__all__ = ["Mirror"]

logger = logging.getLogger("audian_fax_async.mirror")

_SOURCE = {Lane.LIVE: "live", Lane.SWEEP: "sweep"}


def _lane_or_sweep(lane: Lane | None) -> Lane:
    return Lane.SWEEP if lane is None else lane  # Lane.LIVE is 0: never `lane or ...`


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Source:
    """The engine's fax source: the queue's most urgent fax, claimed first when folders are shared."""

    def __init__(self, mirror: Mirror) -> None:
        self._mirror = mirror

    def __aiter__(self) -> _Source:
        return self

    async def __anext__(self) -> ReceivedFax:
        mirror = self._mirror
        assert mirror._queue is not None
        while True:
            try:
                fax, _ = await mirror._queue.get()
            except anyio.EndOfStream:
                raise StopAsyncIteration from None
            if await mirror._claim(fax):
                return fax


class Mirror:
    """Keeps ``dest_dir`` an exact, verified copy of the account's received faxes.

    ::

        async with FaxClient() as client, Mirror(client, "faxes/", after="processed") as mirror:
            app.mount("/fax-mirror", mirror.app)     # POST .../webhook, GET .../healthz
            await anyio.sleep_forever()

    Entering it catches up (every fax not complete in the folder's manifest is downloaded),
    starts the sweeps and takes webhook deliveries through :attr:`app`; leaving it (or
    :meth:`shutdown`) answers new deliveries 503, lets the downloads in flight finish within
    ``grace_period`` seconds (then cancels them: no partial file stays), and saves the state.

    * ``reconcile_every``: seconds between sweeps; ``safety_margin``: how far before the
      high-water mark a sweep lists (faxes that become visible late).
    * ``after``: ``"processed"`` or ``"archived"`` marks each fax once its file is durable;
      ``archive_after``: days after which faxes complete in the folder are archived server-side.
    * ``allow_senders``: E.164 numbers; faxes from others are recorded as refused, not downloaded.
    * ``path_template``: the file layout, as in ``download_all``.
    * ``shared_store``: a store shared by every mirror of this folder (``RedisIdempotencyStore``):
      deliveries are de-duplicated in it and each fax is claimed in it before its download, so
      several mirrors can serve one folder; give their clients one ``RedisLimiter`` too. Each then
      keeps its own journal, named by ``instance`` (default: the host name; give each mirror on
      one host its own, stable across restarts).
    * ``claim_lease``: seconds a claim holds a fax for its mirror (longer than any download).
    * ``grace_period``: seconds the downloads in flight get to finish when the mirror stops.
    * ``on_event``: called with a :class:`MirrorEvent` for each fax downloaded, failed, refused
      or archived.
    * ``clock`` (aware ``datetime``) and ``sleep`` are injectable for tests.

    A sweep whose listing fails is recorded (``last_sweep``) and the next one tries again; a key
    the API refuses (401, 403) ends the mirror, raising that error from the ``async with`` block.
    """

    def __init__(
        self,
        client: FaxClient,
        dest_dir: str | os.PathLike[str],
        *,
        reconcile_every: float = 300.0,
        safety_margin: float = 900.0,
        after: AfterAction | None = None,
        archive_after: float | None = None,
        allow_senders: Collection[str] | None = None,
        path_template: str | None = None,
        shared_store: IdempotencyStore | None = None,
        instance: str | None = None,
        grace_period: float = 30.0,
        claim_lease: float = 600.0,
        page_size: int = 100,
        on_event: Callable[[MirrorEvent], None] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        for name, value in (("reconcile_every", reconcile_every), ("grace_period", grace_period)):
            if not isinstance(value, int | float) or not value > 0:
                raise InvalidRequestError(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(safety_margin, int | float) or not math.isfinite(safety_margin) or safety_margin < 0:
            raise InvalidRequestError(f"safety_margin must be a number of seconds >= 0, got {safety_margin!r}")
        if archive_after is not None and (not isinstance(archive_after, int | float) or not archive_after > 0):
            raise InvalidRequestError(f"archive_after must be a positive number of days, got {archive_after!r}")
        if not isinstance(claim_lease, int | float) or not claim_lease > 0:
            raise InvalidRequestError(f"claim_lease must be a positive number of seconds, got {claim_lease!r}")
        check_limit(page_size, "page_size")
        self.client = client
        self.dest_dir = Path(dest_dir)
        self.reconcile_every = float(reconcile_every)
        self.safety_margin = timedelta(seconds=safety_margin)
        self.after: AfterAction | None = after
        self.archive_after = archive_after
        self.allow_senders = _allow_list(allow_senders)
        self.path_template = path_template
        self.grace_period = float(grace_period)
        self.claim_lease = float(claim_lease)
        self._shared = shared_store
        self._on_event = on_event
        self._clock = clock
        self._sleep = sleep
        # Checks the arguments the engine takes (after, template, page size) right away.
        self._engine = BulkDownload(
            client,
            self.dest_dir,
            filters={},
            after=after,
            path_template=path_template,
            on_progress=None,
            overwrite=False,
            page_size=page_size,
            concurrency=None,
            faxes=_Source(self),
            download_slot=self._slot_for,
            urgent=self._is_live,
        )
        self._page_size = page_size
        self._capacity = client.max_concurrent_downloads
        folder_key = hashlib.sha256(os.fsencode(os.path.abspath(self.dest_dir))).hexdigest()[:16]
        self._claim_prefix = f"mirror:{client.account}:{folder_key}:"
        self.receiver = WebhookReceiver(
            self._on_delivery,
            confirm_with=client,
            store=shared_store or MemoryIdempotencyStore(),
            telemetry=client.telemetry_options,  # deliveries report where the client's calls do
        )
        """The webhook receiver behind :attr:`app` (its statistics count every delivery)."""
        self.app = MirrorApp(self)
        """The ASGI app of the mirror's receiver: ``POST /webhook`` and ``GET /healthz``."""
        self._lock = FolderLock(self.dest_dir)
        if shared_store is not None and instance is None:
            instance = socket.gethostname()
        self._journal = Journal(self.dest_dir, instance if shared_store is not None else None)
        self._archiver = (
            Archiver(client, self._engine, days=archive_after, page_size=page_size, clock=clock, on_event=self._emit)
            if archive_after is not None
            else None
        )
        self._pending: dict[str, ReceivedFax] = {}
        self._refused: dict[str, str] = {}
        self._failed: dict[str, str] = {}
        self._by_peer: set[str] = set()
        self._claims: dict[str, Claim] = {}
        self._sweeps: set[SweepTracker] = set()
        self._state = MirrorState()
        self._unavailable = 0
        self.state = "starting"
        self._queue: WorkQueue | None = None
        self._gate: PriorityGate | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        # Made when entered: anyio's primitives belong to a running event loop, and a mirror is
        # often made before one runs (to mount its app).
        self._sweep_scope: anyio.CancelScope | None = None
        self._engine_scope: anyio.CancelScope | None = None
        self._sweep_lock: anyio.Lock | None = None
        self._caught_up: anyio.Event | None = None
        self._catch_up: SweepRecord | None = None
        self._engine_done: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._entered = False

    # -- what it shows -------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether deliveries are taken (running, not shutting down)."""
        return self.state == "running"

    def status(self) -> MirrorStatus:
        """The counts ``/healthz`` shows."""
        queue = self._queue
        done = self._engine.completed
        stats = self.receiver.statistics()
        seen = sum(stats.outcomes.values()) + self._unavailable
        return MirrorStatus(
            state=self.state,
            faxes=FaxCounts(
                complete=len(done) + len(self._by_peer - done.keys()),
                queued=queue.queued if queue is not None else 0,
                in_flight=queue.taken if queue is not None else 0,
                failed=len(self._failed),
                refused=len(self._refused),
            ),
            webhooks=WebhookCounts(
                seen=seen,
                duplicate=stats.count(DeliveryOutcome.DUPLICATE),
                refused=stats.count(DeliveryOutcome.REFUSED),
                unavailable=self._unavailable + stats.count(DeliveryOutcome.UNAVAILABLE),
            ),
            high_water_mark=self._state.high_water_mark,
            last_sweep=self._state.last_sweep,
        )

    def count_unavailable(self) -> None:
        """A delivery answered 503 before reaching the receiver (the app's, while not accepting)."""
        self._unavailable += 1

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a Mirror can be run only once")
        self._entered = True
        # Sweeps may keep all but a few of the engine's workers busy, so that a delivered fax always
        # finds a free worker and waits only for the next download slot.
        workers = self._engine.workers
        self._queue = WorkQueue(sweep_capacity=workers, sweep_taken=max(1, workers - max(1, self._capacity // 2)))
        self._sweep_scope, self._engine_scope = anyio.CancelScope(), anyio.CancelScope()
        self._gate = PriorityGate(self._capacity)
        self._sweep_lock = anyio.Lock()
        self._caught_up = anyio.Event()
        self._engine_done = anyio.Event()
        self._stop = anyio.Event()
        contents = await run_blocking(self._open_folder)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self._run_engine)
            self._resume(contents)
            await self._save_journal()
            self._tg.start_soon(self._run_sweeps)
        except BaseException as exc:
            self._tg.cancel_scope.cancel()
            try:
                await self._tg.__aexit__(type(exc), exc, exc.__traceback__)
            finally:
                await self._close_folder()
            raise
        self.state = "running"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        try:
            try:
                # Bounded by the grace period, also when the host is cancelling us.
                with anyio.CancelScope(shield=True):
                    await self._drain()
            finally:
                result = await self._tg.__aexit__(exc_type, exc, tb)
            return result
        except BaseExceptionGroup as group:
            single = _single_error(group)
            if single is None:
                raise
            raise single from single.__cause__
        finally:
            self.state = "stopped"
            await self._close_folder()

    def shutdown(self) -> None:
        """Begin a graceful stop: new deliveries get 503 and :meth:`wait_stopping` returns
        (leaving the ``async with`` block drains the downloads in flight)."""
        if self.state in ("starting", "running"):
            self.state = "shutting_down"
        if self._stop is not None:
            self._stop.set()

    async def wait_stopping(self) -> None:
        """Wait until :meth:`shutdown` is called."""
        assert self._stop is not None, "enter the mirror first"
        await self._stop.wait()

    async def caught_up(self) -> SweepRecord:
        """Wait for the catch-up sweep of the whole inbox to end; its record. ``RuntimeError`` if
        the mirror stopped first."""
        assert self._caught_up is not None, "enter the mirror first"
        await self._caught_up.wait()
        if self._catch_up is None:
            raise RuntimeError("the mirror stopped before its catch-up ended")
        return self._catch_up

    async def _drain(self) -> None:
        assert self._queue is not None and self._engine_done is not None
        assert self._sweep_scope is not None and self._engine_scope is not None
        self.shutdown()
        self._sweep_scope.cancel()
        self._queue.close()
        for sweep in self._sweeps:  # a sweep a caller runs ends now: its queued faxes never come
            sweep.settled.set()
        assert self._caught_up is not None
        self._caught_up.set()  # a caller waiting for the catch-up learns it will not end
        with anyio.move_on_after(self.grace_period):
            await self._engine_done.wait()
        if not self._engine_done.is_set():
            logger.warning("downloads still running after the %.0f s grace period: cancelled", self.grace_period)
            self._engine_scope.cancel()
            await self._engine_done.wait()
        await self._save_journal()

    def _open_folder(self) -> JournalContents:
        try:
            self.dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create {self.dest_dir}: {exc.strerror or exc}") from None
        self._lock.acquire(shared=self._shared is not None)
        try:
            self._state = load_state(self.dest_dir)
            return self._journal.load()
        except BaseException:
            self._lock.release()
            raise

    async def _close_folder(self) -> None:
        with anyio.CancelScope(shield=True):
            await run_blocking(self._journal.close)
            await run_blocking(self._lock.release)

    def _resume(self, contents: JournalContents) -> None:
        """Queue (live, first) what deliveries queued before a stop and did not finish."""
        assert self._queue is not None
        self._refused = dict(contents.refused)
        for fax in contents.queued.values():
            if self._complete(fax):
                continue
            self._pending[fax.id] = fax
            self._queue.put_live(fax)

    async def _save_journal(self) -> None:
        """Rewrite the journal with what is still pending (a snapshot taken on the loop)."""
        done = self._engine.completed
        self._pending = {k: v for k, v in self._pending.items() if k not in done and k not in self._by_peer}
        contents = JournalContents(dict(self._pending), dict(self._refused))
        with anyio.CancelScope(shield=True):
            await run_blocking(self._journal.rewrite, contents)

    # -- the engine ----------------------------------------------------------------------------

    async def _run_engine(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._engine_done is not None and self._engine_scope is not None
        try:
            with self._engine_scope:
                async with self._engine as outcomes:
                    task_status.started()
                    async for outcome in outcomes:
                        await self._record(outcome)
        finally:
            self._engine_done.set()

    def _is_live(self, fax: ReceivedFax) -> bool:
        return self._queue is not None and self._queue.lane_of(fax.id) is Lane.LIVE

    def _slot_for(self, fax: ReceivedFax) -> AbstractAsyncContextManager[object]:
        assert self._gate is not None and self._queue is not None
        lane = self._queue.lane_of(fax.id)
        return self._gate.lane(int(lane if lane is not None else Lane.SWEEP))

    def _claim_key(self, fax_id: str) -> str:
        return self._claim_prefix + fax_id

    async def _claim(self, fax: ReceivedFax) -> bool:
        """Whether this mirror downloads ``fax`` now: always when alone; with a shared store,
        when its claim there succeeds (another mirror's finished or running claim settles it)."""
        if self._shared is None:
            return True
        assert self._queue is not None
        try:
            claim = await self._shared.claim(self._claim_key(fax.id), lease=self.claim_lease)
        except Exception as exc:
            lane = _lane_or_sweep(self._queue.finish(fax.id))
            self._fail(fax, lane, f"the shared store failed: {type(exc).__name__}: {exc}")
            return False
        if claim.status is ClaimStatus.CLAIMED:
            self._claims[fax.id] = claim
            return True
        self._queue.finish(fax.id)
        if claim.status is ClaimStatus.DONE:
            self._by_peer.add(fax.id)
            self._failed.pop(fax.id, None)
            for sweep in self._sweeps:
                sweep.resolve(fax, ok=True)
        else:  # another mirror is on it: a later sweep looks again if it never finishes
            for sweep in self._sweeps:
                sweep.resolve(fax, ok=False, deferred=True)
        return False

    async def _record(self, outcome: DownloadOutcome) -> None:
        assert self._queue is not None
        fax = outcome.fax
        lane = _lane_or_sweep(self._queue.finish(fax.id))
        claim = self._claims.pop(fax.id, None)
        if outcome.kind is OutcomeKind.FAILED:
            if claim is not None and self._shared is not None:
                await self._settle(self._shared.release(claim))
            self._fail(fax, lane, f"{type(outcome.error).__name__}: {outcome.error}")
            return
        if claim is not None and self._shared is not None:
            await self._settle(self._shared.complete(claim, ttl=DEFAULT_TTL))
        self._failed.pop(fax.id, None)
        self._pending.pop(fax.id, None)
        downloaded = outcome.kind is OutcomeKind.DOWNLOADED
        for sweep in self._sweeps:
            sweep.resolve(fax, ok=True, downloaded=downloaded)
        if downloaded:
            self._emit(
                MirrorEvent(
                    kind=MirrorEventKind.DOWNLOADED,
                    fax_id=fax.id,
                    source=_SOURCE[lane],
                    at=self._clock(),
                    path=outcome.path,
                    bytes=outcome.bytes,
                    sha256=outcome.sha256,
                )
            )

    def _fail(self, fax: ReceivedFax, lane: Lane, error: str) -> None:
        self._failed[fax.id] = error
        for sweep in self._sweeps:
            sweep.resolve(fax, ok=False)
        self._emit(
            MirrorEvent(kind=MirrorEventKind.FAILED, fax_id=fax.id, source=_SOURCE[lane], at=self._clock(), error=error)
        )

    @staticmethod
    async def _settle(call: Awaitable[bool]) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await call
            except Exception:
                logger.exception("the shared store failed to record a claim; it frees itself after its lease")

    def _emit(self, event: MirrorEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    # -- faxes coming in -----------------------------------------------------------------------

    def _complete(self, fax: ReceivedFax) -> bool:
        """Whether ``fax`` needs nothing more: its file is in the folder (or another mirror's) and,
        with ``after``, it is marked (by this folder's record or on the server)."""
        if fax.id in self._by_peer:
            return True
        entry = self._engine.completed.get(fax.id)
        if entry is None:
            return False
        if self.after is None:
            return True
        done = (self.after, FaxStatus.ARCHIVED.value)
        return entry.marked in done or fax.status in done

    def _allowed(self, fax: ReceivedFax) -> bool:
        return self.allow_senders is None or normalize_number(fax.from_number) in self.allow_senders

    async def _refuse(self, fax: ReceivedFax, source: str) -> None:
        if fax.id in self._refused:
            return
        await run_blocking(self._journal.append_refused, fax.id, fax.from_number)
        self._refused[fax.id] = fax.from_number
        self._emit(
            MirrorEvent(
                kind=MirrorEventKind.REFUSED,
                fax_id=fax.id,
                source=source,
                at=self._clock(),
                error="sender not allowed",
            )
        )

    async def _on_delivery(self, confirmed: ConfirmedEvent) -> None:
        """A confirmed delivery: queue the fax (durably, in the journal) before it is answered."""
        if confirmed.event.event != WebhookEventType.FAX_RECEIVED:
            return
        fax = confirmed.fax  # the API's record, not the payload
        if self._complete(fax):
            return
        if not self._allowed(fax):
            await self._refuse(fax, "live")
            return
        assert self._queue is not None
        if fax.id not in self._pending:
            # In the pending set first: a journal rewrite meanwhile keeps it.
            self._pending[fax.id] = fax
            try:
                await run_blocking(self._journal.append_queued, fax)
            except BaseException:
                self._pending.pop(fax.id, None)
                raise
        self._queue.put_live(fax)

    # -- sweeps --------------------------------------------------------------------------------

    async def _run_sweeps(self) -> None:
        assert self._caught_up is not None and self._sweep_scope is not None
        with self._sweep_scope:
            self._catch_up = await self._sweep(full=True)
            self._caught_up.set()
            while True:
                await self._sleep(self.reconcile_every)
                await self._sweep(full=False)

    async def sweep(self, *, full: bool = False) -> SweepRecord:
        """List the inbox (``full``: all of it; else from the high-water mark minus the safety
        margin), queue every fax not complete, wait for their downloads, then move the mark and
        save the state. Sweeps run one at a time; the catch-up is the first, full one."""
        if self._queue is None or self._queue.closed:
            raise RuntimeError("the mirror is not running")
        return await self._sweep(full=full)

    async def _sweep(self, *, full: bool) -> SweepRecord:
        assert self._sweep_lock is not None and self._queue is not None
        async with self._sweep_lock:
            started = self._clock()
            since = None if full else sweep_from(self._state.high_water_mark, self.safety_margin)
            sweep = SweepTracker()
            self._sweeps.add(sweep)
            error: str | None = None
            try:
                try:
                    async for fax in self.client.received.iter(page_size=self._page_size, from_date=since):
                        await self._consider(sweep, fax)
                except (AuthenticationError, PermissionDeniedError):
                    raise  # a key the API refuses: no later sweep can do better
                except AudianError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    logger.warning("sweep stopped after %d faxes: %s", sweep.listed, error)
                sweep.listing_done = True
                sweep.check()
                if error is None:
                    await sweep.settled.wait()
                    if sweep.waiting:  # the mirror began to stop: what was queued is not done
                        error = "stopped before the sweep's faxes were done"
            finally:
                self._sweeps.discard(sweep)
            if error is not None:
                result, mark = "error", self._state.high_water_mark
            else:
                result = "ok" if sweep.held_back is None else "incomplete"
                mark = advance_mark(self._state.high_water_mark, listed_max=sweep.listed_max, held_back=sweep.held_back)
            record = SweepRecord(
                at=started,
                result=result,
                full=full,
                listed=sweep.listed,
                downloaded=sweep.downloaded,
                failed=sweep.failed,
                error=error,
            )
            self._state = MirrorState(high_water_mark=mark, last_sweep=record)
            await run_blocking(save_state, self.dest_dir, self._state)
            await self._save_journal()
            if self._archiver is not None and error is None:
                await self._archiver.run()
            return record

    async def _consider(self, sweep: SweepTracker, fax: ReceivedFax) -> None:
        assert self._queue is not None
        sweep.listed += 1
        sweep.listed_max = fax.received_at if sweep.listed_max is None else max(sweep.listed_max, fax.received_at)
        if self._complete(fax):
            return
        if not self._allowed(fax):
            await self._refuse(fax, "sweep")
            return
        sweep.waiting.add(fax.id)
        await self._queue.put_sweep(fax)  # False: already queued or in flight; its outcome settles it
