"""Fixtures of the download tests: a small emulator of their own and clients that never sleep."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from audian_fax_async import FaxClient, RetryPolicy
from audian_fax_async.emulator import AdminClient, Emulator, EmulatorConfig, EmulatorThread


async def no_sleep(_: float) -> None:
    """Retries in these tests go at once: the emulator's faults do not depend on time."""
    await anyio.sleep(0)


@pytest.fixture(scope="session")
def audian_emulator() -> Iterator[Emulator]:
    """This folder's own emulator: 20 faxes per account keeps a full bulk run near 8 MB."""
    with EmulatorThread(EmulatorConfig(faxes=20, seed=11, time_scale=1e-5)) as emulator:
        yield emulator


ClientFactory = Callable[..., FaxClient]


@pytest.fixture
def make_client(audian_emulator: Emulator, audian_api_key: str) -> ClientFactory:
    """Build clients on the emulator with this test's key and retries that never sleep."""

    def make(max_retries: int = 6, **kwargs: object) -> FaxClient:
        return FaxClient(
            audian_api_key,
            base_url=audian_emulator.base_url,
            retry_policy=RetryPolicy(max_retries=max_retries, sleep=no_sleep),
            **kwargs,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[FaxClient]:
    async with make_client() as c:
        yield c


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_matches_emulator(admin: AdminClient, key: str, fax_id: str, path: Path) -> None:
    expected = admin.document_sha256(key, fax_id)
    assert sha256_file(path) == expected, f"{path} differs from the emulator's document of {fax_id}"


def partial_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]
