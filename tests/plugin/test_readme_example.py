"""The pytest plugin's README example, pasted into a throwaway project and run there as a user would.

Each project is a fresh pytester directory run in a subprocess (its own ini, none of this repository's
options), so the plugin is loaded through its ``pytest11`` entry point, beside pytest-asyncio (on
by default, strict mode), pytest-asyncio in auto mode, or anyio's plugin alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[2] / "README.md"

#: pytest options of each setup a user may have.
PLAIN_ANYIO = ("-p", "no:asyncio")  # no pytest-asyncio: anyio's plugin (anyio is a dependency)
ASYNCIO_STRICT = ()  # pytest-asyncio installed, nothing configured: strict mode
ASYNCIO_AUTO = ("-o", "asyncio_mode=auto")
SETUPS = {"anyio": PLAIN_ANYIO, "asyncio-strict": ASYNCIO_STRICT, "asyncio-auto": ASYNCIO_AUTO}


def readme_example() -> str:
    """The README's plugin example, exactly as written there."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    (example,) = [block for block in blocks if "async def test_my_pipeline(fax_client" in block]
    return example


def run(pytester: pytest.Pytester, *options: str) -> pytest.RunResult:
    """pytest in the throwaway project; no warning may name the plugin's fixtures (pytest-asyncio's
    own notice about its unset fixture loop scope is the user's setup, left as it is)."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *options)
    output = result.stdout.str()
    assert "requested async @pytest.fixture" not in output and "Warning: " + "fax_client" not in output, output
    return result


@pytest.mark.parametrize("setup", list(SETUPS))
def test_the_readme_example_passes_as_pasted(pytester: pytest.Pytester, setup: str) -> None:
    pytester.makepyfile(test_pipeline=readme_example())
    result = run(pytester, *SETUPS[setup])
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and set(outcomes) <= {"passed"}, result.stdout.str()


# Not with asyncio_mode=auto: pytest-asyncio then runs every async test, anyio-marked ones too, while
# anyio's plugin still takes their async fixtures (any fixture, not only ours): the two collide.
@pytest.mark.parametrize("setup", ["anyio", "asyncio-strict"])
def test_an_anyio_marked_test_gets_fax_client_from_anyio(pytester: pytest.Pytester, setup: str) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        async def inbox_total(fax_client):  # a user's async fixture on top of fax_client
            return (await fax_client.received.list(limit=1)).total
        """
    )
    pytester.makepyfile(
        test_marked="""
        import sniffio
        import pytest

        @pytest.mark.anyio
        async def test_anyio_marked(fax_client, inbox_total, anyio_backend):
            assert sniffio.current_async_library() == anyio_backend
            assert (await fax_client.received.list(limit=3)).total == inbox_total == 100

        def test_sync_tests_use_the_sync_fixtures(audian_admin, audian_api_key):
            assert audian_admin.health() == {"ok": True}
        """
    )
    # anyio's default backends: asyncio, and trio where it is installed (it is, here).
    run(pytester, *SETUPS[setup]).assert_outcomes(passed=3)


@pytest.mark.parametrize("setup", ["asyncio-strict", "asyncio-auto"])
def test_an_asyncio_marked_test_gets_fax_client_on_its_loop(pytester: pytest.Pytester, setup: str) -> None:
    pytester.makeconftest(
        """
        import pytest_asyncio

        @pytest_asyncio.fixture
        async def inbox_total(fax_client):
            return (await fax_client.received.list(limit=1)).total
        """
    )
    pytester.makepyfile(
        test_marked="""
        import asyncio
        import pytest

        @pytest.mark.asyncio
        async def test_on_pytest_asyncio_loop(fax_client, inbox_total):
            loop = asyncio.get_running_loop()
            assert (await fax_client.received.list(limit=2)).total == inbox_total == 100
            assert asyncio.get_running_loop() is loop
        """
    )
    run(pytester, *SETUPS[setup]).assert_outcomes(passed=1)


def test_trio_through_anyio_backend(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "trio"
        """
    )
    pytester.makepyfile(
        test_trio="""
        import sniffio
        import pytest

        @pytest.mark.anyio
        async def test_on_trio(fax_client, tmp_path):
            assert sniffio.current_async_library() == "trio"
            page = await fax_client.received.list(limit=1)
            result = await fax_client.received.download(page.faxes[0].id, tmp_path)
            assert result.bytes == page.faxes[0].file_size
        """
    )
    # With pytest-asyncio on (strict), an anyio-marked test is anyio's alone.
    run(pytester, *ASYNCIO_STRICT).assert_outcomes(passed=1)
    run(pytester, *PLAIN_ANYIO).assert_outcomes(passed=1)


def test_a_sync_test_asking_for_fax_client_is_told_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sync="""
        def test_sync(fax_client):
            pass
        """
    )
    result = run(pytester, *ASYNCIO_STRICT)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fax_client is async: it needs an async test*@pytest.mark.anyio*"])
