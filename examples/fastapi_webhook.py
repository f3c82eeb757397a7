"""Receive ``fax_received`` webhooks in FastAPI: confirm each with the API, download the fax, mark it processed.

Run it against the emulator (three shells)::

    python -m audian_fax_async.emulator --port 8443 --faxes 0 --time-scale 0.001
    AUDIAN_API_KEY=demo AUDIAN_BASE_URL=http://127.0.0.1:8443/v2 python examples/fastapi_webhook.py
    # subscribe the app and make a fax arrive:
    curl -X POST http://127.0.0.1:8443/v2/fax/webhooks -H "X-Auth-Token: demo" \\
         -H "Content-Type: application/json" \\
         -d '{"url": "http://127.0.0.1:8000/webhooks/fax", "events": ["fax_received"]}'
    curl -X POST http://127.0.0.1:8443/_emulator/accounts/demo/arrivals \\
         -H "Content-Type: application/json" -d '{"faxes": [{}]}'

Each delivery is answered as soon as the event is de-duplicated and confirmed (the API knows the
fax and its numbers); the download runs in the receiver's background task group. A fax whose
handling fails stays ``received`` in the API: a periodic ``client.received.iter(status="received")``
sweep picks up anything a webhook missed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from starlette.routing import Route

from audian_fax_async import FaxClient, WebhookEventType
from audian_fax_async.webhooks import ConfirmedEvent, WebhookReceiver

logger = logging.getLogger("fastapi_webhook")


def create_app(client: FaxClient | None = None, *, dest_dir: str | Path = "received-faxes") -> FastAPI:
    """The app. Without ``client`` one is made from ``AUDIAN_API_KEY`` / ``AUDIAN_BASE_URL`` and closed
    at shutdown; a client passed in stays open."""
    fax_client = client if client is not None else FaxClient()
    dest = Path(dest_dir)

    async def on_fax(confirmed: ConfirmedEvent) -> None:
        fax = confirmed.fax  # the API's record, not the sender's word
        if confirmed.event.event != WebhookEventType.FAX_RECEIVED or fax.is_processed:
            return
        result = await fax_client.received.download(fax.id, dest, fax=fax)
        await fax_client.received.mark_processed(fax.id)
        logger.info("fax %s from %s: %d bytes at %s", fax.id, fax.from_number, result.bytes, result.path)

    receiver = WebhookReceiver(on_fax, confirm_with=fax_client, background=True)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(lambda: dest.mkdir(parents=True, exist_ok=True))
        async with AsyncExitStack() as stack:
            if client is None:
                await stack.enter_async_context(fax_client)
            # A routed or mounted ASGI app gets no lifespan of its own: run the receiver's
            # background task group here. Shutdown waits for downloads in progress.
            await stack.enter_async_context(receiver)
            yield

    app = FastAPI(title="fax webhooks", lifespan=lifespan)
    app.state.receiver = receiver
    # A route matches the exact path (a Mount would redirect "/webhooks/fax" to "/webhooks/fax/").
    app.router.routes.append(Route("/webhooks/fax", receiver, methods=["POST"]))

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        stats = receiver.statistics()
        return {"ok": True, "pending": stats.background_pending, "outcomes": dict(stats.outcomes)}

    return app


if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app, factory=True, host="127.0.0.1", port=8000)
