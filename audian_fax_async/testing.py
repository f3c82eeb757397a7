"""pytest plugin: an Audian emulator on a free loopback port, its admin client, and a ready ``FaxClient``.

Registered through the ``pytest11`` entry point, so installing ``audian-fax-async[emulator]`` is all a
project needs. Nothing heavy is imported until a fixture is used, so projects without the extra can
still run pytest.

Fixtures:

* ``audian_emulator_config`` (session): the :class:`~audian_fax_async.emulator.EmulatorConfig`;
  override it in your ``conftest.py`` to change the faxes, seed or faults.
* ``audian_emulator`` (session): the running :class:`~audian_fax_async.emulator.Emulator` (a thread).
* ``audian_admin``: an :class:`~audian_fax_async.emulator.AdminClient`; everything is reset first,
  so each test starts with no faults, no scripts and regenerated accounts.
* ``audian_api_key``: a fresh random API key (a fresh account) per test.
* ``fax_client`` (async): a ``FaxClient`` on the emulator with that key, opened on the loop the
  test runs on.

Which plugin runs the async tests: an ``async def`` test that requests one of these fixtures by
name, and that no marker assigns, is marked for pytest-asyncio when it is active (its strict mode,
the default, needs the mark) and for anyio's plugin otherwise; a test marked ``asyncio`` or
``anyio`` keeps its marker, and ``fax_client`` follows it (for trio: ``@pytest.mark.anyio`` with an
``anyio_backend`` fixture returning ``"trio"``).

Example::

    async def test_lists_newest_first(fax_client, audian_admin, audian_api_key):
        audian_admin.script("list", [503])
        page = await fax_client.received.list(limit=5)   # retried past the 503
        assert len(page.faxes) == 5
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from audian_fax_async import FaxClient
    from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig

__all__ = [
    "audian_admin",
    "audian_api_key",
    "audian_emulator",
    "audian_emulator_config",
    "fax_client",
]

#: The plugin's fixtures: an ``async def`` test that requests one of them is given a runner.
FIXTURES = frozenset({"audian_admin", "audian_api_key", "audian_emulator", "audian_emulator_config", "fax_client"})
#: Markers of plugins that run coroutine tests: a test carrying one is left as it is.
_RUNNER_MARKS = ("asyncio", "anyio", "trio")


def _pytest_asyncio_mode(config: pytest.Config) -> str | None:
    """pytest-asyncio's mode (``"strict"``, ``"auto"``) when the plugin is active, else None."""
    if not config.pluginmanager.has_plugin("asyncio"):
        return None
    mode = config.getoption("asyncio_mode", default=None) or config.getini("asyncio_mode")
    return str(mode)


def _anyio_auto(config: pytest.Config) -> bool:
    if not config.pluginmanager.has_plugin("anyio"):
        return False
    try:
        ini = config.getini("anyio_mode")
    except ValueError:  # anyio before 4.11: no auto mode, so no such setting
        return False
    return "auto" in (config.getoption("anyio_mode", default=None), ini)


def _requested(obj: object) -> set[str]:
    """The fixture names a test function asks for in its signature and its ``usefixtures`` marks."""
    try:
        names = set(inspect.signature(obj).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return set()
    for mark in getattr(obj, "pytestmark", ()):
        if getattr(mark, "name", None) == "usefixtures":
            names.update(str(arg) for arg in mark.args)
    return names


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> None:
    """Mark an unmarked ``async def`` test that requests our fixtures for the plugin that will run it.

    Before the item is made, so that pytest-asyncio and anyio see the mark as if written by hand.
    """
    if not (inspect.iscoroutinefunction(obj) and collector.istestfunction(obj, name)):
        return
    if not FIXTURES & _requested(obj):
        return
    own = {getattr(mark, "name", None) for mark in getattr(obj, "pytestmark", ())}
    if own & set(_RUNNER_MARKS) or any(collector.get_closest_marker(mark) for mark in _RUNNER_MARKS):
        return
    config = collector.config
    mode = _pytest_asyncio_mode(config)
    if mode == "strict":
        pytest.mark.asyncio(obj)
    elif mode is None and not _anyio_auto(config) and config.pluginmanager.has_plugin("anyio"):
        pytest.mark.anyio(obj)
        pytest.mark.usefixtures("anyio_backend")(obj)  # as anyio's own hook does, whichever runs first


@pytest.fixture(scope="session")
def audian_emulator_config() -> EmulatorConfig:
    """Settings of the session's emulator: 100 faxes per account, seed 7, webhook retries in milliseconds."""
    from audian_fax_async.emulator import EmulatorConfig

    return EmulatorConfig(faxes=100, seed=7, time_scale=1e-5)


@pytest.fixture(scope="session")
def audian_emulator(audian_emulator_config: EmulatorConfig) -> Iterator[Emulator]:
    """The emulator, serving on a free loopback port for the whole session."""
    from audian_fax_async.emulator import EmulatorThread

    with EmulatorThread(audian_emulator_config) as emulator:
        yield emulator


@pytest.fixture
def audian_admin(audian_emulator: Emulator) -> Iterator[AdminClient]:
    """An admin client; the emulator is reset (faults, scripts, accounts) before the test."""
    with audian_emulator.admin() as admin:
        admin.reset()
        yield admin


@pytest.fixture
def audian_api_key() -> str:
    """A fresh API key, hence a fresh account, for this test."""
    return "test_" + secrets.token_hex(8)


@pytest.fixture
async def _audian_fax_client_anyio(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str
) -> AsyncIterator[FaxClient]:
    """``fax_client`` for a test anyio's plugin runs (on the backend of its ``anyio_backend``)."""
    from audian_fax_async import FaxClient

    async with FaxClient(api_key=audian_api_key, base_url=audian_emulator.base_url) as client:
        yield client


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - depends on the environment

    def _run_by_pytest_asyncio(item: pytest.Item) -> bool:
        return False

else:

    def _run_by_pytest_asyncio(item: pytest.Item) -> bool:
        return item.config.pluginmanager.has_plugin("asyncio") and pytest_asyncio.is_async_test(item)

    @pytest_asyncio.fixture
    async def _audian_fax_client_asyncio(
        audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str
    ) -> AsyncIterator[FaxClient]:
        """``fax_client`` for a test pytest-asyncio runs (on its loop)."""
        from audian_fax_async import FaxClient

        async with FaxClient(api_key=audian_api_key, base_url=audian_emulator.base_url) as client:
            yield client


@pytest.fixture
def fax_client(request: pytest.FixtureRequest) -> Any:
    """A ``FaxClient`` talking to the emulator with this test's API key, opened by the plugin that
    runs the test (pytest-asyncio or anyio), on that test's event loop."""
    item = request.node
    if _run_by_pytest_asyncio(item):
        return request.getfixturevalue("_audian_fax_client_asyncio")
    if "anyio_backend" in request.fixturenames:
        return request.getfixturevalue("_audian_fax_client_anyio")
    pytest.fail(
        "fax_client is async: it needs an async test that pytest-asyncio runs (@pytest.mark.asyncio, or "
        "asyncio_mode = auto) or that anyio runs (@pytest.mark.anyio)",
        pytrace=False,
    )
