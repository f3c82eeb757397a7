"""The pytest plugin's fixtures, used the way an SDK user would: a FaxClient on the emulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from audian_fax_async.emulator import AdminClient, Emulator

# The emulator serves from its own thread; these tests check it, not the client's loop independence.
pytestmark = pytest.mark.loops("asyncio")

if TYPE_CHECKING:
    from audian_fax_async import FaxClient


def test_plugin_emulator_serves_on_loopback(audian_emulator: Emulator) -> None:
    assert audian_emulator.base_url.startswith("http://127.0.0.1:")
    assert audian_emulator.core.config.faxes == 100


def test_each_test_gets_its_own_key(audian_api_key: str, key: str) -> None:
    assert audian_api_key.startswith("test_") and audian_api_key != key


async def test_fax_client_lists_and_walks_every_fax(fax_client: FaxClient) -> None:
    page = await fax_client.received.list(limit=5)
    assert len(page.faxes) == 5 and page.total == 100
    walked = [fax.id async for fax in fax_client.received.iter(page_size=7)]
    assert len(walked) == len(set(walked)) == 100


async def test_fax_client_marks_processed_and_admin_sees_the_request(
    fax_client: FaxClient, audian_admin: AdminClient, audian_api_key: str
) -> None:
    fax = (await fax_client.received.list(limit=1, status="received")).faxes[0]
    updated = await fax_client.received.mark_processed(fax.id)
    assert updated.processed
    assert audian_admin.stats(audian_api_key)["requests"]["update"] == {"200": 1}


async def test_admin_fixture_starts_each_test_from_a_reset(audian_admin: AdminClient) -> None:
    assert audian_admin.stats_all()["accounts"] == {}
    assert audian_admin.faults()["p500"] == 0


async def test_sdk_models_parse_every_emulator_answer(
    fax_client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    fax = await fax_client.received.get((await fax_client.received.list(limit=1)).faxes[0].id)
    archived = await fax_client.received.archive(fax.id)
    assert archived.status == "archived"
    hook = await fax_client.webhooks.create(url="https://example.com/fax", events=["fax_received"], format="xml")
    assert hook.id is not None and hook.id.startswith("wh_")
    rule = await fax_client.routing.create(type="email", destination="faxes@example.com", attach_document=True)
    assert rule.attach_document
    numbers = await fax_client.numbers.request(area_code="202", quantity=2)
    assert len(numbers) == 2
    result = await fax_client.received.download(fax.id, tmp_path)
    assert result.sha256 == audian_admin.document_sha256(audian_api_key, fax.id)


def test_loading_the_plugin_imports_neither_starlette_nor_uvicorn() -> None:
    code = (
        "import sys, audian_fax_async.testing;"
        "heavy = [m for m in ('starlette', 'uvicorn', 'audian_fax_async.emulator') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
