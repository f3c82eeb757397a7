"""Defects 3 and 4: the API key goes out only as ``X-Auth-Token`` to the API's own origin.

A server that echoes the request (a proxy's error page, a debugging endpoint) cannot make the key
appear in an error's message, repr or pickle, in the error's response, in a log line or in the
CLI's output. A key is never more visible than its mask (``…`` and its last four characters).
Configuration that would put a secret where it shows (credentials in ``base_url``) is refused.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from audian_fax_async import (
    APIStatusError,
    AudianError,
    BadRequestError,
    BulkDownload,
    ConfigurationError,
    FaxClient,
    InternalServerError,
    ValidationError,
)

from .api import Inbox
from .conftest import ClientFactory
from .helpers import BOUND, shows_key
from .server import HostileServer, Reply, Request, json_reply


def _echo_page(prefix: str) -> Callable[[Request], Reply]:
    def answer(request: Request) -> Reply:
        page = f"{prefix}<p>you sent X-Auth-Token: {request.headers['x-auth-token']}</p></body></html>"
        return Reply(headers=[("Content-Type", "text/html")], body=page.encode())

    return answer


# Where the echoed key sits: at the start of the excerpt, or across its end (80 characters: the key
# then starts at character 66, so the excerpt would cut it after 14 characters).
ECHO_PREFIXES = {"at-the-start": "", "across-the-excerpt-end": "<html><body>" + "x" * 28}


@pytest.mark.parametrize("where", list(ECHO_PREFIXES))
async def test_a_2xx_page_echoing_the_key_is_masked_in_the_validation_error(
    make_client: ClientFactory, server: HostileServer, api_key: str, where: str
) -> None:
    server.route("/v2/fax/received", _echo_page(ECHO_PREFIXES[where]))
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(ValidationError) as caught:
                await client.received.list()
    assert "is not valid JSON" in str(caught.value)
    for shown in (str(caught.value), repr(caught.value), pickle.dumps(caught.value)):
        assert not shows_key(shown, api_key), shown


async def drain(run: BulkDownload) -> None:
    async with run as outcomes:
        async for _ in outcomes:
            pass


async def test_download_all_logs_and_raises_an_echoed_key_masked(
    make_client: ClientFactory,
    server: HostileServer,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    server.route("/v2/fax/received", _echo_page(""))
    caplog.set_level(logging.DEBUG, logger="audian_fax_async")
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(ValidationError) as caught:
                await drain(client.received.download_all(tmp_path))
    assert "listing stopped" in caplog.text
    assert not shows_key(caplog.text, api_key)
    assert not shows_key(str(caught.value), api_key)


def _echo_error(status: int) -> Callable[[Request], Reply]:
    def answer(request: Request) -> Reply:
        key = request.headers["x-auth-token"]
        return json_reply({"error": {"code": "bad_key", "message": f"the key {key} is not valid"}, "echo": key}, status)

    return answer


@pytest.mark.parametrize("status", [400, 503])
async def test_status_errors_never_carry_the_key(
    make_client: ClientFactory, server: HostileServer, api_key: str, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    server.route("/v2/fax/received/fax_1", _echo_error(status))
    caplog.set_level(logging.DEBUG, logger="audian_fax_async")
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=1) as client:
            with pytest.raises(APIStatusError) as caught:
                await client.received.get("fax_1")
            assert not shows_key(repr(client), api_key)
    exc = caught.value
    assert isinstance(exc, BadRequestError if status == 400 else InternalServerError)
    assert exc.api_message is not None and "is not valid" in exc.api_message
    assert exc.response is not None
    assert exc.response.request.headers["X-Auth-Token"] == "[masked]"
    for shown in (
        str(exc),
        repr(exc),
        exc.body,
        exc.api_message,
        exc.response.text,
        repr(exc.response.request.headers),
        pickle.dumps(exc),
        caplog.text,
    ):
        assert not shows_key(shown, api_key), shown
    again = pickle.loads(pickle.dumps(exc))  # noqa: S301 - bytes this test made
    assert type(again) is type(exc) and again.status_code == status


async def test_a_key_echoed_in_a_response_header_stays_out_of_the_error(
    make_client: ClientFactory, server: HostileServer, api_key: str
) -> None:
    """A proxy that reflects request headers into its answer's headers: the error's copy of the
    response (its repr, its pickle) must not carry the key either."""

    def reflect(request: Request) -> Reply:
        return json_reply(
            {"error": {"code": "denied"}}, 403, headers=[("X-Echo-Auth-Token", request.headers["x-auth-token"])]
        )

    server.route("/v2/fax/received/fax_1", reflect)
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(APIStatusError) as caught:
                await client.received.get("fax_1")
    assert caught.value.response is not None
    assert not shows_key(repr(caught.value.response.headers), api_key)
    assert not shows_key(pickle.dumps(caught.value), api_key)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_never_carries_the_key(
    make_client: ClientFactory, inbox: Inbox, api_key: str, status: int
) -> None:
    (fax,) = inbox.add(1)
    with HostileServer() as other:
        moved = other.route(f"/v2/fax/received/{fax.id}", lambda _: json_reply(fax.record(other.origin)))
        inbox.server.route(
            f"/v2/fax/received/{fax.id}",
            Reply(status=status, headers=[("Location", f"{other.base_url}fax/received/{fax.id}")]),
        )
        with anyio.fail_after(BOUND):
            async with make_client() as client:
                assert (await client.received.get(fax.id)).id == fax.id
    (seen,) = moved.requests
    assert "x-auth-token" not in seen.headers and "authorization" not in seen.headers
    assert not shows_key(repr(seen.headers), api_key)


@pytest.mark.parametrize(
    "base_url",
    ["http://user:s3cr3t-pass@127.0.0.1:1/v2", "https://s3cr3t-pass@api.example.com/v2"],
    ids=["user-and-password", "user-only"],
)
@pytest.mark.parametrize("source", ["argument", "environment"])
def test_a_base_url_with_credentials_is_refused_without_showing_them(
    monkeypatch: pytest.MonkeyPatch, base_url: str, source: str
) -> None:
    if source == "environment":
        monkeypatch.setenv("AUDIAN_BASE_URL", base_url)
    with pytest.raises(ConfigurationError) as caught:
        FaxClient("k" * 20, base_url=base_url if source == "argument" else None)
    assert "s3cr3t" not in str(caught.value)
    assert "credentials" in str(caught.value)


@pytest.mark.parametrize("key", ["clé-secrète-0123456789", "key-with-\u200b-zero-width", "tab\tinside-0123456789"])
def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        FaxClient(key, base_url="http://127.0.0.1:1/v2")
    assert not shows_key(str(caught.value), key)
    assert isinstance(caught.value, AudianError)
