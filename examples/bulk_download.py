"""Archive every received fax to disk, organised by date, and mark each processed once it is saved.

Run it against the bundled emulator (two shells)::

    python -m audian_fax_async.emulator --port 8443 --faxes 200 --faults flaky
    AUDIAN_API_KEY=demo AUDIAN_BASE_URL=http://127.0.0.1:8443/v2 python examples/bulk_download.py archive/

Rerun it at any time (also after Ctrl-C or a crash): faxes already on disk are skipped, the rest are
downloaded. The exit status is 1 when any fax failed.
"""

from __future__ import annotations

import sys

import anyio

from audian_fax_async import FaxClient, OutcomeKind


async def main(dest: str) -> int:
    counts = dict.fromkeys(OutcomeKind, 0)
    async with (
        FaxClient() as client,
        client.received.download_all(
            dest,
            status="received",
            after="processed",
            path_template="{received_at:%Y/%m/%d}/{id}.{ext}",
        ) as outcomes,
    ):
        async for outcome in outcomes:
            counts[outcome.kind] += 1
            if outcome.kind is OutcomeKind.FAILED:
                print(f"failed {outcome.fax.id}: {outcome.error}", file=sys.stderr)
    print(", ".join(f"{n} {kind}" for kind, n in counts.items()))
    return 1 if counts[OutcomeKind.FAILED] else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "archive"))
