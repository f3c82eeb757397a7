"""Defect 13: one hostile answer fails one fax, with a typed error; the bulk run goes on.

Each hostile fax sits between honest ones. A ``Location`` that is no URL, one with another scheme, a
``Content-Range`` or ``Content-Length`` of 5,000 digits: each becomes that fax's ``failed`` outcome
carrying an ``AudianError``, and every other fax is downloaded, on both transports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from audian_fax_async import AudianError, OutcomeKind

from .api import Fax, Inbox, document_reply
from .conftest import ClientFactory, Net
from .helpers import BOUND, partial_files
from .server import Reply

DIGITS = "9" * 5000


@pytest.fixture(scope="module")
def anyio_backend(net: Net) -> object:
    return net.backend


def _redirect(location: str) -> Callable[[Fax], list[Reply]]:
    return lambda fax: [Reply(status=302, headers=[("Location", location)])]


def _huge_range(fax: Fax) -> list[Reply]:
    # A drop after 1,000 bytes with a validator, so the SDK resumes; the 206 then names 5,000-digit bytes.
    return [
        document_reply(fax.document, etag=fax.etag, drop_after=1000),
        document_reply(fax.document[1000:], etag=fax.etag, status=206, content_range=f"bytes 1000-{DIGITS}/{DIGITS}"),
    ]


def _huge_length(fax: Fax) -> list[Reply]:
    return [
        Reply(headers=[("Content-Type", "application/pdf"), ("Content-Length", DIGITS)], body=fax.document, length=None)
    ]


HOSTILE: dict[str, Callable[[Fax], list[Reply]]] = {
    "location-not-a-url": _redirect("http://[::1"),
    "location-bad-port": _redirect("http://127.0.0.1:99999999/x"),
    "location-other-scheme": _redirect("file:///etc/passwd"),
    "content-range-5000-digits": _huge_range,
    "content-length-5000-digits": _huge_length,
}


async def test_each_hostile_answer_fails_its_fax_only(make_client: ClientFactory, inbox: Inbox, tmp_path: Path) -> None:
    hostile: dict[str, str] = {}
    for name, answers in HOSTILE.items():
        inbox.add(1)
        fax = inbox.put(f"fax_{name}", inbox.add(1)[0].document)  # between two honest faxes
        # Every attempt answers so (the retries see the same lie).
        inbox.script(fax.id, *(answers(fax) * 3))
        hostile[fax.id] = name
    honest = [fax.id for fax in inbox.faxes.values() if fax.id not in hostile]
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=1) as client, client.received.download_all(tmp_path) as outcomes:
            done = {o.fax.id: o async for o in outcomes}
    assert set(done) == set(inbox.faxes), "the run reached every fax"
    for fax_id, name in hostile.items():
        outcome = done[fax_id]
        assert outcome.kind is OutcomeKind.FAILED, name
        assert isinstance(outcome.error, AudianError), f"{name}: {outcome.error!r}"
        assert not (tmp_path / f"{fax_id}.pdf").exists()
    for fax_id in honest:
        assert done[fax_id].kind is OutcomeKind.DOWNLOADED
        assert (tmp_path / f"{fax_id}.pdf").read_bytes() == inbox.faxes[fax_id].document
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_hostile_answer_to_one_download_is_a_typed_error(
    make_client: ClientFactory, inbox: Inbox, tmp_path: Path, name: str
) -> None:
    (fax,) = inbox.add(1)
    inbox.script(fax.id, *(HOSTILE[name](fax) * 3))
    with anyio.fail_after(BOUND):
        async with make_client(max_retries=1) as client:
            with pytest.raises(AudianError):
                await client.received.download(fax.id, tmp_path / "fax.pdf")
    assert partial_files(tmp_path) == []
