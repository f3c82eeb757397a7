"""What a mirror reports: its status (``/healthz``, ``mirror status``) and one event per fax."""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

from attrs import frozen

from .._converter import format_datetime
from ._state import SweepRecord

__all__ = ["FaxCounts", "MirrorEvent", "MirrorEventKind", "MirrorStatus", "WebhookCounts"]


@frozen
class FaxCounts:
    """Faxes by where they stand: complete in the folder, queued, being downloaded, failed (their
    last attempt; a later sweep retries them) and refused (sender not allowed)."""

    complete: int = 0
    queued: int = 0
    in_flight: int = 0
    failed: int = 0
    refused: int = 0


@frozen
class WebhookCounts:
    """Webhook deliveries: every one answered, those seen before, those refused (forged, or not
    confirmed by the API) and those answered 503 (while starting or shutting down)."""

    seen: int = 0
    duplicate: int = 0
    refused: int = 0
    unavailable: int = 0


@frozen
class MirrorStatus:
    """A mirror's status. ``state`` is ``starting``, ``running``, ``shutting_down`` or ``stopped``
    (``stopped`` when read from the folder with no mirror running)."""

    state: str
    faxes: FaxCounts
    webhooks: WebhookCounts
    high_water_mark: datetime | None = None
    last_sweep: SweepRecord | None = None

    @property
    def healthy(self) -> bool:
        """Whether ``/healthz`` answers 200 (starting or running)."""
        return self.state in ("starting", "running")

    def to_json(self) -> dict[str, object]:
        """The ``/healthz`` document."""
        return {
            "status": self.state,
            "faxes": {
                "complete": self.faxes.complete,
                "queued": self.faxes.queued,
                "in_flight": self.faxes.in_flight,
                "failed": self.faxes.failed,
                "refused": self.faxes.refused,
            },
            "last_sweep": self.last_sweep.to_json() if self.last_sweep is not None else None,
            "high_water_mark": format_datetime(self.high_water_mark) if self.high_water_mark else None,
            "webhooks": {
                "seen": self.webhooks.seen,
                "duplicate": self.webhooks.duplicate,
                "refused": self.webhooks.refused,
                "unavailable": self.webhooks.unavailable,
            },
        }

    def line(self) -> str:
        """The status as one short line."""
        f = self.faxes
        sweep = "no sweep yet"
        if self.last_sweep is not None:
            sweep = f"last sweep {format_datetime(self.last_sweep.at)} {self.last_sweep.result}"
        return (
            f"{self.state}: {f.complete} complete, {f.queued} queued, {f.in_flight} in flight, {f.failed} failed, "
            f"{f.refused} refused; {sweep}; {self.webhooks.seen} deliveries ({self.webhooks.duplicate} duplicate)"
        )


class MirrorEventKind(enum.StrEnum):
    """What happened to one fax."""

    DOWNLOADED = "downloaded"
    FAILED = "failed"
    REFUSED = "refused"
    ARCHIVED = "archived"


@frozen
class MirrorEvent:
    """One fax's event, handed to ``on_event``: ``source`` is ``live`` (a webhook) or ``sweep``."""

    kind: MirrorEventKind
    fax_id: str
    source: str
    at: datetime
    path: Path | None = None
    bytes: int | None = None
    sha256: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "event": self.kind.value,
            "id": self.fax_id,
            "source": self.source,
            "at": format_datetime(self.at),
        }
        for name in ("bytes", "sha256", "error"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.path is not None:
            data["path"] = str(self.path)
        return data

    def line(self) -> str:
        """The event as one line of text."""
        if self.kind is MirrorEventKind.DOWNLOADED:
            return f"downloaded {self.fax_id} ({self.source}) -> {self.path} ({self.bytes:,} bytes)"
        if self.kind is MirrorEventKind.FAILED:
            return f"failed {self.fax_id} ({self.source}): {self.error}"
        if self.kind is MirrorEventKind.REFUSED:
            return f"refused {self.fax_id} ({self.source}): {self.error}"
        return f"archived {self.fax_id}"
