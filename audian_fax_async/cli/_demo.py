"""``audian-fax demo``: a bulk download against the bundled emulator, with faults, verified."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click
from rich.console import Console

from .._bulk import MANIFEST_NAME, Manifest
from .._client import FaxClient
from .._models import DownloadOutcome, OutcomeKind
from .._retry import RetryPolicy
from ._common import fail, run_async
from ._progress import run_bulk

if TYPE_CHECKING:
    from anyio.abc import Process

    from ..emulator import AdminClient

__all__ = ["demo_command"]

DEMO_KEY = "demo-key"
#: The emulator's named fault profiles (``audian_fax_async.emulator.PROFILES``; a test keeps them equal).
FAULT_PROFILES = ("chaos", "flaky", "none")


def _clear_previous(dest: Path) -> int:
    """Remove the files an earlier demo run recorded in its manifest (and nothing else)."""
    manifest = Manifest(dest)
    entries = manifest.load()
    for entry in entries.values():
        target = dest / entry.path
        if target.is_file():
            target.unlink()
    if manifest.path.exists():
        manifest.path.unlink()
    return len(entries)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _head_and_size(path: Path) -> tuple[bytes, int]:
    with path.open("rb") as handle:
        return handle.read(5), os.fstat(handle.fileno()).st_size


async def _read_urls(process: Process) -> tuple[str, str]:
    """The API and admin URLs the emulator prints on its first line."""
    assert process.stdout is not None
    buffer = b""
    with anyio.fail_after(30):
        async for chunk in process.stdout:
            buffer += chunk
            if b"\n" in buffer:
                break
    match = re.search(rb"API (\S+)\s+admin (\S+)", buffer)
    if match is None:
        said = buffer.decode(errors="replace").strip()
        code = await process.wait()
        fail(f"the emulator did not start (exit status {code}){': ' + said if said else ''}")
    return match.group(1).decode(), match.group(2).decode()


def _verify(admin: AdminClient, outcomes: list[DownloadOutcome], console: Console) -> tuple[dict[str, Any], int, int]:
    """Compare every saved file with the emulator's own document: sha256, size and PDF signature."""
    verified = mismatched = 0
    with admin:
        stats = admin.stats(DEMO_KEY)
        for outcome in outcomes:
            if outcome.kind is OutcomeKind.FAILED or outcome.path is None:
                continue
            expected = admin.document_sha256(DEMO_KEY, outcome.fax.id)
            head, size = _head_and_size(outcome.path)
            if _sha256(outcome.path) == expected and head == b"%PDF-" and size == outcome.fax.file_size:
                verified += 1
            else:
                mismatched += 1
                console.print(f"[red]MISMATCH[/red] {outcome.path}")
    return stats, verified, mismatched


@click.command("demo")
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=Path("demo-faxes"),
    show_default=True,
    help="Folder the faxes are downloaded into (an earlier demo run's files there are removed first, unless --keep).",
)
@click.option("--faxes", default=300, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option(
    "--faults",
    "profile",
    default="chaos",
    show_default=True,
    type=click.Choice(FAULT_PROFILES),
    help="Emulator fault profile (as audian-fax emulator --faults).",
)
@click.option("--latency", default=0.02, show_default=True, type=float, help="Seconds added to every request.")
@click.option(
    "--bandwidth",
    default=2_000_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bytes per second of each download, as from a far-away API.",
)
@click.option("--max-retries", default=8, show_default=True, type=click.IntRange(0, 20))
@click.option("--keep", is_flag=True, help="Keep files of an earlier demo run (the rerun then skips them).")
@run_async
async def demo_command(
    dest: Path, faxes: int, seed: int, profile: str, latency: float, bandwidth: int, max_retries: int, keep: bool
) -> None:
    """Start the emulator on loopback with faults, bulk-download every fax into the --dest folder,
    verify each file.

    Needs the 'emulator' and 'cli' extras.
    """
    try:
        from ..emulator import AdminClient
    except ImportError:
        fail("the demo needs the 'emulator' extra: pip install 'audian-fax-async[emulator,cli]'")
    console = Console(stderr=False)
    try:
        await anyio.to_thread.run_sync(lambda: dest.mkdir(parents=True, exist_ok=True))
    except OSError as exc:
        fail(f"cannot create the folder {dest}: {exc.strerror or exc}")
    if not keep:
        removed = await anyio.to_thread.run_sync(_clear_previous, dest)
        if removed:
            console.print(f"[dim]removed {removed} files of an earlier demo run from {dest}[/dim]")
    # The emulator runs in its own process, as a real API would: the client is what this measures.
    command = [
        sys.executable, "-m", "audian_fax_async.emulator", "--host", "127.0.0.1", "--port", "0",
        "--faxes", str(faxes), "--seed", str(seed), "--faults", profile, "--latency", str(latency),
        "--bandwidth", str(bandwidth), "--log-level", "error",
    ]  # fmt: skip
    async with await anyio.open_process(command, stderr=None) as process:
        try:
            base_url, admin_url = await _read_urls(process)
            console.print(
                f"[bold]Emulator[/bold] on {base_url}: {faxes} faxes, faults '{profile}' "
                f"(500/503/429, dropped and truncated bodies), {latency * 1000:.0f} ms latency, "
                f"{bandwidth / 1e6:g} MB/s per download"
            )
            async with FaxClient(
                DEMO_KEY,
                base_url=base_url,
                retry_policy=RetryPolicy(max_retries=max_retries, initial_delay=0.2, max_delay=2.0),
            ) as client:
                summary = await run_bulk(
                    lambda on_progress: client.received.download_all(dest, on_progress=on_progress),
                    json_lines=False,
                    console=console,
                    keep_outcomes=True,
                )
            stats, verified, mismatched = await anyio.to_thread.run_sync(
                _verify, AdminClient(admin_url), summary.outcomes or [], console
            )
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have exited on its own
                process.terminate()
    leftovers = await anyio.to_thread.run_sync(lambda: list(dest.rglob("*.part")))
    where = await anyio.to_thread.run_sync(dest.resolve)
    downloads = stats.get("downloads", {})
    requests = stats.get("requests", {})
    faults_429 = sum(int(n) for route in requests.values() for code, n in route.items() if code == "429")
    refused = int(downloads.get("refused", 0))
    console.print()
    console.print("[bold]Summary[/bold]")
    for line in summary.lines():
        console.print("  " + line)
    console.print(
        f"  concurrency: highest the emulator saw: {downloads.get('highest')} (account limit 10); "
        f"downloads refused for the limit: {refused}; injected 429s survived: {faults_429 - refused}"
    )
    console.print(
        f"  verified:    {verified}/{summary.downloaded + summary.skipped} files byte-identical to the emulator's "
        f"documents (sha256, size, %PDF); {mismatched} mismatched; {len(leftovers)} partial files left"
    )
    console.print(f"  files in:    {where}{os.sep} (manifest {MANIFEST_NAME})")
    if summary.failed or mismatched or leftovers:
        fail("the demo did not finish cleanly")
