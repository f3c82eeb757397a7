"""Serve an ASGI app with uvicorn on a free loopback port, inside the test's event loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anyio
import uvicorn


class _EmbeddedServer(uvicorn.Server):
    # The test runner owns signal handling.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def loopback_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 and a free port (TCP_NODELAY-capable: proto is TCP)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    return sock


@contextlib.asynccontextmanager
async def serve(app: Any, *, lifespan: Literal["auto", "on", "off"] = "auto") -> AsyncIterator[str]:
    """Serve ``app`` while inside; yields its base URL (``http://127.0.0.1:PORT``).

    The socket listens before uvicorn starts, so requests made at once wait in the backlog
    instead of failing: no polling for readiness.
    """
    sock = loopback_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan=lifespan, timeout_graceful_shutdown=2)
    server = _EmbeddedServer(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()
