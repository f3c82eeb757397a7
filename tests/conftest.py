"""Every async test runs through anyio's pytest plugin, on the event loops its module names.

pytest-asyncio is switched off (``-p no:asyncio`` in ``pyproject.toml``) and every coroutine test is
marked for anyio here: one plugin owns every async test and fixture, so no test can end up on a
loop other than the one its id says. Unless a module (or class, or test) says otherwise with
``pytest.mark.loops(...)``, a test runs on asyncio, on uvloop and on trio (ids ``[asyncio]``,
``[uvloop]``, ``[trio]``).
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

LOOPS: dict[str, object] = {
    "asyncio": "asyncio",
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": "trio",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "loops(*names): the event loops the module's async tests run on (asyncio, uvloop, trio)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Before anyio's own hook looks for its marker: every coroutine test is anyio's (what anyio's
    # auto mode does, without depending on the anyio version that has it).
    if (
        inspect.iscoroutinefunction(obj)
        and isinstance(collector, pytest.Module | pytest.Class)
        and collector.istestfunction(obj, name)
    ):
        pytest.mark.anyio(obj)


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    """Replaced by the parametrization below; reached only if a test asks for it outside it."""
    raise RuntimeError("anyio_backend is parametrized by tests/conftest.py: request it from a test")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("loops")
    if marker is None and _defines_its_own_backend(metafunc):
        return  # the module or class parametrizes its own ``anyio_backend`` fixture
    names: tuple[str, ...] = tuple(marker.args) if marker is not None else tuple(LOOPS)
    unknown = [name for name in names if name not in LOOPS]
    if not names or unknown:
        raise pytest.UsageError(f"loops() takes names among {sorted(LOOPS)}, got {names!r}")
    metafunc.parametrize("anyio_backend", [LOOPS[name] for name in names], ids=list(names), scope="module")


def _defines_its_own_backend(metafunc: pytest.Metafunc) -> bool:
    owners: list[Any] = [metafunc.module, metafunc.cls]
    return any(owner is not None and "anyio_backend" in vars(owner) for owner in owners)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every coroutine test gets the backend above; one without it would not run at all.
    stray = [
        item.nodeid
        for item in items
        if isinstance(item, pytest.Function)
        and inspect.iscoroutinefunction(item.function)
        and "anyio_backend" not in item.fixturenames
    ]
    if stray:
        raise pytest.UsageError(f"async tests without an event loop: {stray}")
