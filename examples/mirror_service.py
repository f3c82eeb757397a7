"""Embed the inbox mirror in a FastAPI service: its receiver mounted beside your own routes.

Run it against the emulator (three shells)::

    python -m audian_fax_async.emulator --port 8443 --faxes 20 --time-scale 0.001
    AUDIAN_API_KEY=demo AUDIAN_BASE_URL=http://127.0.0.1:8443/v2 python examples/mirror_service.py
    # subscribe the mirror and make a fax arrive:
    curl -X POST http://127.0.0.1:8443/v2/fax/webhooks -H "X-Auth-Token: demo" \\
         -H "Content-Type: application/json" \\
         -d '{"url": "http://127.0.0.1:8000/fax-mirror/webhook", "events": ["fax_received"]}'
    curl -X POST http://127.0.0.1:8443/_emulator/accounts/demo/arrivals \\
         -H "Content-Type: application/json" -d '{"faxes": [{}]}'
    curl http://127.0.0.1:8000/fax-mirror/healthz

At startup the mirror catches up (every fax not yet in ``fax-mirror/``), then takes each
``fax_received`` delivery at ``/fax-mirror/webhook`` and sweeps every five minutes for faxes whose
webhook never came; each fax is marked processed once its file is durable. At shutdown it lets the
downloads in flight finish (30 s at most) and saves its state in the folder.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from audian_fax_async import FaxClient
from audian_fax_async.mirror import Mirror, MirrorEvent

logger = logging.getLogger("mirror_service")


def create_app(client: FaxClient | None = None, *, dest_dir: str | Path = "fax-mirror") -> FastAPI:
    """The app. Without ``client`` one is made from ``AUDIAN_API_KEY`` / ``AUDIAN_BASE_URL`` and closed
    at shutdown; a client passed in stays open."""
    fax_client = client if client is not None else FaxClient()

    def on_event(event: MirrorEvent) -> None:
        logger.info("%s", event.line())

    mirror = Mirror(fax_client, dest_dir, after="processed", reconcile_every=300, on_event=on_event)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if client is None:
                await stack.enter_async_context(fax_client)
            # Catch-up, live queue and sweeps run in the mirror's task group while the app serves;
            # leaving it drains the downloads in flight.
            await stack.enter_async_context(mirror)
            yield

    app = FastAPI(title="fax mirror", lifespan=lifespan)
    app.state.mirror = mirror
    app.mount("/fax-mirror", mirror.app)  # POST /fax-mirror/webhook, GET /fax-mirror/healthz

    @app.get("/status")
    async def status() -> dict[str, object]:
        """The service's own route, beside the mounted mirror."""
        return {"mirror": mirror.status().line()}

    return app


if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app, factory=True, host="127.0.0.1", port=8000)
