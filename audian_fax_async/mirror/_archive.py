"""``Archiver``: ``archive_after``, the faxes older than so many days archived server-side once
their file verifies against the manifest (hashed again: the fax of a file changed since it was
recorded is not archived)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from .._blocking import run_blocking
from .._bulk import BulkDownload, ManifestEntry
from .._exceptions import AudianError
from .._models import FaxStatus, ReceivedFax
from ._status import MirrorEvent, MirrorEventKind

if TYPE_CHECKING:
    from .._client import FaxClient

__all__ = ["Archiver"]

logger = logging.getLogger("audian_fax_async.mirror")


class Archiver:
    """Archives what the mirror's engine holds and the API lists as older than ``days``."""

    def __init__(
        self,
        client: FaxClient,
        engine: BulkDownload,
        *,
        days: float,
        page_size: int,
        clock: Callable[[], datetime],
        on_event: Callable[[MirrorEvent], None],
    ) -> None:
        self.client, self.engine, self.days = client, engine, days
        self._page_size, self._clock, self._on_event = page_size, clock, on_event

    async def run(self) -> None:
        """One pass; an API error stops it (the next sweep's pass goes on)."""
        cutoff = self._clock() - timedelta(days=self.days)
        try:
            # Only faxes not archived yet are listed: once archived, a fax costs no pass anything.
            for status in (FaxStatus.RECEIVED, FaxStatus.PROCESSED):
                async for fax in self.client.received.iter(page_size=self._page_size, status=status, to_date=cutoff):
                    await self._archive(fax)
        except AudianError as exc:
            logger.warning("archiving stopped: %s", exc)

    async def _archive(self, fax: ReceivedFax) -> None:
        entry = self.engine.completed.get(fax.id)
        if entry is None or entry.marked == FaxStatus.ARCHIVED.value:
            return
        if not await run_blocking(self._verifies, entry):
            logger.warning("fax %s: %s does not match the manifest; not archived", fax.id, entry.path)
            return
        await self.client.received.archive(fax.id)
        await self.engine.record(attrs.evolve(entry, marked=FaxStatus.ARCHIVED.value))
        self._on_event(
            MirrorEvent(
                kind=MirrorEventKind.ARCHIVED,
                fax_id=fax.id,
                source="sweep",
                at=self._clock(),
                path=self.engine.dest_dir / entry.path,
            )
        )

    def _verifies(self, entry: ManifestEntry) -> bool:
        digest = hashlib.sha256()
        try:
            with (self.engine.dest_dir / entry.path).open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return False
        return digest.hexdigest() == entry.sha256
