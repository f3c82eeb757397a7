"""The mirror's ASGI app: ``POST /webhook`` (the receiver) and ``GET /healthz`` (its status).

Mount it in Starlette or FastAPI (``app.mount("/fax-mirror", mirror.app)``) or serve it alone.
While the mirror is not running (starting, shutting down), deliveries are answered 503 with
``Retry-After``, so the API delivers them again later; ``/healthz`` answers 503 while shutting down.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._mirror import Mirror

__all__ = ["MirrorApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _answer(send: Send, status: int, data: object, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(data, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class MirrorApp:
    """The ASGI app of one :class:`Mirror` (its :attr:`Mirror.app`)."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":  # served alone: the mirror is run by whoever serves it
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        path = path.rstrip("/") or "/"
        method = scope.get("method", "")
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                await _answer(send, 405, {"error": "GET only"}, {"allow": "GET, HEAD"})
                return
            status = self.mirror.status()
            await _answer(send, 200 if status.healthy else 503, status.to_json())
            return
        if path == "/webhook":
            if method == "POST" and not self.mirror.accepting:
                self.mirror.count_unavailable()
                reason = "shutting down" if self.mirror.state != "starting" else "starting"
                await _answer(send, 503, {"outcome": "unavailable", "reason": reason}, {"retry-after": "30"})
                return
            await self.mirror.receiver(scope, receive, send)
            return
        await _answer(send, 404, {"error": "not found: POST /webhook, GET /healthz"})
