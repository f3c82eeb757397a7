"""Small checks shared by the hostile tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from audian_fax_async import Manifest

__all__ = ["BOUND", "manifest_lines", "partial_files", "sha256", "shows_key"]

#: The longest any one hostile test may run: a safety bound, never what a test measures.
BOUND = 10.0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def partial_files(folder: Path) -> list[Path]:
    """Temporary download files (``.NAME.audian-PID-XXXX.part``) anywhere under ``folder``."""
    return sorted(p for p in folder.rglob("*.part"))


def manifest_lines(folder: Path) -> list[dict[str, Any]]:
    """Every line of the folder's manifest that parses as a JSON object (torn ones left out)."""
    path = Manifest(folder).path
    lines = []
    for raw in path.read_bytes().splitlines():
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if isinstance(data, dict):
            lines.append(data)
    return lines


def shows_key(text: str | bytes, key: str) -> bool:
    """Whether ``text`` holds any 8 characters of ``key`` in a row (its mask shows only the last 4)."""
    haystack = text.decode("latin-1") if isinstance(text, bytes) else text
    return any(key[i : i + 8] in haystack for i in range(len(key) - 7))
