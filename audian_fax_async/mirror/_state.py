"""What a mirror keeps in its folder beside the manifest, and the pure rules that move it.

* ``.audian-mirror.json``: the high-water mark and the last sweep, replaced atomically after each
  sweep (written to a temporary file, fsynced, renamed, the folder fsynced).
* ``.audian-mirror-journal.jsonl``: append-only, fsynced line by line: each fax a delivery queued
  (its record, written before the delivery is answered) and each fax refused by the allow-list.
  Rewritten at start and after sweeps with only what is still pending.
* ``.audian-mirror.lock``: ``flock``-ed while a mirror runs (exclusively, or shared by mirrors
  that coordinate through a shared store); the kernel drops it when the process dies.

The high-water mark is the ``received_at`` up to which every listed fax is known complete (or
refused); a sweep lists from the mark minus a safety margin (faxes that become visible late).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import attrs
from attrs import frozen

from .._converter import format_datetime, parse_datetime, structure, unstructure
from .._download import fsync_dir
from .._exceptions import DestinationError, ValidationError
from .._models import ReceivedFax
from .._paths import safe_component

__all__ = [
    "JOURNAL_NAME",
    "LOCK_NAME",
    "STATE_NAME",
    "FolderLock",
    "Journal",
    "JournalContents",
    "MirrorState",
    "SweepRecord",
    "advance_mark",
    "journal_name",
    "journal_paths",
    "load_state",
    "save_state",
    "sweep_from",
]

STATE_NAME = ".audian-mirror.json"
JOURNAL_NAME = ".audian-mirror-journal.jsonl"
LOCK_NAME = ".audian-mirror.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@frozen
class SweepRecord:
    """How one sweep ended.

    ``result`` is ``"ok"`` (every listed fax complete or refused), ``"incomplete"`` (some failed or
    are held by another mirror: the mark stops before the earliest) or ``"error"`` (the listing
    failed: ``error`` says why). ``full`` is true for the catch-up sweep of the whole inbox.
    """

    at: datetime
    result: str
    full: bool = False
    listed: int = 0
    downloaded: int = 0
    failed: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        data = attrs.asdict(self)
        data["at"] = format_datetime(self.at)
        return data

    @classmethod
    def from_json(cls, data: object) -> SweepRecord | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                at=parse_datetime(data["at"]),
                result=str(data["result"]),
                full=bool(data.get("full", False)),
                listed=int(data.get("listed", 0)),
                downloaded=int(data.get("downloaded", 0)),
                failed=int(data.get("failed", 0)),
                error=str(data["error"]) if data.get("error") is not None else None,
            )
        except (KeyError, TypeError, ValueError, ValidationError):
            return None


@frozen
class MirrorState:
    """The mirror's persisted state (``.audian-mirror.json``)."""

    high_water_mark: datetime | None = None
    last_sweep: SweepRecord | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "version": 1,
            "high_water_mark": format_datetime(self.high_water_mark) if self.high_water_mark else None,
            "last_sweep": self.last_sweep.to_json() if self.last_sweep else None,
        }

    @classmethod
    def from_json(cls, data: object) -> MirrorState:
        if not isinstance(data, dict):
            return cls()
        mark = data.get("high_water_mark")
        try:
            parsed = parse_datetime(mark) if isinstance(mark, str) else None
        except ValidationError:
            parsed = None
        return cls(high_water_mark=parsed, last_sweep=SweepRecord.from_json(data.get("last_sweep")))


def sweep_from(mark: datetime | None, margin: timedelta) -> datetime | None:
    """Where a sweep's listing starts: the mark minus the margin (None: the whole inbox)."""
    return None if mark is None else mark - margin


def advance_mark(mark: datetime | None, *, listed_max: datetime | None, held_back: datetime | None) -> datetime | None:
    """The mark after a sweep that listed faxes up to ``listed_max``, of which the earliest not
    complete (failed, or another mirror's) was received at ``held_back``; it never moves back."""
    candidate = listed_max
    if held_back is not None:
        candidate = held_back if candidate is None else min(candidate, held_back)
    if candidate is None:
        return mark
    return candidate if mark is None else max(mark, candidate)


def _read_small(path: Path, limit: int = 64 * 1024 * 1024) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DestinationError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit)


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temporary file, fsync, rename, fsync dir)."""
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(temp, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise DestinationError(f"cannot write {path}: {exc.strerror or exc}") from None


def load_state(folder: Path) -> MirrorState:
    """The folder's state (an empty one when there is none or it cannot be parsed) (blocking)."""
    raw = _read_small(folder / STATE_NAME)
    if raw is None:
        return MirrorState()
    try:
        return MirrorState.from_json(json.loads(raw))
    except ValueError:
        return MirrorState()


def save_state(folder: Path, state: MirrorState) -> None:
    """Replace the folder's state atomically and durably (blocking)."""
    _replace(folder / STATE_NAME, json.dumps(state.to_json(), indent=1).encode() + b"\n")


@frozen
class JournalContents:
    """The journal's faxes: queued by a delivery (their records) and refused (their senders)."""

    queued: dict[str, ReceivedFax]
    refused: dict[str, str]


def read_journal(path: Path) -> JournalContents:
    """The queued and refused faxes of the journal at ``path``; torn or foreign lines are skipped."""
    queued: dict[str, ReceivedFax] = {}
    refused: dict[str, str] = {}
    raw = _read_small(path, limit=1 << 30)
    for line in (raw or b"").splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("queued"), dict):
            try:
                fax = structure(data["queued"], ReceivedFax)
            except ValidationError:
                continue
            queued[fax.id] = fax
        elif isinstance(data.get("refused"), str) and isinstance(data.get("from_number"), str):
            refused[data["refused"]] = data["from_number"]
    return JournalContents(queued, refused)


def journal_name(instance: str | None) -> str:
    """The journal's file name: the folder's own, or one per instance of mirrors sharing it."""
    if instance is None:
        return JOURNAL_NAME
    stem, suffix = JOURNAL_NAME.rsplit(".", 1)
    return f"{stem}-{safe_component(instance)}.{suffix}"


def journal_paths(folder: Path) -> list[Path]:
    """Every journal in ``folder`` (the folder's own and those of sharing instances)."""
    stem, suffix = JOURNAL_NAME.rsplit(".", 1)
    found = [folder / JOURNAL_NAME] if (folder / JOURNAL_NAME).exists() else []
    return found + sorted(folder.glob(f"{stem}-*.{suffix}"))


class Journal:
    """A journal of queued and refused faxes (blocking methods: call from a thread). Mirrors that
    share a folder each keep their own (``instance``), so that none rewrites another's."""

    def __init__(self, folder: Path, instance: str | None = None) -> None:
        self.path = folder / journal_name(instance)
        self._fd: int | None = None
        self._lock = threading.Lock()  # appends and rewrites come from several worker threads

    def load(self) -> JournalContents:
        """Every queued and refused fax; torn or foreign lines are skipped."""
        return read_journal(self.path)

    def _line(self, data: dict[str, object]) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode() + b"\n"

    def append_queued(self, fax: ReceivedFax) -> None:
        """Record that a delivery queued ``fax``, durably (fsynced before returning)."""
        self._append(self._line({"queued": unstructure(fax)}))

    def append_refused(self, fax_id: str, from_number: str) -> None:
        """Record that ``fax_id`` was refused (its sender is not allowed), durably."""
        self._append(self._line({"refused": fax_id, "from_number": from_number}))

    def _append(self, line: bytes) -> None:
        with self._lock:
            self._append_locked(line)

    def _append_locked(self, line: bytes) -> None:
        try:
            if self._fd is None:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC
                self._fd = os.open(self.path, flags, 0o644)
                size = os.fstat(self._fd).st_size
                if size:
                    line = b"\n" + line  # never continue a line a crash left torn
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            raise DestinationError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def rewrite(self, contents: JournalContents) -> None:
        """Replace the journal with ``contents`` (what is still pending), atomically."""
        lines = [self._line({"queued": unstructure(fax)}) for fax in contents.queued.values()]
        lines += [self._line({"refused": fax_id, "from_number": n}) for fax_id, n in contents.refused.items()]
        with self._lock:
            self._close_locked()
            _replace(self.path, b"".join(lines))

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class FolderLock:
    """The folder's ``flock``: exclusive for a mirror alone, shared by mirrors that coordinate."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, *, shared: bool) -> None:
        """Take the lock without waiting; :class:`DestinationError` if another mirror holds it."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
        except OSError as exc:
            raise DestinationError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DestinationError(
                    f"another mirror is running on {self.path.parent}"
                    + ("" if shared else " (mirrors share a folder only with a shared store: --redis)")
                ) from None
            raise DestinationError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock

    @staticmethod
    def held(folder: Path) -> bool:
        """Whether a mirror holds the folder's lock right now (blocking; never takes it for long)."""
        import fcntl

        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False
