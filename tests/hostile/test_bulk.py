"""Defects 9 and 12: ``download_all`` under many failures and when something goes wrong.

* 9: one worker per download slot, and a retry waits inside its worker: when every fax of a large
  run answers 503 once, open descriptors and temporary files stay bounded by the concurrency (not
  one per failed fax).
* 12: an error that ends the run (a 401, a connection error, a wrong base URL, the caller's own
  exception from the loop body or from ``on_progress``) is raised as itself, never as an
  ``ExceptionGroup``, in the ``async with`` form and in the plain ``async for`` form alike.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import AsyncGenerator
from pathlib import Path

import anyio
import pytest

from audian_fax_async import (
    APIConnectionError,
    AuthenticationError,
    BulkDownload,
    BulkProgress,
    NotFoundError,
    OutcomeKind,
    RetryPolicy,
)

from .api import Inbox
from .conftest import ClientFactory
from .helpers import BOUND, partial_files
from .server import HostileServer, Request, json_reply


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


FAXES = 300
CONCURRENCY = 10
#: What a worker may hold besides its temporary file: its connection (both ends are in this process,
#: the server being a thread of it) and a spare pooled connection or two.
SLACK = 4 * CONCURRENCY


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
async def test_open_files_stay_bounded_when_every_fax_answers_503_once(
    make_client: ClientFactory, inbox: Inbox, scratch: Path
) -> None:
    tmp_path = scratch
    faxes = inbox.add(FAXES, size=512)
    for fax in faxes:
        inbox.script(fax.id, json_reply({"error": {"code": "service_unavailable"}}, 503))
    lock = threading.Lock()
    peak = {"fds": 0, "parts": 0}

    def sample(_: Request) -> None:  # at every download request, on the server's thread
        fds, parts = open_descriptors(), len([n for n in os.listdir(tmp_path) if n.endswith(".part")])
        with lock:
            peak["fds"], peak["parts"] = max(peak["fds"], fds), max(peak["parts"], parts)

    inbox.observe(sample)
    # Retries wait (10 ms each) so that failed faxes would pile up if each had its own retry task.
    policy = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.01, jitter=0.0)
    async with make_client(retry_policy=policy) as client:
        baseline = open_descriptors()
        with anyio.fail_after(BOUND):
            async with client.received.download_all(tmp_path, concurrency=CONCURRENCY) as run:
                kinds = [o.kind async for o in run]
        retries = run.progress.retries
    assert kinds == [OutcomeKind.DOWNLOADED] * FAXES
    assert retries == FAXES
    assert len(inbox.downloads.requests) == 2 * FAXES
    # Two workers per slot: at most twice the concurrency in progress, however many faxes fail.
    assert peak["parts"] <= 2 * CONCURRENCY, f"{peak['parts']} temporary files open at once"
    assert peak["fds"] - baseline <= 2 * CONCURRENCY + SLACK, f"{peak['fds'] - baseline} more descriptors at the peak"
    assert partial_files(tmp_path) == []
    for fax in faxes[:: FAXES // 10]:
        assert (tmp_path / f"{fax.id}.pdf").read_bytes() == fax.document


# -- 12: errors raised as themselves --------------------------------------------------------


class Boom(Exception):
    """The caller's own error."""


async def run_async_with(run: BulkDownload, *, boom_after: int | None = None) -> int:
    seen = 0
    async with run as outcomes:
        async for _ in outcomes:
            seen += 1
            if boom_after is not None and seen >= boom_after:
                raise Boom("from the loop body")
    return seen


async def run_plain(run: BulkDownload, *, boom_after: int | None = None) -> int:
    """The plain form; leaving it early needs ``aclosing`` (as the README says), so it is used here."""
    seen = 0
    outcomes = aiter(run)
    assert isinstance(outcomes, AsyncGenerator)
    async with contextlib.aclosing(outcomes):
        async for _ in outcomes:
            seen += 1
            if boom_after is not None and seen >= boom_after:
                raise Boom("from the loop body")
    return seen


FORMS = {"async-with": run_async_with, "plain-async-for": run_plain}


@pytest.mark.parametrize("form", list(FORMS))
async def test_a_401_during_the_listing_is_raised_as_itself(
    make_client: ClientFactory, server: HostileServer, tmp_path: Path, form: str
) -> None:
    server.route("/v2/fax/received", json_reply({"error": {"code": "unauthorized", "message": "bad key"}}, 401))
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(AuthenticationError):
                await FORMS[form](client.received.download_all(tmp_path))


@pytest.mark.parametrize("form", list(FORMS))
async def test_a_connection_error_is_raised_as_itself(make_client: ClientFactory, tmp_path: Path, form: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v2/"
    with anyio.fail_after(BOUND):
        async with make_client(base_url=closed, max_retries=1) as client:
            with pytest.raises(APIConnectionError):
                await FORMS[form](client.received.download_all(tmp_path))


@pytest.mark.parametrize("form", list(FORMS))
async def test_a_wrong_base_url_is_raised_as_itself(
    make_client: ClientFactory, server: HostileServer, tmp_path: Path, form: str
) -> None:
    with anyio.fail_after(BOUND):
        async with make_client(base_url=f"{server.origin}/wrong/") as client:
            with pytest.raises(NotFoundError):
                await FORMS[form](client.received.download_all(tmp_path))


@pytest.mark.parametrize("form", list(FORMS))
async def test_the_callers_exception_from_the_loop_body_is_raised_as_itself(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path, form: str
) -> None:
    inbox.add(30)
    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(Boom):
                await FORMS[form](client.received.download_all(tmp_path), boom_after=2)
    assert partial_files(tmp_path) == []


async def test_the_callers_exception_from_on_progress_is_raised_as_itself(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path
) -> None:
    inbox.add(5)
    raised = False

    def on_progress(progress: BulkProgress) -> None:
        nonlocal raised
        if progress.downloaded and not raised:  # once: one error, whichever worker reports it
            raised = True
            raise Boom("from on_progress")

    with anyio.fail_after(BOUND):
        async with make_client() as client:
            with pytest.raises(Boom):
                await run_async_with(client.received.download_all(tmp_path, on_progress=on_progress))
    assert partial_files(tmp_path) == []
