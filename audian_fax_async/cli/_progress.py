"""Running a bulk download with a rich progress bar (or JSON lines) and a summary."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import click
from attrs import define
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from .._bulk import BulkDownload, BulkProgress
from .._models import DownloadOutcome, OutcomeKind
from ._common import plain

__all__ = ["BulkSummary", "outcome_json", "run_bulk"]


@define
class BulkSummary:
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    retries: int = 0
    seconds: float = 0.0
    outcomes: list[DownloadOutcome] | None = None

    @property
    def total(self) -> int:
        return self.downloaded + self.skipped + self.failed

    def lines(self) -> list[str]:
        rate = self.bytes / self.seconds / 1e6 if self.seconds else 0.0
        per_s = self.downloaded / self.seconds if self.seconds else 0.0
        return [
            f"faxes:       {self.total} ({self.downloaded} downloaded, {self.skipped} skipped, {self.failed} failed)",
            f"bytes:       {self.bytes:,} in {self.seconds:.2f} s ({rate:.1f} MB/s, {per_s:.1f} faxes/s)",
            f"retries:     {self.retries} survived",
        ]


def outcome_json(outcome: DownloadOutcome) -> str:
    return json.dumps(
        {
            "id": outcome.fax.id,
            "outcome": outcome.kind.value,
            "path": str(outcome.path) if outcome.path else None,
            "bytes": outcome.bytes,
            "sha256": outcome.sha256,
            "marked": outcome.marked.value if outcome.marked else None,
            "error": f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else None,
        }
    )


async def run_bulk(
    make_bulk: Callable[[Callable[[BulkProgress], None]], BulkDownload],
    *,
    json_lines: bool,
    console: Console,
    keep_outcomes: bool = False,
) -> BulkSummary:
    """Run the bulk download ``make_bulk(on_progress)`` to its end with a progress bar on ``console``.

    JSON lines (``json_lines``) go to stdout, one per outcome.
    """
    summary = BulkSummary(outcomes=[] if keep_outcomes else None)
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[faxes]}"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("[dim]{task.fields[extra]}"),
    )
    started = time.monotonic()
    last_update = 0.0
    with Progress(*columns, console=console, transient=False, refresh_per_second=8) as bar:
        task: TaskID = bar.add_task("Downloading", total=None, faxes="0/0 faxes", extra="")

        def show(p: BulkProgress, force: bool = False) -> None:
            nonlocal last_update
            now = time.monotonic()
            if not force and now - last_update < 0.1:
                return
            last_update = now
            listed = f"{p.listed}" if p.listing_done else f"{p.listed}+"
            bar.update(
                task,
                completed=max(p.bytes, 0),
                total=p.listed_bytes or None,
                faxes=f"{p.finished}/{listed} faxes",
                extra=f"retries {p.retries}, failed {p.failed}" if p.retries or p.failed else "",
            )

        bulk = make_bulk(show)
        async with bulk as outcomes:
            async for outcome in outcomes:
                if outcome.kind is OutcomeKind.DOWNLOADED:
                    summary.downloaded += 1
                    summary.bytes += outcome.bytes
                elif outcome.kind is OutcomeKind.SKIPPED:
                    summary.skipped += 1
                else:
                    summary.failed += 1
                    if not json_lines:
                        console.print(Text.assemble(("failed ", "red"), plain(f"{outcome.fax.id}: {outcome.error}")))
                if json_lines:
                    click.echo(outcome_json(outcome))
                if summary.outcomes is not None:
                    summary.outcomes.append(outcome)
        show(bulk.progress, force=True)
    summary.retries = bulk.progress.retries
    summary.seconds = time.monotonic() - started
    return summary
