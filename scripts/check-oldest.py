"""Check that a venv holds every runtime dependency at exactly its declared lower bound.

``make test-oldest`` installs the project with uv's ``--resolution lowest-direct``; a conflict with
another requirement (a test tool asking for a newer release, say) would make uv pick something
newer without a word, and the run would no longer test the bounds. This fails on any such drift.
Run it with the venv's own Python: ``.venv-oldest/bin/python scripts/check-oldest.py``.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

RUNTIME_EXTRAS = ("cli", "emulator", "redis", "aiohttp", "otel")


def runtime_requirements(pyproject: Path) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    texts = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def lower_bound(req: Requirement) -> Version | None:
    bounds = [Version(spec.version) for spec in req.specifier if spec.operator in (">=", "==", "~=")]
    return max(bounds) if bounds else None


def main() -> int:
    problems = []
    seen = set()
    for req in runtime_requirements(Path(__file__).resolve().parent.parent / "pyproject.toml"):
        if req.name in seen or (req.marker is not None and not req.marker.evaluate()):
            continue
        seen.add(req.name)
        bound = lower_bound(req)
        try:
            installed = Version(version(req.name))
        except PackageNotFoundError:
            problems.append(f"{req.name}: not installed")
            continue
        mark = "ok" if bound == installed else "NOT THE LOWER BOUND"
        print(f"  {req.name:<12} {installed!s:<10} ({req.specifier or 'no bound'}) {mark}")
        if bound is None:
            problems.append(f"{req.name}: declared without a lower bound")
        elif bound != installed:
            problems.append(f"{req.name}: {installed} installed, lower bound {bound}")
    for problem in problems:
        print(f"check-oldest: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
