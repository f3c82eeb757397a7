"""ASGI responses of the emulator: JSON errors, cut bodies and the streamed document download."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.lowlevel
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "CutResponse",
    "DeliberateClose",
    "DocumentResponse",
    "error_response",
    "install_log_filter",
    "json_response",
]


class DeliberateClose(Exception):
    """Raised after a partial body so the server closes the connection (a drop or truncation fault)."""


class _HideDeliberateClose(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, DeliberateClose):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


_FILTER = _HideDeliberateClose()


def install_log_filter() -> None:
    """Keep uvicorn from logging deliberate connection cuts as application errors."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def json_response(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON response."""
    return JSONResponse(data, status_code=status_code, headers=headers)


def error_response(status_code: int, code: str, message: str, *, retry_after: int | None = None) -> JSONResponse:
    """The API's error shape: ``{"error": {"code": ..., "message": ...}}``."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status_code, headers=headers)


class CutResponse(Response):
    """Sends ``inner``'s headers and only part of its body, then has the connection closed."""

    def __init__(self, inner: Response, keep: int) -> None:
        self.inner = inner
        self.keep = keep
        self.status_code = inner.status_code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.inner.status_code, "headers": self.inner.raw_headers})
        await send({"type": "http.response.body", "body": self.inner.body[: self.keep], "more_body": True})
        raise DeliberateClose


def dumps(data: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(data, separators=(",", ":")).encode()


def _nothing() -> None:
    return None


class DocumentResponse(Response):
    """Streams ``length`` bytes of a document from ``chunks``, honouring the fault knobs.

    ``on_chunk`` is told the size of each chunk sent (statistics); ``on_done`` runs once when the
    body is fully sent, cut, or the client goes away, which is when a download slot is released.
    """

    def __init__(
        self,
        *,
        status_code: int,
        headers: dict[str, str],
        chunks: Iterable[bytes],
        length: int,
        cut_at: int | None,
        bandwidth: int | None,
        slow_first_byte: float,
        on_chunk: Callable[[int], None],
        on_done: Callable[[], None],
    ) -> None:
        self.status_code = status_code
        self.init_headers(headers)
        self._chunks = chunks
        self._length = length
        self._cut_at = cut_at
        self._bandwidth = bandwidth
        self._slow_first_byte = slow_first_byte
        self._on_chunk = on_chunk
        self._on_done = on_done
        self._done = False

    def release(self) -> None:
        """Run ``on_done`` (once): when the body is over, or earlier if the server knows it is."""
        if not self._done:
            self._done = True
            on_done, self._on_done = self._on_done, _nothing  # it refers back to this response: a cycle
            on_done()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut = False
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_disconnect)
                cut = await self._send_body(send)
                tg.cancel_scope.cancel()
        finally:
            self.release()
        if cut:
            raise DeliberateClose

    async def _send_body(self, send: Send) -> bool:
        """Send the body; ``True`` if it was cut short on purpose."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self._slow_first_byte > 0:
            await anyio.sleep(self._slow_first_byte)
        limit = self._length if self._cut_at is None else self._cut_at
        bandwidth = self._bandwidth
        started = time.monotonic()
        sent = 0
        for count, chunk in enumerate(self._chunks, 1):
            if count % 16 == 0:
                # uvicorn's send() returns without suspending once the client is gone; yield now and
                # then so the disconnect watcher can stop a big body from being produced into the void.
                await anyio.lowlevel.checkpoint()
            if sent + len(chunk) > limit:
                chunk = chunk[: limit - sent]
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
                self._on_chunk(len(chunk))
                if self._cut_at is None and sent >= self._length:
                    # Every byte is written: the download ends here as far as the limit goes (as
                    # nginx's limit_conn counts), before this loop can read the client's next request.
                    self.release()
            if sent >= limit:
                break
            if bandwidth is not None:
                ahead = started + sent / bandwidth - time.monotonic()
                if ahead > 0:
                    await anyio.sleep(ahead)
        if self._cut_at is not None:
            return True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return False
