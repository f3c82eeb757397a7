"""A hostile HTTP/1.1 server on raw asyncio sockets, scripted per request.

It runs its own asyncio loop in its own thread on ``127.0.0.1`` (a free port), so SDK clients on any
loop (asyncio, uvloop, trio) and on either transport talk to it over real sockets. Nothing in it is
polite on purpose: a :class:`Reply` can lie about its length, change validators, send a broken
``Location`` or ``Content-Range``, drip its body, never end it, be huge, or drop the connection after
N bytes. The server records every request (method, path, query, headers) and the peak number of
requests it was answering at once, overall and per route.

::

    with HostileServer() as server:
        route = server.route("/v2/fax/received", Reply(status=503), Reply(body=b"{}"))
        ...  # point a FaxClient at server.base_url
        assert route.hits == 2
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import attrs

__all__ = ["HostileServer", "Reply", "Request", "Route", "endless", "json_reply", "repeat"]

#: The longest a request head (request line and headers) may be.
_MAX_HEAD = 1 << 20
#: How long a stopping server waits for its thread.
_STOP_TIMEOUT = 5.0

Body = bytes | Callable[[], Iterable[bytes]]


@attrs.frozen
class Request:
    """One request as the server read it (header names lower-cased; the last value of a name wins)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    match: dict[str, str] = attrs.field(factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.frozen
class Reply:
    """What the server answers to one request.

    ``length``: ``"auto"`` sends the true ``Content-Length`` of a ``bytes`` body (a generated body gets
    none and ends when the connection closes); an int sends that number whatever the body is (a lie);
    ``None`` sends no length (the body ends on close). ``chunked`` frames the body in chunks instead.
    ``drip`` splits the body into pieces of that many bytes, ``interval`` seconds apart. ``drop_after``
    closes the connection once that many body bytes are out; ``stall_after`` stops sending once that
    many are out but keeps the connection open (the body never ends); ``close`` closes the connection
    after the reply.
    """

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: Body = b""
    length: int | Literal["auto"] | None = "auto"
    chunked: bool = False
    drip: int = 0
    interval: float = 0.0
    drop_after: int | None = None
    stall_after: int | None = None
    close: bool = False


def json_reply(data: object, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Reply:
    """A JSON answer with a true length."""
    return Reply(
        status=status,
        headers=[("Content-Type", "application/json"), *headers],
        body=json.dumps(data).encode(),
    )


def endless(chunk: bytes = b" ") -> Callable[[], Iterable[bytes]]:
    """A body that never ends: ``chunk`` again and again."""
    return lambda: itertools.repeat(chunk)


def repeat(chunk: bytes, count: int) -> Callable[[], Iterable[bytes]]:
    """A body of ``count`` times ``chunk``, generated as it is sent (huge bodies cost no memory)."""
    return lambda: itertools.repeat(chunk, count)


Handler = Callable[[Request], "Reply | Awaitable[Reply]"]


class Route:
    """Answers for one method and path (exact, or a regular expression with named groups).

    Given replies are used one per request, in order; the last one then answers every later request.
    A handler (a function of the :class:`Request`, possibly async, run on the server's loop) answers
    instead when given. ``hits``, ``active`` and ``peak`` count what the route saw.
    """

    def __init__(self, method: str, path: str | re.Pattern[str], answers: Sequence[Reply | Handler]) -> None:
        if not answers:
            raise ValueError("a route needs at least one reply or handler")
        self.method = method
        self.path = path
        self._answers = list(answers)
        self._lock = threading.Lock()
        self.hits = 0
        self.active = 0
        self.peak = 0
        self.requests: list[Request] = []

    def matches(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        if isinstance(self.path, str):
            return {} if path == self.path else None
        found = self.path.fullmatch(path)
        return found.groupdict() if found else None

    def _next(self) -> Reply | Handler:
        with self._lock:
            return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]

    async def answer(self, request: Request) -> Reply:
        answer = self._next()
        if isinstance(answer, Reply):
            return answer
        reply = answer(request)
        if inspect.isawaitable(reply):
            reply = await reply
        assert isinstance(reply, Reply)
        return reply

    @contextlib.contextmanager
    def counting(self, request: Request) -> Iterator[None]:
        with self._lock:
            self.hits += 1
            self.requests.append(request)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1


_NOT_FOUND = json_reply({"error": {"code": "not_found", "message": "no such route"}}, status=404)


class HostileServer:
    """The server: ``with HostileServer() as server:`` starts it, leaving the block stops it.

    ``base_url`` is the API's base (``http://127.0.0.1:PORT/v2/``); ``origin`` the server's origin.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.active = 0
        self.peak = 0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-server", daemon=True)
        self.port = 0
        self._startup_error: BaseException | None = None

    # -- configuration (from the test's thread) -------------------------------------------------

    def route(self, path: str | re.Pattern[str], *answers: Reply | Handler, method: str = "GET") -> Route:
        """Answer ``method path`` with ``answers`` (see :class:`Route`); a later route for the same
        path takes precedence."""
        route = Route(method, path, answers)
        with self._lock:
            self._routes.insert(0, route)
        return route

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v2/"

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> HostileServer:
        self._thread.start()
        if not self._ready.wait(_STOP_TIMEOUT) or self._startup_error is not None:
            raise RuntimeError("the hostile server did not start") from self._startup_error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the listener and every connection (dripping or endless bodies included)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_STOP_TIMEOUT)
        self._thread.join(_STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the hostile server did not stop")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", 0, limit=_MAX_HEAD)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported to the thread that waits in __enter__
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None and self._loop is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._loop.call_soon(self._loop.stop)

    # -- serving (on the server's loop) -----------------------------------------------------------

    def _find(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        with self._lock:
            routes = list(self._routes)
        for route in routes:
            found = route.matches(method, path)
            if found is not None:
                return route, found
        return None, {}

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; whether the connection can carry another."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        url = urlsplit(target)
        route, found = self._find(method, url.path)
        request = Request(method, url.path, dict(parse_qsl(url.query)), headers, body, found)
        self.requests.append(request)
        with self._counting():
            if route is None:
                return await _write(writer, _NOT_FOUND)
            with route.counting(request):
                return await _write(writer, await route.answer(request))

    @contextlib.contextmanager
    def _counting(self) -> Iterator[None]:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _pieces(reply: Reply) -> Iterator[bytes]:
    chunks: Iterable[bytes] = [reply.body] if isinstance(reply.body, bytes) else reply.body()
    for chunk in chunks:
        if reply.drip <= 0:
            if chunk:
                yield chunk
            continue
        for start in range(0, len(chunk), reply.drip):
            yield chunk[start : start + reply.drip]


async def _write(writer: asyncio.StreamWriter, reply: Reply) -> bool:
    """Send ``reply``; whether the connection stays usable."""
    names = {name.lower() for name, _ in reply.headers}
    lines = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    delimited = False  # the body's end is known to the client (a length or chunks)
    if reply.chunked:
        lines.append("Transfer-Encoding: chunked")
        delimited = True
    elif "content-length" not in names:
        if reply.length == "auto" and isinstance(reply.body, bytes):
            lines.append(f"Content-Length: {len(reply.body)}")
            delimited = True
        elif isinstance(reply.length, int):
            lines.append(f"Content-Length: {reply.length}")
            delimited = True
    keep = delimited and not reply.close and reply.drop_after is None
    if not keep:
        lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    sent = 0
    for piece in _pieces(reply):
        if reply.stall_after is not None and sent + len(piece) >= reply.stall_after:
            _send(writer, piece[: reply.stall_after - sent], chunked=reply.chunked)
            await writer.drain()
            await asyncio.Event().wait()  # until the client goes away or the server stops
        if reply.drop_after is not None and sent + len(piece) >= reply.drop_after:
            _send(writer, piece[: reply.drop_after - sent], chunked=reply.chunked)
            await writer.drain()
            return False
        _send(writer, piece, chunked=reply.chunked)
        sent += len(piece)
        await writer.drain()
        if reply.interval:
            await asyncio.sleep(reply.interval)
    if reply.stall_after is not None:
        await asyncio.Event().wait()
    if reply.drop_after is not None:
        return False
    if reply.chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    return keep


def _send(writer: asyncio.StreamWriter, data: bytes, *, chunked: bool) -> None:
    if not data:
        return
    writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Whatever"
