"""Pipe fax documents to object storage without touching the local disk.

``received.stream()`` yields a document's chunks while holding one of the account's download slots,
resuming with ``Range`` if the connection drops. Here the "object storage" is a stand-in that hashes
what it receives; put your S3 multipart upload (or any async writer) in its place::

    AUDIAN_API_KEY=demo AUDIAN_BASE_URL=http://127.0.0.1:8443/v2 python examples/stream_to_storage.py
"""

from __future__ import annotations

import hashlib

import anyio

from audian_fax_async import FaxClient, ReceivedFax


class ObjectStore:
    """A stand-in for an object-storage upload: receives chunks, keeps only their hash."""

    def __init__(self) -> None:
        self.objects: dict[str, str] = {}

    async def upload(self, key: str, fax: ReceivedFax, client: FaxClient) -> None:
        digest = hashlib.sha256()
        async with client.received.stream(fax.id) as chunks:
            async for chunk in chunks:
                digest.update(chunk)  # e.g. await multipart.write(chunk)
        self.objects[key] = digest.hexdigest()


async def main(limit: int = 20) -> dict[str, str]:
    store = ObjectStore()
    async with FaxClient() as client, anyio.create_task_group() as tg:
        page = await client.received.list(limit=limit)
        for fax in page.faxes:  # the client's limiter keeps this at 10 downloads at once
            tg.start_soon(store.upload, f"faxes/{fax.id}.pdf", fax, client)
    for key, sha in store.objects.items():
        print(key, sha)
    return store.objects


if __name__ == "__main__":
    anyio.run(main)
