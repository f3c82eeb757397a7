"""The SDK uses its dependencies through their public APIs only (see ``tests/public_apis.py``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import audian_fax_async

from .public_apis import Context, dependency_class_names, find_private_uses

PACKAGE = Path(audian_fax_async.__file__).resolve().parent

# What a project of its own defines, for the walker's checks on snippets: these private names are
# its own, whatever a dependency calls its attributes.
OWN_SOURCE = """
class FaxClient:
    def __init__(self, api_key, http):
        self._api_key = api_key
        self._http = http
        self._closed = False

    async def _send(self, request):
        return await self._http.send(request)
"""
CONTEXT = Context.for_sources("myproject", [OWN_SOURCE])


def findings(snippet: str) -> list[str]:
    return [f.what for f in find_private_uses(textwrap.dedent(snippet), context=CONTEXT)]


# -- the check itself --------------------------------------------------------------------------


def test_no_module_of_the_package_uses_a_dependency_privately() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    sources = {path: path.read_text(encoding="utf-8") for path in files}
    context = Context.for_sources("audian_fax_async", sources.values())
    found = [
        str(finding)
        for path, source in sources.items()
        for finding in find_private_uses(source, path=str(path.relative_to(PACKAGE.parent)), context=context)
    ]
    assert len(files) > 30  # the whole package was walked
    assert found == []


def test_the_dependencies_private_names_come_from_the_installed_packages() -> None:
    names = dependency_class_names()
    # A sample from each kind of definition: instance attributes, methods, class-level names.
    assert {"_pool", "_content", "_uri_reference", "_mounts", "_init_transport", "_h11_state"} <= set(names.private)
    assert "_assign_requests_to_connections" in names.private
    assert "is_stream_consumed" in names.state


# -- what the walker catches: the examples and their kin ---------------------------------

CAUGHT = {
    "private-module-from": ("from h11._receivebuffer import ReceiveBuffer", "private module h11._receivebuffer"),
    "private-module-import": ("import httpcore2._async", "private module httpcore2._async"),
    "private-module-as": ("import httpcore2._synchronization as sync", "private module httpcore2._synchronization"),
    "private-lock": ("from httpcore2._synchronization import AsyncLock", "private module httpcore2._synchronization"),
    "private-name-from-package": ("from httpx2 import _utils", "private name _utils from httpx2"),
    "module-attribute": ("import httpx2\nconfig = httpx2._config", "httpx2._config"),
    "submodule-attribute": ("import anyio.abc\nx = anyio.abc._sockets", "anyio.abc._sockets"),
    "imported-class-attribute": ("from httpx2 import URL\nref = URL._uri_reference", "httpx2.URL._uri_reference"),
    "constructor-bypass": ("import httpx2\nurl = httpx2.URL.__new__(httpx2.URL)", "httpx2.URL.__new__"),
    "transport-pool": ("def pool(transport):\n    return transport._pool", "_pool, a private attribute"),
    "h11-state": (
        "def buffer(connection):\n    return connection._h11_state._receive_buffer",
        "_h11_state, a private attribute",
    ),
    "uri-reference-write": ("def move(url, ref):\n    url._uri_reference = ref", "_uri_reference"),
    "uri-reference-getattr": (
        "def ref(base_url):\n    return getattr(base_url, '_uri_reference', None)",
        "_uri_reference",
    ),
    "mounts-getattr": ("def mounted(http):\n    return getattr(http, '_mounts', True)", "_mounts"),
    "content-write": ("def keep(response, body):\n    response._content = body", "_content"),
    "content-hasattr": ("def read(response):\n    return hasattr(response, '_content')", "_content"),
    "stream-consumed-write": (
        "def mark(response):\n    response.is_stream_consumed = True",
        "sets is_stream_consumed",
    ),
    "init-transport-override": (
        """
        import httpx2

        class Client(httpx2.AsyncClient):
            def _init_transport(self, *args, **kwargs):
                return super()._init_transport(*args, **kwargs)
        """,
        "overrides _init_transport",
    ),
    "pool-method-override": (
        """
        from httpcore2 import AsyncConnectionPool

        class Pool(AsyncConnectionPool):
            def _assign_requests_to_connections(self):
                return []
        """,
        "overrides _assign_requests_to_connections",
    ),
    "super-private-call": (
        """
        import httpcore2

        class Pool(httpcore2.AsyncConnectionPool):
            async def handle_async_request(self, request):
                self._close_connections([])
                return await super().handle_async_request(request)
        """,
        "uses _close_connections, private in a dependency base class",
    ),
    "uninstalled-base": (
        """
        import caio

        class Context(caio.AsyncioContext):
            def _on_read_event(self):
                pass
        """,
        "cannot tell whether _on_read_event overrides",
    ),
}


@pytest.mark.parametrize(("snippet", "expected"), CAUGHT.values(), ids=CAUGHT.keys())
def test_the_walker_catches_a_private_use(snippet: str, expected: str) -> None:
    found = findings(snippet)
    assert any(expected in what for what in found), found


ALLOWED = {
    "own-relative-imports": "from ._models import ReceivedFax\nfrom .._client import FaxClient",
    "own-private-attributes": (
        """
        async def get(client, request):
            client._closed = True
            return await client._http.send(request), client._api_key
        """
    ),
    "own-class-self": OWN_SOURCE,
    "public-dependency-api": (
        """
        import anyio.to_thread
        import httpx2
        from httpx2 import URL

        async def fetch(url: str) -> bytes:
            async with httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(retries=0)) as http:
                response = await http.send(http.build_request("GET", URL(url).copy_with(path="/")))
                response.request = response.request  # a public setter
                await anyio.to_thread.run_sync(print)
                return response.content
        """
    ),
    "own-members-on-a-dependency-subclass": (
        """
        import httpx2

        class Transport(httpx2.AsyncBaseTransport):
            def __init__(self) -> None:
                self._session = None

            async def handle_async_request(self, request):
                return self._session
        """
    ),
    "own-constructor-bypass": (
        """
        class Error(Exception):
            @classmethod
            def bare(cls):
                return cls.__new__(cls)
        """
    ),
    "standard-library-privates": "import os, sys\nframe = sys._getframe()\nos._exit",
    "dunder-attributes": "import httpx2\nname = httpx2.__name__\nversion = httpx2.__version__",
}


@pytest.mark.parametrize("snippet", ALLOWED.values(), ids=ALLOWED.keys())
def test_the_walker_lets_public_and_own_uses_pass(snippet: str) -> None:
    assert findings(snippet) == []


def test_findings_name_the_file_and_line() -> None:
    [finding] = find_private_uses("import httpx2\n\nx = httpx2._config\n", path="pkg/mod.py", context=CONTEXT)
    assert (finding.path, finding.line) == ("pkg/mod.py", 3)
    assert str(finding) == "pkg/mod.py:3: uses httpx2._config, private in a dependency"
