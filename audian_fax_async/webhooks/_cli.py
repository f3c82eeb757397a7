"""``audian-fax listen``: receive webhooks on loopback and print each event once, as one JSON line.

A developer's tool: point a webhook (or the emulator) at it and watch events arrive. Needs the
``cli`` extra (click) and uvicorn (the ``emulator`` extra); uvicorn is imported only when it runs.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
from collections.abc import Callable, Collection, MutableMapping
from contextlib import AsyncExitStack
from typing import IO, Any

import anyio
import click
import httpx2

from .._converter import unstructure
from .._exceptions import WebhookError
from .._models import WebhookEvent
from ._parse import PAYLOAD_FIELDS
from ._receiver import DEFAULT_MAX_BODY_BYTES, ConfirmedEvent, WebhookReceiver

__all__ = ["build_listener", "event_line", "listen_command", "note_refusals"]


def event_line(item: WebhookEvent | ConfirmedEvent) -> str:
    """One event as a single JSON line: the payload's fields, ``event_id``, ``delivery_id``, and
    ``fax`` (the API's record) when the event was confirmed."""
    if isinstance(item, ConfirmedEvent):
        data = unstructure(item.event)
        data["fax"] = unstructure(item.fax)
    else:
        data = unstructure(item)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _forward_body(event: WebhookEvent) -> tuple[bytes, dict[str, str]]:
    """The event re-sent as the reference's JSON payload, with its ids in the usual headers."""
    data = unstructure(event)
    payload = {name: data[name] for name in PAYLOAD_FIELDS if name != "status" or data[name] is not None}
    headers = {"Content-Type": "application/json", "X-Audian-Event": str(event.event)}
    # Without the sender's event id the receiver downstream derives the same key from the body.
    if event.event_id:
        headers["X-Audian-Event-Id"] = event.event_id
    if event.delivery_id:
        headers["X-Audian-Delivery-Id"] = event.delivery_id
    return json.dumps(payload, separators=(",", ":")).encode(), headers


def build_listener(
    *,
    out: IO[str],
    confirm_with: Any = None,
    forward_to: str | None = None,
    forward_client: httpx2.AsyncClient | None = None,
    allow_senders: Collection[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> WebhookReceiver[Any]:
    """The receiver behind ``listen``: forwards each new event (when asked), then prints its line.

    A failed forward raises, so the delivery is answered 500 and its retry is forwarded again;
    the line is printed only once the event went through.
    """
    if forward_to is not None and forward_client is None:
        raise ValueError("forward_to needs forward_client")

    async def on_event(item: WebhookEvent | ConfirmedEvent) -> None:
        event = item.event if isinstance(item, ConfirmedEvent) else item
        if forward_to is not None and forward_client is not None:
            body, headers = _forward_body(event)
            try:
                response = await forward_client.post(forward_to, content=body, headers=headers)
            except httpx2.HTTPError as exc:
                click.echo(f"forward of {event.dedupe_key} failed: {type(exc).__name__}", err=True)
                raise WebhookError(f"forward failed: {type(exc).__name__}", status_code=502) from None
            if not response.is_success:
                click.echo(f"forward of {event.dedupe_key} answered {response.status_code}", err=True)
                raise WebhookError(f"forward answered {response.status_code}", status_code=502)
        out.write(event_line(item) + "\n")
        out.flush()

    if confirm_with is not None:
        return WebhookReceiver(
            on_event, confirm_with=confirm_with, allow_senders=allow_senders, max_body_bytes=max_body_bytes
        )
    return WebhookReceiver(on_event, allow_senders=allow_senders, max_body_bytes=max_body_bytes)


#: Outcomes that are the point of ``listen`` (the event's line is on stdout); any other is noted on stderr.
_PRINTED = frozenset({"handled", "accepted"})
_MAX_NOTED_BODY = 4096


def note_refusals(app: Any, note: Callable[[str], None]) -> Any:
    """``app`` (the receiver) as an ASGI app that calls ``note`` with one line for each post it did
    not take in: refused, invalid, duplicate, too large..., with the sender, the status and the reason."""

    async def noted(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 0
        body = bytearray()

        async def capture(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and len(body) < _MAX_NOTED_BODY:
                body.extend(message.get("body", b"")[:_MAX_NOTED_BODY])
            await send(message)

        await app(scope, receive, capture)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        outcome = str(answer.get("outcome", "")) if isinstance(answer, dict) else ""
        if status == 0 or outcome in _PRINTED:
            return  # the sender went away before an answer, or the event was printed
        reason = str(answer.get("reason", "")) if isinstance(answer, dict) else ""
        client = scope.get("client")
        sender = f" from {client[0]}:{client[1]}" if client else ""
        line = f"{outcome or 'answered'}: {scope.get('method', '')} {scope.get('path', '')}{sender} answered {status}"
        note(visible(line + (f" ({reason})" if reason else "")))

    return noted


def visible(text: str) -> str:
    """``text`` with control characters shown as escapes: what a poster sent must not drive the terminal."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _is_http_url(url: str) -> bool:
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(
    *,
    host: str,
    port: int,
    api_key: str | None,
    base_url: str | None,
    confirm: bool,
    forward_to: str | None,
    allow_senders: Collection[str],
    max_body_bytes: int,
) -> None:
    import uvicorn

    from .._client import FaxClient

    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(FaxClient(api_key, base_url=base_url)) if confirm else None
        forward_client = await stack.enter_async_context(httpx2.AsyncClient(timeout=10.0)) if forward_to else None
        receiver = build_listener(
            out=sys.stdout,
            confirm_with=client,
            forward_to=forward_to,
            forward_client=forward_client,
            allow_senders=allow_senders or None,
            max_body_bytes=max_body_bytes,
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        stack.callback(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # connections made as soon as the banner shows wait in the backlog
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        extras = [name for name, on in (("confirm", confirm), ("forward", forward_to)) if on]
        click.echo(
            f"listening on http://{shown}:{bound}/ {'(' + ', '.join(extras) + ') ' if extras else ''}"
            "- one JSON line per event on stdout; Ctrl-C to stop",
            err=True,
        )
        app = note_refusals(receiver, lambda line: click.echo(line, err=True))
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        await uvicorn.Server(config).serve(sockets=[sock])


@click.command("listen")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--api-key", envvar="AUDIAN_API_KEY", help="API key for --confirm (default: $AUDIAN_API_KEY).")
@click.option("--base-url", envvar="AUDIAN_BASE_URL", help="API base URL for --confirm (default: $AUDIAN_BASE_URL).")
@click.option("--confirm", is_flag=True, help="Fetch each fax through the API first; refuse events it does not know.")
@click.option("--forward-to", metavar="URL", help="POST each new event on to URL as JSON.")
@click.option(
    "--allow-sender", "allow_senders", multiple=True, metavar="E164", help="Accept events from this number only."
)
@click.option("--max-body-bytes", type=click.IntRange(1), default=DEFAULT_MAX_BODY_BYTES, show_default=True)
def listen_command(
    port: int,
    host: str,
    api_key: str | None,
    base_url: str | None,
    confirm: bool,
    forward_to: str | None,
    allow_senders: tuple[str, ...],
    max_body_bytes: int,
) -> None:
    """Receive webhooks on loopback and print each event once, as one JSON line on stdout.

    Retries and duplicates are printed once. Point a webhook or the emulator at the printed URL:

        audian-fax listen --port 8080 --confirm --forward-to http://127.0.0.1:8000/webhooks/fax/
    """
    if confirm and not api_key:
        raise click.UsageError("--confirm needs --api-key or AUDIAN_API_KEY")
    if forward_to is not None and not _is_http_url(forward_to):
        raise click.BadParameter(f"{forward_to!r} is not an http:// or https:// URL", param_hint="'--forward-to'")
    if not _is_loopback(host):
        click.echo(f"warning: {host} is not loopback: anyone who reaches this port can post events", err=True)
    try:
        anyio.run(
            lambda: _serve(
                host=host,
                port=port,
                api_key=api_key,
                base_url=base_url,
                confirm=confirm,
                forward_to=forward_to,
                allow_senders=allow_senders,
                max_body_bytes=max_body_bytes,
            )
        )
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass
