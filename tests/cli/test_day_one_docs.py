"""What a new user reads before anything runs (issue 18, item 13): the licence, links that work where
the README is shown (the package index renders it without the repository), files the docs cite."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
SOURCES = sorted((REPO / "audian_fax_async").rglob("*.py")) + sorted((REPO / "examples").glob("*.py"))
#: A file of the repository named in prose or a docstring: docs/redis.md, examples/x.py, .ci/run...
CITED = re.compile(r"(?<![\w/.-])((?:docs|benchmarks|examples|tests|scripts|\.ci)/[\w./-]*[\w-])")


def test_the_declared_mit_licence_is_shipped() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n") and "audian-fax-async developers" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_readme_links_are_absolute() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r"<a\s[^>]*href=\"([^\"]+)\"", readme)
    assert targets, "the README has links"
    relative = [target for target in targets if not re.match(r"https?://", target)]
    assert relative == [], "relative links break on the package index: name the file in backticks instead"


def test_every_file_the_docs_and_docstrings_cite_exists() -> None:
    found: set[str] = set()
    missing: dict[str, list[str]] = {}
    for path in DOCS + SOURCES:
        for cited in CITED.findall(path.read_text(encoding="utf-8")):
            cited = cited.rstrip(".")
            found.add(cited)
            if not (REPO / cited).exists():
                missing.setdefault(cited, []).append(str(path.relative_to(REPO)))
    assert {"docs/redis.md", "docs/emulator.md", "benchmarks/README.md", "examples/fastapi_webhook.py"} <= found
    assert missing == {}
