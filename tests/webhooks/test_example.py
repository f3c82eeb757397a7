"""examples/fastapi_webhook.py end to end: the emulator delivers, the app downloads and marks processed."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from types import ModuleType

import anyio
import httpx2
import pytest

from audian_fax_async import FaxClient, FaxStatus
from audian_fax_async.emulator import Emulator

from .servers import serve

# uvicorn serves the receiver inside the test's loop, and uvicorn needs asyncio (uvloop included).
pytestmark = pytest.mark.loops("asyncio", "uvloop")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_webhook.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_webhook_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SavedFaxes(logging.Handler):
    """Collects the example's "fax ... saved" lines; ``all_in`` is set once ``count`` have come."""

    def __init__(self, count: int) -> None:
        super().__init__(logging.INFO)
        self.count = count
        self.ids: list[str] = []
        self.all_in = anyio.Event()  # set from the example's own task, on this loop

    def emit(self, record: logging.LogRecord) -> None:
        if "bytes at" in record.getMessage() and isinstance(record.args, tuple):
            self.ids.append(str(record.args[0]))
            if len(self.ids) >= self.count:
                self.all_in.set()


async def test_example_downloads_each_arriving_fax_and_marks_it_processed(
    fax_client: FaxClient, audian_emulator: Emulator, audian_api_key: str, tmp_path: Path
) -> None:
    dest = tmp_path / "faxes"
    app = load_example().create_app(fax_client, dest_dir=dest)
    saved_lines = SavedFaxes(3)
    example_logger = logging.getLogger("fastapi_webhook")
    example_logger.addHandler(saved_lines)
    example_logger.setLevel(logging.INFO)
    try:
        async with (
            serve(app, lifespan="on") as url,
            audian_emulator.async_admin() as admin,
            httpx2.AsyncClient(base_url=url) as http,
        ):
            await fax_client.webhooks.create(url=url + "/webhooks/fax", events=["fax_received"], format="xml")
            fax_ids = [(await admin.arrive(audian_api_key))["id"] for _ in range(3)]
            with anyio.fail_after(10):  # the example works in the background: its log line says when
                await saved_lines.all_in.wait()
            statuses = [(await fax_client.received.get(fax_id)).status for fax_id in fax_ids]
            expected = {fax_id: await admin.document_sha256(audian_api_key, fax_id) for fax_id in fax_ids}
            health = (await http.get("/healthz")).json()
    finally:
        example_logger.removeHandler(saved_lines)
    saved = {path.stem: hashlib.sha256(path.read_bytes()).hexdigest() for path in dest.iterdir()}
    assert sorted(saved_lines.ids) == sorted(fax_ids)
    assert statuses == [FaxStatus.PROCESSED] * 3  # each marked processed before its line was logged
    assert saved == expected
    assert health["ok"] is True
    assert health["outcomes"] == {"accepted": 3}
