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
* ``fax_client`` (async): a ``FaxClient`` on the emulator with that key.

Example::

    async def test_lists_newest_first(fax_client, audian_admin, audian_api_key):
        audian_admin.script("list", [503])
        page = await fax_client.received.list(limit=5)   # retried past the 503
        assert len(page.faxes) == 5
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
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


def _async_fixture(func: Callable[..., Any]) -> Any:
    # pytest-asyncio needs its own decorator in strict mode; without it, plain fixtures serve
    # plugins (such as anyio's) that drive async fixtures themselves.
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - depends on the environment
        return pytest.fixture(func)
    return pytest_asyncio.fixture(func)


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


@_async_fixture
async def fax_client(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str
) -> AsyncIterator[FaxClient]:
    """A ``FaxClient`` talking to the emulator with this test's API key."""
    from audian_fax_async import FaxClient

    async with FaxClient(api_key=audian_api_key, base_url=audian_emulator.base_url) as client:
        yield client
