"""The examples run against the emulator and do what they say."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from audian_fax_async.emulator import AdminClient, Emulator

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, emulator: Emulator, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUDIAN_API_KEY": key, "AUDIAN_BASE_URL": emulator.base_url}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_bulk_download_example_archives_by_date_and_marks_processed(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    before = audian_admin.stats(audian_api_key)  # creates the account
    assert before["faxes"] > 0
    done = run_example("bulk_download.py", audian_emulator, audian_api_key, str(tmp_path))
    assert done.returncode == 0, done.stderr
    files = list(tmp_path.rglob("*.pdf"))
    assert files and all(len(p.relative_to(tmp_path).parts) == 4 for p in files)  # YYYY/MM/DD/id.pdf
    for path in files:
        assert audian_admin.document_sha256(audian_api_key, path.stem) == hashlib.sha256(path.read_bytes()).hexdigest()
    again = run_example("bulk_download.py", audian_emulator, audian_api_key, str(tmp_path))
    assert again.returncode == 0 and "0 downloaded" in again.stdout  # all were marked processed


def test_stream_example_hashes_each_document(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str
) -> None:
    done = run_example("stream_to_storage.py", audian_emulator, audian_api_key)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert len(lines) == 20
    for key, sha in lines:
        fax_id = key.removeprefix("faxes/").removesuffix(".pdf")
        assert audian_admin.document_sha256(audian_api_key, fax_id) == sha
    assert audian_admin.stats(audian_api_key)["downloads"]["highest"] <= 10
