"""``read_status``: a mirror's folder as it stands on disk, read without a running mirror."""

from __future__ import annotations

import os
from pathlib import Path

from .._exceptions import DestinationError
from .._manifest import MANIFEST_NAME, Manifest
from ._state import STATE_NAME, FolderLock, journal_paths, load_state, read_journal
from ._status import FaxCounts, MirrorStatus, WebhookCounts

__all__ = ["read_status"]


def read_status(dest_dir: str | os.PathLike[str]) -> MirrorStatus:
    """The status of the mirror folder ``dest_dir`` from its files (blocking): faxes complete in
    the manifest, queued by deliveries and not complete yet, refused; the high-water mark and the
    last sweep. ``state`` is ``running`` while a mirror holds the folder's lock, else ``stopped``.
    Faxes in flight and failures are known only to a running mirror (its ``/healthz``).

    Raises :class:`~audian_fax_async.DestinationError` if the folder is not a mirror's.
    """
    folder = Path(dest_dir)
    if not any((folder / name).exists() for name in (STATE_NAME, MANIFEST_NAME)) and not journal_paths(folder):
        raise DestinationError(f"{folder} is not a mirror folder (no {STATE_NAME} or {MANIFEST_NAME})")
    complete = Manifest(folder).load()
    queued: set[str] = set()
    refused: set[str] = set()
    for path in journal_paths(folder):
        journal = read_journal(path)
        queued.update(journal.queued)
        refused.update(journal.refused)
    state = load_state(folder)
    return MirrorStatus(
        state="running" if FolderLock.held(folder) else "stopped",
        faxes=FaxCounts(
            complete=len(complete),
            queued=len(queued - complete.keys()),
            refused=len(refused),
        ),
        webhooks=WebhookCounts(),
        high_water_mark=state.high_water_mark,
        last_sweep=state.last_sweep,
    )
