"""Day one against the emulator (issue 18): what a new user meets first, from both sides.

The emulator: which keys exist (item 11); ``Allow`` on 405, empty query values refused, area codes as
the SDK checks them, ``admin.arrive(count=...)``, ``run_emulator`` off asyncio (item 12). The SDK on
it: a destination ending in a separator (item 1), answers of undocumented shapes (item 4), errors
that say what to do (item 9) and parameters typed by their values (item 10).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx2
import pytest
from click.testing import CliRunner

from audian_fax_async import (
    APIConnectionError,
    AuthenticationError,
    FaxClient,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
)
from audian_fax_async.emulator import (
    AdminClient,
    Emulator,
    EmulatorConfig,
    EmulatorThread,
    emulator_command,
    run_emulator,
)

from .emulator_helpers import error_of

REPO = Path(__file__).resolve().parents[2]
KEYS = ("key-a", "key-b")


async def no_wait(_: float) -> None:
    await anyio.lowlevel.checkpoint()


NO_WAIT = RetryPolicy(sleep=no_wait)


@pytest.fixture(scope="module")
def keyed() -> Iterator[Emulator]:
    """An emulator told which keys exist."""
    with EmulatorThread(EmulatorConfig(faxes=5, seed=3, keys=set(KEYS))) as emulator:
        yield emulator


# -- item 11: the keys that exist --------------------------------------------------------------


@pytest.mark.loops("asyncio")
async def test_only_the_configured_keys_are_accepted(keyed: Emulator) -> None:
    async with httpx2.AsyncClient(base_url=keyed.base_url) as http:
        for key in KEYS:
            assert (await http.get("/fax/received", headers={"X-Auth-Token": key})).status_code == 200
        other = await http.get("/fax/received", headers={"Authorization": "Bearer key-c"})
        missing = await http.get("/fax/received")
    assert (other.status_code, missing.status_code) == (401, 401)
    assert error_of(other) == {"code": "unauthorized", "message": "invalid API key"}
    with keyed.admin() as admin:  # the admin API is not the API: it addresses any account
        assert admin.stats("key-c")["requests"] == {}
        assert admin.stats_all()["unauthenticated"] == {"401": 2}


async def test_the_sdk_sees_a_bad_key_as_a_401_that_names_the_variable(keyed: Emulator) -> None:
    async with FaxClient("key-c", base_url=keyed.base_url) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.received.list()
    assert caught.value.status_code == 401 and "AUDIAN_API_KEY" in str(caught.value)


def test_by_default_every_key_is_an_account() -> None:
    assert EmulatorConfig().keys is None
    assert EmulatorConfig(keys=["a", "b", "a"]).keys == frozenset({"a", "b"})
    for bad in ("key-a", [], ["a", " "]):
        with pytest.raises(ValueError, match="keys must"):
            EmulatorConfig(keys=bad)


@pytest.mark.loops("asyncio")
async def test_the_command_takes_keys() -> None:
    command = [sys.executable, "-m", "audian_fax_async.emulator", "--port", "0", "--faxes", "2", "--keys", "k1, k2"]
    with anyio.fail_after(30):
        async with await anyio.open_process(command, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
            assert process.stdout is not None
            banner = b""
            while b"\n" not in banner:
                banner += await process.stdout.receive()
            base_url = banner.split()[3].decode()
            async with httpx2.AsyncClient(base_url=base_url) as http:
                statuses = [(await http.get("/fax/received", headers={"X-Auth-Token": k})).status_code for k in KEYS]
                statuses += [(await http.get("/fax/received", headers={"X-Auth-Token": "k2"})).status_code]
            process.terminate()
            await process.wait()
    assert statuses == [401, 401, 200]
    result = CliRunner().invoke(emulator_command, ["--keys", "a,,b"])
    assert result.exit_code == 2 and "--keys takes comma-separated API keys" in result.output


# -- item 12: the emulator refuses what the API would -------------------------------------------


@pytest.mark.loops("asyncio")
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/fax/received/fax_1", "GET, HEAD, PUT"),
        ("DELETE", "/fax/received", "GET, HEAD"),
        ("GET", "/fax/webhooks", "POST"),
        ("GET", "/fax/received/fax_1/archive", "POST"),
    ],
)
async def test_405_answers_name_every_allowed_method(
    api: httpx2.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await api.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.loops("asyncio")
@pytest.mark.parametrize(
    "query",
    ["to_date=", "from_date=", "limit=", "offset=", "status=", "from_number=", "limit=%20", "limit=5&limit=6"],
)
async def test_empty_or_repeated_query_values_are_400(api: httpx2.AsyncClient, query: str) -> None:
    response = await api.get("/fax/received?" + query)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "invalid_parameter"
    assert query.split("=", 1)[0] in error_of(response)["message"]


@pytest.mark.loops("asyncio")
async def test_the_sdk_and_the_emulator_agree_on_area_codes(api: httpx2.AsyncClient, emulator: Emulator) -> None:
    async with FaxClient("test_area", base_url=emulator.base_url) as client:
        for area in ("202", "02", "2025", "1", "", "2O2", "٢٠٢", " 202", "20 2"):
            try:
                numbers = await client.numbers.request(area_code=area)
            except InvalidRequestError:
                sdk_accepts = False
            else:
                sdk_accepts = True
                assert numbers[0].area_code == area and numbers[0].number.endswith(tuple("0123456789"))
            raw = await api.post("/fax/numbers", json={"area_code": area})
            assert (raw.status_code == 201) is sdk_accepts, (area, raw.text)
            assert sdk_accepts is (area.isascii() and area.isdigit())


@pytest.mark.loops("asyncio")
async def test_arrive_takes_count_and_faxes_like_the_arrivals_endpoint(emulator: Emulator, key: str) -> None:
    with emulator.admin() as admin:
        admin.reset()
        before = admin.stats(key)["faxes"]
        one = admin.arrive(key, pages=2)
        three = admin.arrive(key, count=3, pages=1)
        named = admin.arrive(key, faxes=[{"id": "fax_received_day_one"}, {"pages": 4}])
        assert one["pages"] == 2 and [f["pages"] for f in three] == [1, 1, 1]
        assert named[0]["id"] == "fax_received_day_one" and named[1]["pages"] == 4
        assert admin.stats(key)["faxes"] == before + 6
    async with emulator.async_admin() as async_admin:
        assert len(await async_admin.arrive(key, count=2)) == 2
        assert (await async_admin.arrive(key))["id"].startswith("fax_received_")


@pytest.mark.loops("trio")
async def test_run_emulator_under_trio_says_it_needs_asyncio() -> None:
    with pytest.raises(RuntimeError, match=r"needs an asyncio event loop.*EmulatorThread"):
        async with run_emulator(EmulatorConfig(faxes=1)):
            pass  # pragma: no cover - never reached


def test_the_docs_show_an_admin_client_for_an_emulator_started_from_the_command_line() -> None:
    docs = (REPO / "docs" / "emulator.md").read_text(encoding="utf-8")
    assert 'AdminClient("http://127.0.0.1:8443/_emulator")' in docs
    assert "--keys" in docs and "EmulatorConfig(keys=" in docs


# -- item 1: the SDK's folder destinations --------------------------------------------------------


async def test_download_to_a_missing_folder_ending_in_a_separator(
    fax_client: FaxClient, audian_admin: AdminClient, audian_api_key: str, tmp_path: Path
) -> None:
    faxes = (await fax_client.received.list(limit=2)).faxes
    folder = tmp_path / "faxes"
    results = [await fax_client.received.download(fax.id, f"{folder}/") for fax in faxes]
    assert folder.is_dir() and [r.path for r in results] == [folder / f"{fax.id}.pdf" for fax in faxes]
    for fax, result in zip(faxes, results, strict=True):
        assert result.sha256 == audian_admin.document_sha256(audian_api_key, fax.id)


# -- item 4: answers the reference does not document ----------------------------------------------

FAX = {
    "id": "fax_1",
    "from_number": "+12025551234",
    "to_number": "+15551234567",
    "pages": 1,
    "received_at": "2024-02-04T13:15:00Z",
    "status": "processed",
}


def mock_client(answers: dict[tuple[str, str], httpx2.Response], seen: list[httpx2.Request]) -> FaxClient:
    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return answers[(request.method, request.url.path.removeprefix("/v2/"))]

    return FaxClient("key", base_url="http://api.test/v2", transport=httpx2.MockTransport(handle), max_retries=0)


@pytest.mark.parametrize(
    "answer",
    [
        {"numbers": [{"number": "+12025550001", "id": "num_1"}]},
        [{"number": "+12025550001", "id": "num_1"}],
        {"number": "+12025550001", "id": "num_1"},
        ["+12025550001"],
    ],
    ids=["documented", "bare-list", "one-object", "strings"],
)
async def test_numbers_bought_are_returned_whatever_the_shape(answer: object) -> None:
    seen: list[httpx2.Request] = []
    answers = {("POST", "fax/numbers"): httpx2.Response(201, json=answer)}
    async with mock_client(answers, seen) as client:
        (number,) = await client.numbers.request(area_code="202")
    assert number.number == "+12025550001" and len(seen) == 1  # never sent twice


async def test_an_answer_naming_no_number_is_an_empty_list_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    answers = {("POST", "fax/numbers"): httpx2.Response(204)}
    with caplog.at_level(logging.WARNING, logger="audian_fax_async"):
        async with mock_client(answers, []) as client:
            assert await client.numbers.request(area_code="202") == []
    assert "may have been bought" in caplog.text


async def test_update_and_archive_answering_no_record_return_the_fax_fetched_again() -> None:
    seen: list[httpx2.Request] = []
    answers = {
        ("PUT", "fax/received/fax_1"): httpx2.Response(204),
        ("POST", "fax/received/fax_1/archive"): httpx2.Response(200, json={"ok": True}),
        ("GET", "fax/received/fax_1"): httpx2.Response(200, json=FAX),
    }
    async with mock_client(answers, seen) as client:
        assert (await client.received.mark_processed("fax_1")).status == "processed"
        assert (await client.received.archive("fax_1")).id == "fax_1"
    assert [(r.method, r.url.path) for r in seen] == [
        ("PUT", "/v2/fax/received/fax_1"),
        ("GET", "/v2/fax/received/fax_1"),
        ("POST", "/v2/fax/received/fax_1/archive"),
        ("GET", "/v2/fax/received/fax_1"),
    ]


async def test_webhooks_and_routing_answering_part_of_the_record_return_what_was_sent() -> None:
    answers = {
        ("POST", "fax/webhooks"): httpx2.Response(201, json={"id": "wh_1"}),
        ("POST", "fax/routing"): httpx2.Response(204),
    }
    async with mock_client(answers, []) as client:
        hook = await client.webhooks.create(url="https://example.com/fax", events=["fax_received"])
        rule = await client.routing.create(type="email", destination="faxes@example.com", attach_document=True)
        raw = await client.request("POST", "fax/webhooks", json={})
    assert (hook.id, hook.url, hook.events) == ("wh_1", "https://example.com/fax", ["fax_received"])
    assert (rule.type, rule.destination, rule.attach_document, rule.id) == ("email", "faxes@example.com", True, None)
    assert raw.json() == {"id": "wh_1"}  # the raw answer is always reachable


# -- item 9: errors that say what to do ------------------------------------------------------------


async def test_a_503_after_every_retry_says_how_many_attempts(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str
) -> None:
    audian_admin.script("list", [503] * 4, key=audian_api_key)
    async with FaxClient(audian_api_key, base_url=audian_emulator.base_url, retry_policy=NO_WAIT) as client:
        with pytest.raises(InternalServerError, match=r"gave up after 4 attempts over \d"):
            await client.received.list()


async def test_a_retry_after_beyond_the_cap_names_the_setting(
    audian_emulator: Emulator, audian_admin: AdminClient, audian_api_key: str
) -> None:
    audian_admin.script("list", [{"status": 429, "retry_after": 600}], key=audian_api_key)
    async with FaxClient(audian_api_key, base_url=audian_emulator.base_url, retry_policy=NO_WAIT) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.received.list()
    assert "600 s" in str(caught.value) and "RetryPolicy.max_retry_after=60 s" in str(caught.value)


async def test_a_refused_connection_says_it_was_retried_and_for_how_long() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with FaxClient("key", base_url=f"http://127.0.0.1:{port}/v2", retry_policy=NO_WAIT) as client:
        with pytest.raises(APIConnectionError, match=r"gave up after 4 attempts over \d+(\.\d+)? s"):
            await client.received.list()


async def test_a_404_without_v2_in_the_base_url_hints_at_it() -> None:
    answers = {("GET", "fax/received"): httpx2.Response(404, text="Not Found")}
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return answers[(request.method, request.url.path.lstrip("/"))]

    transport = httpx2.MockTransport(handle)
    async with FaxClient("key", base_url="http://api.test", transport=transport) as client:
        with pytest.raises(NotFoundError, match=r"the API's paths are under /v2"):
            await client.received.list()


# -- item 10: parameters typed by their values -----------------------------------------------------

TYPOS = textwrap.dedent(
    """
    from audian_fax_async import FaxClient


    async def main(client: FaxClient) -> None:
        await client.received.list(status="bogus")
        await client.received.update("fax_1", status="done")
        await client.webhooks.create(url="https://x.example", events=["fax_recieved"])
        await client.webhooks.create(url="https://x.example", events=["fax_received"], format="yaml")
        await client.routing.create(type="fax", destination="x")
        await client.received.list(status="received")
        await client.webhooks.create(url="https://x.example", events=["fax_processed"], format="xml")
    """
)


def test_mypy_strict_refuses_a_misspelt_status_event_format_or_type(tmp_path: Path) -> None:
    (tmp_path / "typos.py").write_text(TYPOS, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "c"),
            "typos.py",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    lines = [line for line in done.stdout.splitlines() if ": error:" in line]
    flagged = sorted(int(line.split(":")[1]) for line in lines)
    assert flagged == [6, 7, 8, 9, 10], done.stdout + done.stderr  # the two correct calls pass
