"""``audian-fax mirror DEST`` (run the inbox mirror) and ``audian-fax mirror status DEST``.

``mirror`` is a group whose default command is ``run``: ``audian-fax mirror DEST --port 8080``
runs it, ``audian-fax mirror status DEST`` reads a folder. The receiver is served by uvicorn
(in the ``cli`` extra), on asyncio; SIGTERM and SIGINT stop it gracefully.

Exit status: 0 after a graceful stop, 1 for an error (one line on stderr: the folder is locked
by another mirror, the port cannot be bound, the key is refused...), 2 for a usage error.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import click

from .._bulk import _single_error
from .._converter import format_datetime
from .._exceptions import InvalidRequestError
from .._models import WebhookEventType
from ..mirror import Mirror, MirrorEvent, MirrorStatus, read_status
from ..webhooks._receiver import _allow_list
from ._common import TEMPLATE_FIELDS, Settings, check_template_option, fail, run_async, visible

__all__ = ["mirror_group", "parse_senders", "webhook_url"]

_RUN_HELP = "Run it: audian-fax mirror DEST --port PORT [OPTIONS]; see 'audian-fax mirror run --help'."


class _DefaultRun(click.Group):
    """A group whose first argument, unless it names a subcommand, is the ``run`` command's."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def parse_senders(values: Sequence[str]) -> list[str]:
    """The numbers of ``--allow-senders`` values: numbers (comma-separated allowed) or files of
    them (one a line, ``#`` comments)."""
    numbers: list[str] = []
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            if part.startswith("+") or part[:1].isdigit():
                numbers.append(part)
                continue
            try:
                text = Path(part).read_text(encoding="utf-8")
            except OSError as exc:
                raise click.BadParameter(
                    f"{part!r} is neither an E.164 number nor a readable file ({exc.strerror or exc})",
                    param_hint="'--allow-senders'",
                ) from None
            numbers += [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]
    try:
        _allow_list(numbers)
    except InvalidRequestError as exc:
        raise click.BadParameter(str(exc).removeprefix("allow_senders: "), param_hint="'--allow-senders'") from None
    return numbers


def webhook_url(public_url: str) -> str:
    """The URL to subscribe for ``--register-webhook PUBLIC_URL``: it, ending in ``/webhook``."""
    return public_url if public_url.rstrip("/").endswith("/webhook") else public_url.rstrip("/") + "/webhook"


@click.group("mirror", cls=_DefaultRun, epilog=_RUN_HELP)
def mirror_group() -> None:
    """Keep DEST a complete, verified copy of the inbox, driven by webhooks and healed by sweeps.

    \b
    audian-fax mirror DEST --port PORT [OPTIONS]   run the mirror
    audian-fax mirror status DEST                  read a mirror folder's state
    """


@mirror_group.command("run")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the receiver binds.")
@click.option("--port", required=True, type=click.IntRange(0, 65535), help="Receiver port (0 picks a free one).")
@click.option(
    "--reconcile-every",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds between sweeps (one also runs at start).",
)
@click.option(
    "--safety-margin",
    type=click.FloatRange(min=0),
    default=900.0,
    show_default=True,
    help="Seconds before the high-water mark a sweep lists from.",
)
@click.option("--after", type=click.Choice(["processed", "archived"]), help="Mark each fax once its file is durable.")
@click.option(
    "--archive-after", type=click.FloatRange(min=0, min_open=True), metavar="DAYS", help="Archive faxes this old."
)
@click.option(
    "--allow-senders",
    "allow_senders",
    multiple=True,
    metavar="NUMBERS|FILE",
    help="Download only faxes from these E.164 numbers (comma-separated, or a file of them); others are refused.",
)
@click.option(
    "--path-template",
    callback=check_template_option,
    help="File layout, e.g. '{received_at:%Y/%m/%d}/{id}.{ext}' (fields: " + ", ".join(TEMPLATE_FIELDS) + ").",
)
@click.option("--redis", "redis_url", metavar="URL", help="Share the limit and de-duplication through Redis.")
@click.option("--register-webhook", metavar="PUBLIC_URL", help="Subscribe PUBLIC_URL/webhook to fax_received.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds downloads in flight get to finish on SIGTERM/SIGINT.",
)
@click.option(
    "--status-every",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds between status lines.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout (faxes and status).")
@click.pass_obj
def run_command(settings: Settings, /, dest: Path, **options: Any) -> None:
    """Run the mirror of the inbox into DEST, with its webhook receiver at http://HOST:PORT/webhook
    and its health at /healthz.

    One line per fax on stdout (JSON with --json), a status line every --status-every seconds.
    SIGTERM or SIGINT: deliveries get 503, downloads in flight finish within --grace seconds,
    exit status 0. Exit status 1 on an error, 2 on a usage error.
    """
    options["allow_senders"] = parse_senders(options["allow_senders"]) if options["allow_senders"] else None
    register = options.get("register_webhook")
    if register is not None and not register.startswith(("http://", "https://")):
        raise click.BadParameter(f"{register!r} is not an http:// or https:// URL", param_hint="'--register-webhook'")
    _run(settings, dest, options)


def _print_event(as_json: bool) -> Callable[[MirrorEvent], None]:
    def on_event(event: MirrorEvent) -> None:
        click.echo(json.dumps(event.to_json()) if as_json else visible(event.line()))

    return on_event


def _print_status(status: MirrorStatus, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"event": "status", **status.to_json()}))
    else:
        click.echo(status.line(), err=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _banner(dest: Path, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"mirroring into {visible(str(dest))}: webhook receiver at http://{shown}:{port}/webhook, "
        f"health at http://{shown}:{port}/healthz",
        err=True,
    )


@contextlib.asynccontextmanager
async def _redis(url: str | None) -> AsyncIterator[tuple[Any, Any]]:
    if url is None:
        yield None, None
        return
    try:
        from ..redis import RedisIdempotencyStore, RedisLimiter
    except ImportError:
        raise click.ClickException("--redis needs the 'redis' extra: pip install 'audian-fax-async[redis]'") from None
    limiter = RedisLimiter.from_url(url)
    store = RedisIdempotencyStore.from_url(url, key_prefix="audian:mirror:")
    try:
        yield limiter, store
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()
            await limiter.aclose()


@run_async
async def _run(settings: Settings, dest: Path, opts: dict[str, Any]) -> None:
    as_json: bool = opts["as_json"]
    async with AsyncExitStack() as stack:
        limiter, store = await stack.enter_async_context(_redis(opts["redis_url"]))
        client = await stack.enter_async_context(settings.client(limiter=limiter) if limiter else settings.client())
        sock = _bind(opts["host"], opts["port"])
        stack.callback(sock.close)
        port = sock.getsockname()[1]
        mirror = Mirror(
            client,
            dest,
            reconcile_every=opts["reconcile_every"],
            safety_margin=opts["safety_margin"],
            after=opts["after"],
            archive_after=opts["archive_after"],
            allow_senders=opts["allow_senders"],
            path_template=opts["path_template"],
            shared_store=store,
            instance=f"{socket.gethostname()}-{port}" if store is not None else None,
            grace_period=opts["grace"],
            on_event=_print_event(as_json),
        )
        try:
            await _serve(mirror, sock, opts)
        except BaseExceptionGroup as group:
            # The command's task groups are its own business: an error is raised (and shown) as itself.
            single = _single_error(group)
            if single is None:
                raise
            raise single from single.__cause__
        _print_status(mirror.status(), as_json)


async def _serve(mirror: Mirror, sock: socket.socket, opts: dict[str, Any]) -> None:
    """Serve the mirror's app until SIGTERM or SIGINT; the server answers (503) while it drains."""
    import uvicorn

    class _Server(uvicorn.Server):
        # This command owns SIGTERM and SIGINT: the server must keep answering while the mirror drains.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = _Server(uvicorn.Config(mirror.app, log_config=None, access_log=False, lifespan="off"))
    stop, served = anyio.Event(), anyio.Event()

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stop.set()  # a second signal changes nothing: the grace period bounds the stop

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            served.set()

    async with anyio.create_task_group() as signals:
        signals.start_soon(watch_signals)
        async with anyio.create_task_group() as serving:
            serving.start_soon(serve)
            while not server.started:
                if served.is_set():
                    raise click.ClickException("the webhook receiver stopped while starting")
                await anyio.sleep(0.01)
            try:
                async with mirror:
                    await _running(mirror, sock, opts, stop)
            finally:
                server.should_exit = True  # once the mirror has drained
        signals.cancel_scope.cancel()


async def _running(mirror: Mirror, sock: socket.socket, opts: dict[str, Any], stop: anyio.Event) -> None:
    """While the mirror runs: the banner, the webhook subscription, status lines, until ``stop``."""
    _banner(mirror.dest_dir, sock)
    if opts["register_webhook"]:
        url = webhook_url(opts["register_webhook"])
        hook = await mirror.client.webhooks.create(url=url, events=[WebhookEventType.FAX_RECEIVED])
        click.echo(f"registered webhook {visible(hook.id or '')} for {visible(hook.url)}", err=True)

    async def print_status() -> None:
        while True:
            await anyio.sleep(opts["status_every"])
            _print_status(mirror.status(), opts["as_json"])

    async with anyio.create_task_group() as printing:
        printing.start_soon(print_status)
        await stop.wait()
        printing.cancel_scope.cancel()
    click.echo("stopping: deliveries get 503, downloads in flight finish", err=True)


@mirror_group.command("status")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The status as one JSON object.")
def status_command(dest: Path, as_json: bool) -> None:
    """Read a mirror folder's state without a server: faxes complete, queued, refused, the
    high-water mark and the last sweep, and whether a mirror is running on it."""
    from .._exceptions import AudianError

    try:
        status = read_status(dest)
    except AudianError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    if as_json:
        click.echo(json.dumps(status.to_json()))
        return
    faxes = status.faxes
    mark = status.high_water_mark
    click.echo(f"status           {status.state}")
    click.echo(f"complete         {faxes.complete}")
    click.echo(f"queued           {faxes.queued}")
    click.echo(f"refused          {faxes.refused}")
    click.echo(f"high-water mark  {format_datetime(mark) if mark is not None else '-'}")
    sweep = status.last_sweep
    if sweep is None:
        click.echo("last sweep       -")
        return
    detail = f"{sweep.listed} listed, {sweep.downloaded} downloaded, {sweep.failed} failed"
    click.echo(f"last sweep       {format_datetime(sweep.at)} {sweep.result} ({detail})")
    if sweep.error:
        click.echo(f"sweep error      {visible(sweep.error)}")
