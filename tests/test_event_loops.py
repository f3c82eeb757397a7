"""The suite's loop setup itself: each async test runs on the loop its id names, and only there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sniffio

from .conftest import LOOPS

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")


def _running_loop_name() -> str:
    if sniffio.current_async_library() == "trio":
        return "trio"
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


async def test_an_unmarked_test_runs_on_each_loop_once(request: pytest.FixtureRequest, anyio_backend: object) -> None:
    name = request.node.callspec.id
    assert name in LOOPS and LOOPS[name] == anyio_backend
    assert _running_loop_name() == name


@pytest.fixture
async def fixture_loop() -> str:
    return _running_loop_name()


async def test_an_async_fixture_runs_on_the_tests_own_loop(request: pytest.FixtureRequest, fixture_loop: str) -> None:
    assert fixture_loop == _running_loop_name() == request.node.callspec.id


class TestAMarkedClass:
    pytestmark = pytest.mark.loops("asyncio", "uvloop")

    async def test_runs_on_the_loops_it_names(self, request: pytest.FixtureRequest) -> None:
        assert request.node.callspec.id in ("asyncio", "uvloop")
        assert _running_loop_name() == request.node.callspec.id


INNER = """
import pytest

async def test_unmarked():
    pass

class TestMarked:
    pytestmark = pytest.mark.loops("trio")

    async def test_marked(self):
        pass

def test_sync():
    pass
"""

OWN_FIXTURE = """
import pytest

@pytest.fixture(params=["asyncio"])
def anyio_backend(request):
    return request.param

async def test_own():
    pass
"""


def test_collection_gives_each_async_test_exactly_its_loops(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_inner=INNER, test_own=OWN_FIXTURE)
    result = pytester.runpytest("-p", "no:asyncio", "--collect-only", "-q")
    collected = sorted(line for line in result.outlines if "::" in line)
    assert collected == [
        "test_inner.py::TestMarked::test_marked[trio]",
        "test_inner.py::test_sync",
        "test_inner.py::test_unmarked[asyncio]",
        "test_inner.py::test_unmarked[trio]",
        "test_inner.py::test_unmarked[uvloop]",
        "test_own.py::test_own[asyncio]",
    ]


def test_an_unknown_loop_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_bad="import pytest\npytestmark = pytest.mark.loops('curio')\nasync def test_x():\n    pass\n"
    )
    result = pytester.runpytest("-p", "no:asyncio", "--collect-only", "-q")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*loops() takes names among*curio*"])
