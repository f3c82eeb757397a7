"""One worker process of the multi-process tests: downloads its share of an account's faxes.

Run as ``python redis_download_worker.py --redis URL --base-url URL --api-key KEY --dest DIR ...``.
``--tasks`` tasks (spread over two ``FaxClient`` sharing one ``RedisLimiter``) download the faxes
whose position in the listing is ``--worker`` modulo ``--workers`` (or exactly ``--ids``). Prints one
JSON line per fax (``done`` with the file's SHA-256, or ``failed`` with the error's type) and a last
``stats`` line with the limiter's view and the acquire waits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from audian_fax_async import FaxClient, ReceivedFax
from audian_fax_async.redis import RedisLimiter


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    limiter = RedisLimiter.from_url(
        args.redis,
        lease=args.lease,
        renew_interval=args.renew,
        reconnect_window=args.reconnect_window,
        quiet_period=args.quiet,
    )
    clients = [FaxClient(api_key=args.api_key, base_url=args.base_url, limiter=limiter) for _ in range(2)]
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        faxes = [fax async for fax in clients[0].received.iter(page_size=100)]
        faxes.sort(key=lambda fax: fax.id)
        if args.ids:
            wanted = set(args.ids.split(","))
            mine = [fax for fax in faxes if fax.id in wanted]
        else:
            mine = [fax for i, fax in enumerate(faxes) if i % args.workers == args.worker]
        emit(event="start", faxes=len(mine), account=clients[0].account)
        send, receive = anyio.create_memory_object_stream[ReceivedFax](len(mine) or 1)
        for fax in mine:
            send.send_nowait(fax)
        send.close()

        async def task(client: FaxClient) -> None:
            async with receive.clone() as queue:
                async for fax in queue:
                    try:
                        result = await client.received.download(fax.id, dest, fax=fax, overwrite=True)
                    except Exception as exc:
                        emit(event="failed", id=fax.id, error=type(exc).__name__, message=str(exc)[:300])
                    else:
                        digest = hashlib.sha256(result.path.read_bytes()).hexdigest()
                        emit(event="done", id=fax.id, sha256=digest, reported=result.sha256)

        async with receive, anyio.create_task_group() as tg:
            for i in range(args.tasks):
                tg.start_soon(task, clients[i % 2])
        stats = limiter.statistics(clients[0].account)
        emit(
            event="stats",
            highest=stats.highest_in_use,
            total=stats.total_acquired,
            waits=limiter.acquire_waits(clients[0].account),
        )
    finally:
        for client in clients:
            await client.aclose()
        await limiter.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ids", default="")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--renew", type=float, default=0.5)
    parser.add_argument("--reconnect-window", type=float, default=5.0)
    parser.add_argument("--quiet", type=float, default=None)
    anyio.run(main, parser.parse_args())
