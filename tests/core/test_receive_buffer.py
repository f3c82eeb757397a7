"""``ZeroCopyReceiveBuffer``: h11 makes the same events from it as from its own buffer, byte for byte.

Pure: HTTP responses are fed to two h11 client connections in the same pieces (split at seeded
random points), one with h11's ``ReceiveBuffer`` and one with the SDK's, and every event is compared.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, cast

import h11
import pytest

from audian_fax_async._netbackend import ZeroCopyReceiveBuffer


def _body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _response(body: bytes, *, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def _chunked(pieces: list[bytes]) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in pieces)
    return head + chunks + b"0\r\nX-Trailer: yes\r\n\r\n"


_STREAMS: dict[str, tuple[bytes, bool]] = {
    # name: (what the server sends, whether it closes the connection after it)
    "content-length": (_response(_body(300_000, 1)), False),
    "chunked": (_chunked([_body(n, n) for n in (1, 70_000, 3, 200_000, 17)]), False),
    "keep-alive, three responses": (
        _response(_body(90_000, 2)) + _chunked([_body(5_000, 3)]) + _response(b"") + _response(_body(7, 4)),
        False,
    ),
    "no length, read to the close": (b"HTTP/1.0 200 OK\r\n\r\n" + _body(150_000, 5), True),
    "204 then a body": (b"HTTP/1.1 204 No Content\r\n\r\n" + _response(_body(64_000, 6)), False),
}


def _split(data: bytes, seed: int) -> list[bytes | bytearray]:
    rng = random.Random(seed)
    cuts = sorted({0, len(data), *(rng.randrange(len(data)) for _ in range(rng.randrange(1, 12)))})
    # Whole pieces as asyncio hands them on (bytes), now and then a bytearray.
    pieces = [data[a:b] for a, b in itertools.pairwise(cuts)]
    return [bytearray(p) if rng.random() < 0.1 else p for p in pieces]


def _events(pieces: list[bytes | bytearray], closes: bool, *, sdk: bool) -> tuple[list[Any], list[tuple[bytes, bytes]]]:
    conn = h11.Connection(our_role=h11.CLIENT)
    if sdk:
        conn._receive_buffer = ZeroCopyReceiveBuffer()  # as the SDK's pool sets it
    handed: list[tuple[bytes, bytes]] = []  # (piece received, data of a Data event) where they are one object

    def ask() -> None:
        conn.send(h11.Request(method="GET", target="/doc", headers=[("Host", "example")]))
        conn.send(h11.EndOfMessage())

    ask()
    seen: list[Any] = []
    for piece in [*pieces, b""] if closes else pieces:
        conn.receive_data(cast(bytes, piece))  # h11 takes a bytearray too (its buffer is typed for both)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                break
            if event is h11.PAUSED:
                conn.start_next_cycle()
                ask()
                continue
            if isinstance(event, h11.Data):
                if event.data is piece:
                    handed.append((piece, event.data))
                seen.append(("data", bytes(event.data)))
            else:
                seen.append(repr(event))
            if isinstance(event, h11.ConnectionClosed):
                break
    seen.append(("left over", conn.trailing_data))
    return seen, handed


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("name", list(_STREAMS))
def test_h11_makes_the_same_events_from_the_sdk_buffer(name: str, seed: int) -> None:
    data, closes = _STREAMS[name]
    pieces = _split(data, seed)
    ours, _ = _events(pieces, closes, sdk=True)
    theirs, _ = _events(pieces, closes, sdk=False)
    assert ours == theirs
    received = b"".join(event[1] for event in ours if isinstance(event, tuple) and event[0] == "data")
    assert received  # bodies were read (compared with h11's own above)


def test_a_body_chunk_that_arrives_whole_is_handed_on_without_a_copy() -> None:
    body = _body(300_000, 9)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n"
    first, second, third = head + body[:1000], body[1000:200_000], body[200_000:]
    _, handed = _events([first, second, third], False, sdk=True)
    # The two pieces that are body only reach h11's Data events as the very objects received.
    assert [piece for piece, _ in handed] == [second, third]
    _, handed_by_h11 = _events([first, second, third], False, sdk=False)
    assert handed_by_h11 == []  # h11's own buffer copies them


def test_unprocessed_data_and_length_see_a_kept_chunk() -> None:
    buffer = ZeroCopyReceiveBuffer()
    chunk = b"partial line without an end"
    buffer += chunk
    assert len(buffer) == len(chunk) and buffer
    assert buffer.maybe_extract_next_line() is None  # spilled into the bytearray, nothing lost
    assert bytes(buffer) == chunk
    buffer += b"\r\nrest"
    assert buffer.maybe_extract_next_line() == bytearray(chunk + b"\r\n")
    assert buffer.maybe_extract_at_most(2) == bytearray(b"re")
    assert buffer.maybe_extract_at_most(1) == bytearray(b"s")  # one byte fewer than it holds
    assert buffer.maybe_extract_at_most(10) == bytearray(b"t")
    assert buffer.maybe_extract_at_most(10) is None and not buffer
