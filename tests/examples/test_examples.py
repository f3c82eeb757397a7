"""The examples run against the emulator and do what they say."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import pytest
import uvicorn
import uvloop

from audian_fax_async.emulator import AdminClient, Emulator

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, emulator: Emulator, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUDIAN_API_KEY": key, "AUDIAN_BASE_URL": emulator.base_url}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_bulk_download_example_archives_by_date_and_marks_processed(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    before = audian_admin.stats(audian_api_key)  # creates the account
    assert before["faxes"] > 0
    done = run_example("bulk_download.py", audian_emulator, audian_api_key, str(tmp_path))
    assert done.returncode == 0, done.stderr
    files = list(tmp_path.rglob("*.pdf"))
    assert files and all(len(p.relative_to(tmp_path).parts) == 4 for p in files)  # YYYY/MM/DD/id.pdf
    for path in files:
        assert audian_admin.document_sha256(audian_api_key, path.stem) == hashlib.sha256(path.read_bytes()).hexdigest()
    again = run_example("bulk_download.py", audian_emulator, audian_api_key, str(tmp_path))
    assert again.returncode == 0 and "0 downloaded" in again.stdout  # all were marked processed


def test_stream_example_hashes_each_document(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str
) -> None:
    done = run_example("stream_to_storage.py", audian_emulator, audian_api_key)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert len(lines) == 20
    for key, sha in lines:
        fax_id = key.removeprefix("faxes/").removesuffix(".pdf")
        assert audian_admin.document_sha256(audian_api_key, fax_id) == sha
    assert audian_admin.stats(audian_api_key)["downloads"]["highest"] <= 10


# -- examples/fastapi_webhook.py under uvicorn, as its docstring runs it ---------------------------


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name.removesuffix('.py')}", ROOT / "examples" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Watcher(logging.Handler):
    """Sets ``done`` when the example logs a saved fax or the receiver logs a failure."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.done = threading.Event()
        self.saved: list[str] = []
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "fastapi_webhook" and "bytes at" in record.getMessage():
            self.saved.append(record.getMessage())
        elif record.levelno >= logging.ERROR:
            self.failures.append(f"{record.name}: {self.format(record)}")
        else:
            return
        self.done.set()


def test_fastapi_example_under_uvicorns_default_loop_downloads_a_fax_the_emulator_delivers(
    audian_emulator: Emulator,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The app makes its client from the environment, as `python examples/fastapi_webhook.py` does.
    monkeypatch.setenv("AUDIAN_API_KEY", audian_api_key)
    monkeypatch.setenv("AUDIAN_BASE_URL", audian_emulator.base_url)
    dest = tmp_path / "faxes"
    app = load_example("fastapi_webhook.py").create_app(dest_dir=dest)
    loops: list[type[asyncio.AbstractEventLoop]] = []

    async def observed(scope: Any, receive: Any, send: Any) -> None:
        loops.append(type(asyncio.get_running_loop()))
        await app(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # deliveries made before uvicorn has started wait in the backlog
    port = sock.getsockname()[1]
    config = uvicorn.Config(observed, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    assert config.loop == "auto"  # uvicorn's default: uvloop whenever it is installed
    server = uvicorn.Server(config)
    serving = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-example", daemon=True)
    watcher = Watcher()
    loggers = [logging.getLogger(name) for name in ("fastapi_webhook", "audian_fax_async", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(watcher)
    logging.getLogger("fastapi_webhook").setLevel(logging.INFO)
    serving.start()
    try:
        with httpx2.Client(base_url=audian_emulator.base_url, headers={"X-Auth-Token": audian_api_key}) as api:
            hook = {"url": f"http://127.0.0.1:{port}/webhooks/fax", "events": ["fax_received"]}
            created = api.post("/fax/webhooks", json=hook)
            assert created.status_code == 201, created.text
            fax_id = audian_admin.arrive(audian_api_key)["id"]
            assert watcher.done.wait(timeout=30), "the example never logged a saved fax"
            assert watcher.failures == []
            fax = api.get(f"/fax/received/{fax_id}").json()
            health = httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
    finally:
        server.should_exit = True
        serving.join(timeout=30)
        for logger in loggers:
            logger.removeHandler(watcher)
        sock.close()
    assert not serving.is_alive(), "uvicorn did not stop"
    assert loops and all(issubclass(loop, uvloop.Loop) for loop in loops), loops
    saved = dest / f"{fax_id}.pdf"
    assert [path.name for path in dest.iterdir()] == [saved.name]
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == audian_admin.document_sha256(audian_api_key, fax_id)
    assert fax["status"] == "processed"
    assert health["ok"] is True and health["outcomes"] == {"accepted": 1}
    assert len(watcher.saved) == 1 and fax_id in watcher.saved[0]


def json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (the console exporters' output)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        document, at = decoder.raw_decode(text, at)
        found.append(document)
    return found


def test_observability_example_prints_the_bulk_runs_span_tree_and_metrics(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUDIAN_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "observability.py"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    documents = json_documents(done.stdout)
    spans = [d for d in documents if "context" in d]
    [bulk] = [s for s in spans if s["name"] == "received.download_all"]
    downloads = [s for s in spans if s["name"] == "received.download"]
    assert len(downloads) == 6 == len(list(tmp_path.glob("*.pdf")))
    assert all(s["parent_id"] == bulk["context"]["span_id"] for s in spans if s is not bulk)
    assert sorted(e["name"] for s in downloads for e in s["events"]) == ["audian.retry", "audian.retry"]
    [exported] = [d for d in documents if "resource_metrics" in d]
    points = {
        metric["name"]: metric["data"]["data_points"]
        for resource in exported["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
    }
    assert [p["value"] for p in points["audian.bulk.outcomes"]] == [6]
    assert [p["value"] for p in points["audian.downloads.in_flight"]] == [0]
    assert sum(p["value"] for p in points["audian.retries"]) == 2
    assert "6 faxes saved" in done.stderr


# -- examples/mirror_service.py under uvicorn -------------------------------------------------------


def test_mirror_service_example_catches_up_then_mirrors_a_fax_the_emulator_delivers(
    audian_emulator: Emulator,
    audian_admin: AdminClient,
    audian_api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audian_fax_async.mirror import read_status

    monkeypatch.setenv("AUDIAN_API_KEY", audian_api_key)
    monkeypatch.setenv("AUDIAN_BASE_URL", audian_emulator.base_url)
    dest = tmp_path / "mirror"
    app = load_example("mirror_service.py").create_app(dest_dir=dest)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    serving = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-mirror", daemon=True)
    account = audian_admin.stats(audian_api_key)["faxes"]
    serving.start()
    health: dict[str, Any] = {}
    try:
        with (
            httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as local,
            httpx2.Client(base_url=audian_emulator.base_url, headers={"X-Auth-Token": audian_api_key}) as api,
        ):

            def faxes_complete() -> int:
                try:
                    answer = local.get("/fax-mirror/healthz")
                except httpx2.HTTPError:
                    return -1
                nonlocal health
                health = answer.json()
                return int(health["faxes"]["complete"])

            deadline = time.monotonic() + 60
            while faxes_complete() < account and time.monotonic() < deadline:
                time.sleep(0.02)
            assert health["faxes"]["complete"] == account, health
            hook = {"url": f"http://127.0.0.1:{port}/fax-mirror/webhook", "events": ["fax_received"]}
            assert api.post("/fax/webhooks", json=hook).status_code == 201
            fax_id = audian_admin.arrive(audian_api_key)["id"]
            while faxes_complete() < account + 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert health["faxes"]["complete"] == account + 1 and health["webhooks"]["seen"] == 1, health
            assert "complete" in local.get("/status").json()["mirror"]
            fax = api.get(f"/fax/received/{fax_id}").json()
    finally:
        server.should_exit = True
        serving.join(timeout=30)
        sock.close()
    assert not serving.is_alive(), "uvicorn did not stop"
    saved = dest / f"{fax_id}.pdf"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == audian_admin.document_sha256(audian_api_key, fax_id)
    assert fax["status"] == "processed"
    status = read_status(dest)  # the lifespan's end stopped the mirror and saved its state
    assert status.state == "stopped" and status.faxes.complete == account + 1
    assert len(list(dest.glob("*.pdf"))) == account + 1
