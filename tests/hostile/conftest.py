"""Fixtures of the hostile kit: a fresh hostile server per test, an honest inbox on it, and clients
whose retries never sleep.

Async tests run on asyncio, uvloop and trio (``tests/conftest.py``). A module whose defects face the
network defines its own ``anyio_backend`` from the ``net`` fixture, which runs its tests on the SDK's
default transport (httpx2) on the three loops and on ``AiohttpTransport`` on asyncio and uvloop (aiohttp
has no trio support, so that pair is never generated)::

    @pytest.fixture(scope="module")
    def anyio_backend(net: Net) -> object:
        return net.backend
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import attrs
import httpx2
import pytest

from audian_fax_async import AiohttpTransport, FaxClient, RetryPolicy

from .api import Inbox
from .server import HostileServer

_BACKENDS: dict[str, object] = {"asyncio": "asyncio", "uvloop": ("asyncio", {"use_uvloop": True}), "trio": "trio"}


@attrs.frozen
class Net:
    """One event loop and one transport."""

    loop: str
    transport: str

    @property
    def backend(self) -> object:
        return _BACKENDS[self.loop]

    @property
    def id(self) -> str:
        return f"{self.loop}-{self.transport}"


NETS = [Net(loop, "httpx2") for loop in ("asyncio", "uvloop", "trio")] + [
    Net(loop, "aiohttp") for loop in ("asyncio", "uvloop")
]


@pytest.fixture(scope="module", params=NETS, ids=[net.id for net in NETS])
def net(request: pytest.FixtureRequest) -> Net:
    param: Net = request.param
    return param


@pytest.fixture
def transport_kind(request: pytest.FixtureRequest) -> str:
    """``httpx2`` or ``aiohttp``: the ``net`` of a network-facing module, else the SDK's default."""
    if "net" in request.fixturenames:
        chosen: Net = request.getfixturevalue("net")
        return chosen.transport
    return "httpx2"


async def no_sleep(_: float) -> None:
    """Retries go at once: what the hostile server does never depends on time."""
    await anyio.lowlevel.checkpoint()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIAN_API_KEY", raising=False)
    monkeypatch.delenv("AUDIAN_BASE_URL", raising=False)
    monkeypatch.delenv("AUDIAN_TRANSPORT", raising=False)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder on tmpfs when there is one (fsync costs nothing there), else ``tmp_path``: for runs of
    hundreds of faxes whose subject is not the disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="audian-hostile-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as hostile:
        yield hostile


@pytest.fixture
def inbox(server: HostileServer) -> Inbox:
    return Inbox(server)


@pytest.fixture
def api_key() -> str:
    """A key of this test alone (so its account's download slots are its own)."""
    return "hk_live_" + secrets.token_hex(16)


ClientFactory = Callable[..., FaxClient]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every transport of the session: building one costs about 0.2 s here, and
    nothing in this kit speaks TLS."""
    return httpx2.create_ssl_context()


#: The pool the SDK gives its own httpx2 client.
LIMITS = httpx2.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30.0)


def make_transport(kind: str) -> httpx2.AsyncBaseTransport:
    """The SDK's default transport (httpx2's own, as the SDK builds it) or ``AiohttpTransport``, on the
    shared TLS context."""
    if kind == "aiohttp":
        return AiohttpTransport(verify=tls_context(), limits=LIMITS)
    return httpx2.AsyncHTTPTransport(verify=tls_context(), limits=LIMITS)


@pytest.fixture
def make_client(server: HostileServer, api_key: str, transport_kind: str) -> ClientFactory:
    """Clients on the hostile server with this test's key and transport; retries never sleep."""

    def make(*, max_retries: int = 3, base_url: str | None = None, **kwargs: object) -> FaxClient:
        if "transport" not in kwargs and "http_client" not in kwargs:
            kwargs["transport"] = make_transport(transport_kind)
        kwargs.setdefault("retry_policy", RetryPolicy(max_retries=max_retries, sleep=no_sleep))
        return FaxClient(api_key, base_url=base_url or server.base_url, **kwargs)  # type: ignore[arg-type]

    return make
