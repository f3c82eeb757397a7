"""Running a bulk download: a progress bar on a terminal, a plain line every few seconds elsewhere
(CI logs), JSON lines when asked, and the summary."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import click
from attrs import define, field, frozen
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.text import Text

from .._bulk import BulkDownload, BulkProgress, Manifest
from .._models import DownloadOutcome, OutcomeKind
from ._common import cli_words, plain

__all__ = ["BulkSummary", "Snapshot", "Tracker", "outcome_json", "remove_if_left_empty", "run_bulk"]

#: Seconds between two progress lines when the output is not a terminal.
LINE_INTERVAL = 5.0


def _megabytes(count: float) -> str:
    return f"{count / 1e6:,.1f} MB"


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


@frozen
class Snapshot:
    """What a progress display shows at one moment (computed by :meth:`Tracker.snapshot`).

    ``total`` is the number of matching faxes the listing's first page announced (None before it
    came); ``finished`` counts every fax that ended, skipped and failed ones included, so a finished
    run is a full bar. ``rate`` is bytes per second since the start; ``eta`` seconds left.
    """

    finished: int
    total: int | None
    bytes: int
    rate: float | None
    eta: float | None
    retries: int
    failed: int

    @property
    def faxes(self) -> str:
        return f"{self.finished}/{self.total} faxes" if self.total is not None else f"{self.finished} faxes"

    @property
    def speed(self) -> str:
        return f"{_megabytes(self.rate)}/s" if self.rate is not None else "-- MB/s"

    @property
    def remaining(self) -> str:
        return f"ETA {_duration(self.eta)}" if self.eta is not None else "ETA --"

    @property
    def extra(self) -> str:
        parts = [f"{self.retries} retries"] if self.retries else []
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)

    def line(self) -> str:
        """The progress as one plain line, for output that is not a terminal."""
        percent = f" ({100 * self.finished // self.total}%)" if self.total else ""  # 100% only when done
        extra = f", {self.extra}" if self.extra else ""
        return f"downloading: {self.faxes}{percent}, {_megabytes(self.bytes)} at {self.speed}, {self.remaining}{extra}"


@define
class Tracker:
    """What a display needs beyond the bulk download's counters: when it started and the sizes of
    the faxes that ended (for the time left)."""

    started: float
    settled_size: int = 0
    settled_transferred: int = 0

    def settle(self, outcome: DownloadOutcome) -> None:
        """Count one fax that ended."""
        self.settled_size += outcome.fax.file_size or outcome.bytes
        if outcome.kind is OutcomeKind.DOWNLOADED:
            self.settled_transferred += outcome.bytes

    def snapshot(self, progress: BulkProgress, now: float) -> Snapshot:
        total = progress.listed if progress.listing_done else progress.expected
        if total is not None:
            total = max(total, progress.listed)
        elapsed = now - self.started
        rate = progress.bytes / elapsed if progress.bytes > 0 and elapsed > 0 else None
        finished = progress.finished
        eta: float | None = None
        if total is not None and finished >= total and progress.listing_done:
            eta = 0.0
        elif total is not None and rate is not None and progress.listed:
            expected_bytes = progress.listed_bytes * (1 if progress.listing_done else total / progress.listed)
            in_flight = max(0, progress.bytes - self.settled_transferred)
            eta = max(0.0, expected_bytes - self.settled_size - in_flight) / rate
        elif total is not None and finished and elapsed > 0:
            eta = (total - finished) * elapsed / finished
        return Snapshot(
            finished=finished,
            total=total,
            bytes=progress.bytes,
            rate=rate,
            eta=eta,
            retries=progress.retries,
            failed=progress.failed,
        )


@define
class BulkSummary:
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    retries: int = 0
    seconds: float = 0.0
    outcomes: list[DownloadOutcome] | None = None
    #: Failed faxes whose file is on disk: only marking them failed.
    not_marked: list[tuple[str, Path]] = field(factory=list)

    @property
    def total(self) -> int:
        return self.downloaded + self.skipped + self.failed

    def lines(self) -> list[str]:
        rate = self.bytes / self.seconds / 1e6 if self.seconds else 0.0
        per_s = self.downloaded / self.seconds if self.seconds else 0.0
        lines = [
            f"faxes:       {self.total} ({self.downloaded} downloaded, {self.skipped} skipped, {self.failed} failed)"
        ]
        if self.not_marked:
            lines.append(
                f"             {len(self.not_marked)} of the failed are downloaded, not marked: a rerun marks them"
            )
        lines += [
            f"bytes:       {self.bytes:,} in {self.seconds:.2f} s ({rate:.1f} MB/s, {per_s:.1f} faxes/s)",
            f"retries:     {self.retries} (of downloads)",
        ]
        return lines


def outcome_json(outcome: DownloadOutcome, path: Path | None = None) -> str:
    """One outcome as a JSON line; ``path`` is where a failed fax's file is when only marking failed."""
    error = f"{type(outcome.error).__name__}: {cli_words(str(outcome.error))}" if outcome.error else None
    if path is not None and error is not None:
        error = f"downloaded, not marked: {error}"
    shown = outcome.path or path
    return json.dumps(
        {
            "id": outcome.fax.id,
            "kind": outcome.kind.value,
            "path": str(shown) if shown else None,
            "bytes": outcome.bytes,
            "sha256": outcome.sha256,
            "marked": outcome.marked.value if outcome.marked else None,
            "error": error,
        }
    )


def _on_disk(dest: Path, fax_id: str) -> Path | None:
    """The whole file of ``fax_id`` in ``dest`` if its manifest records one (blocking)."""
    entry = Manifest(dest).load().get(fax_id)
    if entry is None:
        return None
    path = dest / entry.path
    try:
        return path if path.is_file() and path.stat().st_size == entry.bytes else None
    except OSError:
        return None


def missing_folders(dest: Path) -> list[Path]:
    """The folders of ``dest`` that do not exist yet, deepest first (blocking)."""
    missing: list[Path] = []
    folder = dest.absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first: each is empty once the one inside it is gone
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or not ours any more): keep it and its parents


@contextlib.asynccontextmanager
async def remove_if_left_empty(dest: Path) -> AsyncIterator[None]:
    """Remove the folders of ``dest`` this run creates if it fails leaving them empty (a listing
    refused, say)."""
    created = await anyio.to_thread.run_sync(missing_folders, dest)
    try:
        yield
    except BaseException:
        if created:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_remove_empty, created)
        raise


async def run_bulk(
    make_bulk: Callable[[Callable[[BulkProgress], None]], BulkDownload],
    *,
    json_lines: bool,
    console: Console,
    keep_outcomes: bool = False,
    dest: Path | None = None,
    marking: bool = False,
    live: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
    interval: float = LINE_INTERVAL,
) -> BulkSummary:
    """Run the bulk download ``make_bulk(on_progress)`` to its end, showing its progress on ``console``.

    On a terminal (``live``, by default when ``console`` is one) a bar; otherwise a plain line every
    ``interval`` seconds of ``clock``. JSON lines (``json_lines``) go to stdout, one per outcome. With
    ``marking`` (``after=``), a failed fax whose file the manifest of ``dest`` records is reported as
    downloaded, not marked.
    """
    summary = BulkSummary(outcomes=[] if keep_outcomes else None)
    live = console.is_terminal if live is None else live
    tracker = Tracker(started=clock())
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[faxes]}"),
        TextColumn("{task.fields[size]}"),
        TextColumn("{task.fields[speed]}"),
        TextColumn("{task.fields[remaining]}"),
        TextColumn("[dim]{task.fields[extra]}"),
    )
    bar = Progress(*columns, console=console, transient=False, refresh_per_second=8, disable=not live)
    last_shown = tracker.started

    def show(progress: BulkProgress, force: bool = False) -> None:
        nonlocal last_shown
        now = clock()
        if not force and now - last_shown < (0.1 if live else interval):
            return
        last_shown = now
        snapshot = tracker.snapshot(progress, now)
        if live:
            bar.update(
                task,
                completed=snapshot.finished,
                total=snapshot.total,
                faxes=snapshot.faxes,
                size=_megabytes(snapshot.bytes),
                speed=snapshot.speed,
                remaining=snapshot.remaining,
                extra=snapshot.extra,
            )
        elif not force:
            console.print(Text(snapshot.line()), soft_wrap=True, highlight=False)

    with bar:
        task: TaskID = bar.add_task(
            "Downloading", total=None, faxes="0 faxes", size="", speed="", remaining="", extra=""
        )
        bulk = make_bulk(show)
        async with bulk as outcomes:
            async for outcome in outcomes:
                tracker.settle(outcome)
                on_disk: Path | None = None
                if outcome.kind is OutcomeKind.DOWNLOADED:
                    summary.downloaded += 1
                    summary.bytes += outcome.bytes
                elif outcome.kind is OutcomeKind.SKIPPED:
                    summary.skipped += 1
                else:
                    summary.failed += 1
                    if marking:
                        on_disk = outcome.path
                        if on_disk is None and dest is not None:
                            on_disk = await anyio.to_thread.run_sync(_on_disk, dest, outcome.fax.id)
                    if on_disk is not None:
                        summary.not_marked.append((outcome.fax.id, on_disk))
                    if not json_lines:
                        _print_failure(console, outcome, on_disk)
                if json_lines:
                    click.echo(outcome_json(outcome, on_disk))
                if summary.outcomes is not None:
                    summary.outcomes.append(outcome)
        show(bulk.progress, force=True)
    summary.retries = bulk.progress.retries
    summary.seconds = clock() - tracker.started
    return summary


def _print_failure(console: Console, outcome: DownloadOutcome, on_disk: Path | None) -> None:
    reason = plain(f"{type(outcome.error).__name__}: {cli_words(str(outcome.error))}")
    if on_disk is not None:
        text = Text.assemble(
            ("not marked ", "yellow"), plain(f"{outcome.fax.id}: downloaded to {on_disk}, but marking failed: "), reason
        )
    else:
        text = Text.assemble(("failed ", "red"), plain(f"{outcome.fax.id}: "), reason)
    console.print(text, soft_wrap=True, highlight=False)
