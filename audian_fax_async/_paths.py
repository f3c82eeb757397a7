"""Safe file names and layouts for downloaded faxes. Pure, except the leftover-file sweep.

A fax id comes from the network: ``../../etc/x``, a NUL byte or a path separator must never
let a download write outside the folder the user chose. Every name is reduced to a safe set
of characters, and a layout from ``path_template`` is checked to stay inside the folder.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._exceptions import DestinationError, InvalidRequestError
from ._models import ReceivedFax

__all__ = [
    "PARTIAL_SUFFIX",
    "check_template",
    "cleanup_partial_files",
    "is_inside",
    "partial_name",
    "render_template",
    "safe_component",
    "safe_filename",
]

PARTIAL_SUFFIX = ".part"
_PARTIAL_RE = re.compile(r"^\..+\.audian-(\d+)-[0-9a-f]+\.part$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_MAX_COMPONENT = 180
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def safe_component(text: str) -> str:
    """One safe path component: letters, digits and ``._+-`` only; never empty, ``.`` or ``..``.

    When anything had to change, a short hash of the original is appended so that two
    different ids never map to the same name.
    """
    cleaned = _UNSAFE.sub("_", text).lstrip(".")
    changed = cleaned != text
    if len(cleaned) > _MAX_COMPONENT:
        cleaned, changed = cleaned[:_MAX_COMPONENT], True
    if not cleaned or cleaned.split(".")[0].upper() in _WINDOWS_RESERVED:
        cleaned, changed = "fax" + (f"_{cleaned}" if cleaned else ""), True
    if changed:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        cleaned = f"{cleaned}-{digest}"
    return cleaned


def _extension(fmt: str | None) -> str:
    ext = re.sub(r"[^a-z0-9]", "", (fmt or "pdf").lower())[:8]
    return ext or "pdf"


def safe_filename(fax_id: str, fmt: str | None = "pdf") -> str:
    """The file name for a fax: ``<safe id>.<format>``."""
    return f"{safe_component(fax_id)}.{_extension(fmt)}"


_serial = itertools.count(random.SystemRandom().getrandbits(28))


def partial_name(final: Path) -> Path:
    """A temporary sibling of ``final`` that names the writing process (for the crash sweep)."""
    # The PID lets the sweep tell a dead writer's file from a live one's; the counter (with a random
    # start per process) keeps names apart within it. O_EXCL refuses a name that exists anyway.
    return final.with_name(f".{final.name}.audian-{os.getpid()}-{next(_serial):08x}{PARTIAL_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_partial_files(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Remove temporary files left in ``folder`` by a download whose process has died.

    Files of live processes (including this one) are left alone. Returns what was removed.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for root, _dirs, files in walker:
        for name in files:
            match = _PARTIAL_RE.match(name)
            if match and not _pid_alive(int(match.group(1))):
                path = Path(root) / name
                try:
                    path.unlink()
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed


class _SafeFormatter(string.Formatter):
    """``str.format`` without attribute or index access (``{id.__class__}`` is refused)."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        if not field_name.isidentifier():
            raise DestinationError(f"path_template field {field_name!r} is not allowed (plain names only)")
        return super().get_field(field_name, args, kwargs)


_FORMATTER = _SafeFormatter()


def template_fields(fax: ReceivedFax) -> dict[str, Any]:
    received: datetime = fax.received_at
    return {
        "id": safe_component(fax.id),
        "received_at": received,
        "created_at": fax.created_at or received,
        "from_number": safe_component(fax.from_number),
        "to_number": safe_component(fax.to_number),
        "from_name": safe_component(fax.from_name or "unknown"),
        "status": safe_component(str(fax.status)),
        "format": _extension(fax.format),
        "ext": _extension(fax.format),
        "pages": fax.pages,
        "file_size": fax.file_size or 0,
    }


def check_template(template: object) -> None:
    """Refuse a ``path_template`` that cannot lay out a fax (an unknown field, a bad format), before
    anything is listed, with :class:`~audian_fax_async.InvalidRequestError`."""
    if not isinstance(template, str) or not template.strip():
        raise InvalidRequestError(f"path_template must be a non-empty string, got {template!r}")
    sample = ReceivedFax(
        id="fax_sample",
        from_number="+10000000000",
        to_number="+10000000000",
        pages=1,
        received_at=datetime(2024, 1, 1, tzinfo=UTC),
        status="received",
    )
    try:
        render_template(template, sample)
    except (DestinationError, KeyError, IndexError, ValueError, AttributeError) as exc:
        raise InvalidRequestError(f"invalid path_template {template!r}: {exc}") from None


def render_template(template: str, fax: ReceivedFax) -> Path:
    """A relative path for ``fax`` laid out by ``template``, every component made safe.

    Example: ``"{received_at:%Y/%m/%d}/{id}.{ext}"``. Available fields: id, received_at,
    created_at, from_number, to_number, from_name, status, format, ext, pages, file_size.
    """
    try:
        rendered = _FORMATTER.format(template, **template_fields(fax))
    except DestinationError:
        raise
    except (KeyError, ValueError, IndexError, AttributeError) as exc:
        raise DestinationError(f"invalid path_template {template!r}: {exc}") from None
    parts = [p for p in rendered.replace("\\", "/").split("/") if p not in ("", ".")]
    safe_parts = [safe_component(p) if p == ".." or _UNSAFE.search(p) or p.startswith(".") else p for p in parts]
    if not safe_parts:
        raise DestinationError(f"path_template {template!r} rendered an empty path for fax {fax.id!r}")
    return Path(*safe_parts)


def is_inside(path: Path, folder: Path) -> bool:
    """True when ``path`` resolves to a place inside ``folder`` (symlinks followed)."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
