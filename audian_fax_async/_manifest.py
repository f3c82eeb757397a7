"""The record of completed faxes in a destination folder: ``.audian-manifest.jsonl``.

Append-only JSON lines. A line is written only after its file was fsynced and renamed into place,
and the manifest is fsynced after each line, so every line names a whole file. Each append starts
on a fresh line, so a line torn by a crash or a full disk never swallows the next; lines that do
not parse (torn, or not ours) are skipped on load.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import anyio
from attrs import frozen

from ._blocking import run_blocking
from ._exceptions import DestinationError

__all__ = ["MANIFEST_NAME", "Manifest", "ManifestEntry"]

logger = logging.getLogger("audian_fax_async")

MANIFEST_NAME = ".audian-manifest.jsonl"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_ENCODER = json.JSONEncoder(separators=(",", ":"))


@frozen
class ManifestEntry:
    """One completed fax in a destination folder."""

    id: str
    path: str
    bytes: int
    sha256: str
    marked: str | None = None


def parse_line(raw: bytes) -> ManifestEntry | None:
    """The entry of one manifest line, or None for a line that is torn, hostile or not ours."""
    if len(raw) > 64 * 1024:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    fax_id, path, size, sha, marked = (data.get(k) for k in ("id", "path", "bytes", "sha256", "marked"))
    if not (isinstance(fax_id, str) and isinstance(path, str) and isinstance(sha, str)):
        return None
    if isinstance(size, bool) or not isinstance(size, int | float) or not math.isfinite(size) or size < 0:
        return None
    if marked is not None and not isinstance(marked, str):
        return None
    return ManifestEntry(id=fax_id, path=path, bytes=int(size), sha256=sha, marked=marked)


class Manifest:
    """The manifest of ``folder``: load it, append lines (blocking :meth:`write`, or :meth:`append`)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_NAME
        self._lock = threading.Lock()  # writers in several worker threads: one line at a time
        self._fd: int | None = None  # kept open from the first line to close()
        self._unterminated = False  # whether the file may end inside a line

    def load(self) -> dict[str, ManifestEntry]:
        """Every entry, the last line of each fax winning (blocking)."""
        entries: dict[str, ManifestEntry] = {}
        flags = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | getattr(os, "O_CLOEXEC", 0)  # a FIFO must not block
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return entries
        except OSError as exc:
            raise DestinationError(f"cannot read the manifest {self.path}: {exc.strerror or exc}") from None
        if not _is_regular(fd):
            os.close(fd)
            raise DestinationError(f"the manifest {self.path} is not a regular file")
        with os.fdopen(fd, "rb") as handle:
            skipped = 0
            for raw in handle:
                if not raw.strip():
                    continue
                entry = parse_line(raw)
                if entry is None:
                    skipped += 1
                    continue
                entries[entry.id] = entry
        if skipped:
            logger.warning("skipped %d unreadable lines of %s", skipped, self.path)
        return entries

    async def append(self, entry: ManifestEntry) -> None:
        """Append ``entry`` and fsync, in a worker thread; a line is written whole or not at all."""
        with anyio.CancelScope(shield=True):
            await run_blocking(self.write, entry)

    def write(self, entry: ManifestEntry) -> None:
        """Append ``entry`` on a fresh line, then fsync (blocking: from a worker thread)."""
        line = _ENCODER.encode(
            {
                "id": entry.id,
                "path": entry.path,
                "bytes": entry.bytes,
                "sha256": entry.sha256,
                "marked": entry.marked,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        with self._lock:
            if self._fd is None:
                self._fd = self._open()
            # A line that a crash or a full disk left unterminated is ended first, never continued.
            data = memoryview((("\n" if self._unterminated else "") + line + "\n").encode())
            self._unterminated = True
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
            self._unterminated = False

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise DestinationError(f"cannot write the manifest {self.path}: {exc.strerror or exc}") from None
        if not _is_regular(fd):
            os.close(fd)
            raise DestinationError(f"the manifest {self.path} is not a regular file")
        size = os.fstat(fd).st_size
        self._unterminated = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        return fd

    def close(self) -> None:
        """Close the manifest file (a later line opens it again)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)
