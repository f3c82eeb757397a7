"""Running the emulator: an async context manager and a thread for synchronous code.

Both bind a loopback socket on a free port themselves (so the port is known before the server
starts) and run uvicorn on it; uvicorn needs asyncio, so :func:`run_emulator` must be entered from
an asyncio event loop (:class:`EmulatorThread` runs its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import anyio
import uvicorn
from attrs import field, frozen

from ._admin_client import AdminClient, AsyncAdminClient
from ._app import EmulatorCore, create_app
from ._config import EmulatorConfig

__all__ = ["Emulator", "EmulatorThread", "run_emulator"]


@frozen
class Emulator:
    """A running emulator.

    * ``base_url``: the API base to give a client, e.g. ``http://127.0.0.1:50123/v2``.
    * ``admin_url``: the admin API, e.g. ``http://127.0.0.1:50123/_emulator``.
    * ``core``: the server's state, for in-process inspection.
    """

    base_url: str
    admin_url: str
    core: EmulatorCore
    _stopped: asyncio.Event = field(alias="_stopped", repr=False)

    async def wait_stopped(self) -> None:
        """Wait until the server stops serving (with ``handle_signals``: on SIGINT or SIGTERM)."""
        await self._stopped.wait()

    def admin(self) -> AdminClient:
        """A synchronous admin client (close it, or use it as a context manager)."""
        return AdminClient(self.admin_url, admin_key=self.core.config.admin_key)

    def async_admin(self) -> AsyncAdminClient:
        """An asynchronous admin client (``async with emulator.async_admin() as admin:``)."""
        return AsyncAdminClient(self.admin_url, admin_key=self.core.config.admin_key)


class _EmbeddedServer(uvicorn.Server):
    # The host program owns signal handling; an embedded server must not take over Ctrl-C.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets that say they are TCP,
    # and without it every response waits ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.asynccontextmanager
async def run_emulator(
    config: EmulatorConfig | None = None, *, log_level: str = "warning", handle_signals: bool = False
) -> AsyncIterator[Emulator]:
    """Serve the emulator on ``config.host`` (a free port unless ``config.port`` is set) while inside.

    With ``handle_signals`` (for a program that is only the emulator) SIGINT and SIGTERM stop the server;
    :meth:`Emulator.wait_stopped` returns then.

    Example::

        async with run_emulator(EmulatorConfig(faxes=50)) as emu:
            async with FaxClient(api_key="test", base_url=emu.base_url) as client:
                ...
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "run_emulator needs an asyncio event loop (uvicorn serves on asyncio only); from trio, "
            "or from synchronous code, use EmulatorThread, which runs its own"
        ) from None
    config = config or EmulatorConfig()
    core = EmulatorCore(config)
    app = create_app(core=core)
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    server_class = uvicorn.Server if handle_signals else _EmbeddedServer
    server = server_class(
        uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
        )
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    stopped = asyncio.Event()
    task.add_done_callback(lambda _: stopped.set())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what made startup fail
                raise RuntimeError("the emulator stopped during startup")
            await asyncio.sleep(0.005)
        origin = f"http://{_url_host(config.host)}:{port}"
        yield Emulator(base_url=origin + "/v2", admin_url=origin + "/_emulator", core=core, _stopped=stopped)
    finally:
        server.should_exit = True
        try:
            # Shutdown must finish even if we got here by cancellation (it is bounded by uvicorn's
            # graceful-shutdown timeout).
            with anyio.CancelScope(shield=True):
                await task
        finally:
            sock.close()


class EmulatorThread:
    """The emulator on its own thread and event loop, for synchronous code and pytest fixtures.

    Example::

        with EmulatorThread(EmulatorConfig(faxes=20)) as emu:
            print(emu.base_url)
    """

    def __init__(self, config: EmulatorConfig | None = None, *, log_level: str = "warning") -> None:
        self.config = config or EmulatorConfig()
        self._log_level = log_level
        self._ready = threading.Event()
        self._emulator: Emulator | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def emulator(self) -> Emulator:
        """The running emulator; ``RuntimeError`` before :meth:`start`."""
        if self._emulator is None:
            raise RuntimeError("the emulator thread is not running")
        return self._emulator

    @property
    def base_url(self) -> str:
        """The API base URL."""
        return self.emulator.base_url

    @property
    def admin_url(self) -> str:
        """The admin API URL."""
        return self.emulator.admin_url

    def start(self) -> Emulator:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="audian-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the emulator failed to start") from self._error
        return self.emulator

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()
        self._emulator = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with run_emulator(self.config, log_level=self._log_level) as emulator:
                self._emulator = emulator
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
