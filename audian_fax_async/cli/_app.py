"""The ``audian-fax`` commands."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from .._config import API_KEY_ENV, BASE_URL_ENV, DEFAULT_MAX_RETRIES
from .._converter import format_datetime, unstructure
from .._models import FaxStatus, ReceivedFax, RoutingType, WebhookEventType, WebhookFormat
from ._common import (
    DATETIME,
    TEMPLATE_FIELDS,
    CommandLine,
    Settings,
    check_template_option,
    emit_json,
    fail,
    pass_settings,
    run_async,
    stdout_is_terminal,
    visible,
)
from ._progress import remove_if_left_empty, run_bulk

__all__ = ["cli"]

STATUSES = click.Choice([s.value for s in FaxStatus])


@click.group(cls=CommandLine, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--api-key", envvar=API_KEY_ENV, show_envvar=True, help="API key (sent as X-Auth-Token).")
@click.option("--base-url", envvar=BASE_URL_ENV, show_envvar=True, help="API base URL, e.g. http://127.0.0.1:8443/v2.")
@click.option("--max-retries", default=DEFAULT_MAX_RETRIES, show_default=True, type=click.IntRange(0, 20))
@click.option(
    "--transport",
    type=click.Choice(["httpx2", "aiohttp"]),
    default="httpx2",
    show_default=True,
    envvar="AUDIAN_TRANSPORT",
    show_envvar=True,
    help="HTTP transport: httpx2's own, or AiohttpTransport (faster bulk downloads; needs the aiohttp extra).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log to stderr: retries and warnings (-v); also one line per HTTP request (-vv).",
)
@click.version_option(package_name="audian-fax-async")
@click.pass_context
def cli(
    ctx: click.Context, api_key: str | None, base_url: str | None, max_retries: int, transport: str, verbose: int
) -> None:
    """Audian Receive Fax from the command line: list, fetch and bulk-download faxes, configure
    webhooks and routing, and run the local emulator."""
    _log_to_stderr(verbose)
    ctx.obj = Settings(api_key, base_url, max_retries, verbose, transport=transport)


class _StderrHandler(logging.Handler):
    """Log records as lines on the standard error of the moment (click's, under a test runner too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(visible(self.format(record)) if record.exc_info is None else self.format(record), err=True)
        except Exception:
            self.handleError(record)


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


def _log_to_stderr(verbose: int) -> None:
    """``-v``: the SDK's retries and warnings; ``-vv``: also its line per request (method, path, status,
    time, request id, attempt)."""
    logger = logging.getLogger("audian_fax_async")
    if verbose:
        logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
        if _HANDLER not in logger.handlers:
            logger.addHandler(_HANDLER)
    elif _HANDLER in logger.handlers:  # an earlier run in this process (a test runner's)
        logger.removeHandler(_HANDLER)
        logger.setLevel(logging.NOTSET)


#: The columns of ``list``, in the order of its tab-separated lines.
LIST_COLUMNS = ("id", "received_at", "from", "name", "pages", "size", "status")


def _fax_row(fax: ReceivedFax) -> tuple[str, ...]:
    return (
        fax.id,
        format_datetime(fax.received_at),
        fax.from_number,
        fax.from_name or "",
        str(fax.pages),
        str(fax.file_size) if fax.file_size is not None else "",
        str(fax.status),
    )


#: The columns a narrow terminal leaves out of the table first (the id never is).
_DROPPED_FIRST = ("name", "size", "pages", "received_at", "from")


def _table_cells(fax: ReceivedFax) -> dict[str, str]:
    size = f"{fax.file_size:,}" if fax.file_size is not None else ""
    received = fax.received_at.strftime("%Y-%m-%d %H:%M:%SZ")
    row = _fax_row(fax)
    cells = dict(zip(LIST_COLUMNS, (row[0], received, *row[2:5], size, row[6]), strict=True))
    return {name: visible(cell) for name, cell in cells.items()}


def _fax_table(faxes: list[ReceivedFax], width: int) -> tuple[Table, list[str]]:
    """The faxes as a table for a terminal ``width`` columns wide, and the columns left out.

    No cell is ever cut (ids are what people copy): columns that do not fit are left out, the
    least needed first.
    """
    rows = [_table_cells(fax) for fax in faxes]
    widest = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in LIST_COLUMNS}
    shown = list(LIST_COLUMNS)
    for name in _DROPPED_FIRST:
        if sum(widest[n] for n in shown) + 3 * len(shown) - 1 <= width:
            break
        shown.remove(name)
    table = Table(*(Column(name, no_wrap=True) for name in shown), show_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*(Text(row[name]) for name in shown))
    return table, [name for name in LIST_COLUMNS if name not in shown]


@cli.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--all", "walk_all", is_flag=True, help="Walk every page (drift-proof) instead of one; no --limit/--offset."
)
@click.option("--status", type=STATUSES)
@click.option("--from-date", type=DATETIME, help="Received at or after (ISO 8601; UTC if no zone).")
@click.option("--to-date", type=DATETIME, help="Received at or before.")
@click.option("--from-number", help="Sender's number (E.164).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per fax.")
@click.pass_context
def list_command(
    ctx: click.Context,
    limit: int,
    offset: int,
    walk_all: bool,
    status: str | None,
    from_date: datetime | None,
    to_date: datetime | None,
    from_number: str | None,
    as_json: bool,
) -> None:
    """List received faxes, newest first.

    On a terminal, a table and a count; in a pipe or a file, one fax per line with tab-separated
    fields (id, received_at, from, name, pages, size in bytes, status) and nothing else; --json
    gives one JSON object per line.
    """
    if walk_all:
        given = [
            f"--{name}" for name in ("limit", "offset") if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(f"--all walks every page: it takes no {' or '.join(given)}", ctx=ctx)
    filters: dict[str, Any] = {"status": status, "from_date": from_date, "to_date": to_date, "from_number": from_number}
    settings = ctx.find_object(Settings)
    assert settings is not None  # the group made it
    _list(settings, None if walk_all else (limit, offset), filters, as_json)


@run_async
async def _list(settings: Settings, page: tuple[int, int] | None, filters: dict[str, Any], as_json: bool) -> None:
    async with settings.client() as client:
        if page is None:
            faxes = [fax async for fax in client.received.iter(page_size=100, **filters)]
            total = len(faxes)
        else:
            answer = await client.received.list(*page, **filters)
            faxes, total = answer.faxes, answer.total
    if as_json:
        for fax in faxes:
            emit_json(fax)
    elif stdout_is_terminal():
        console = Console()
        table, left_out = _fax_table(faxes, console.width)
        console.print(table)
        note = f" ({', '.join(left_out)} left out: too narrow; --json has every field)" if left_out else ""
        console.print(f"[dim]{len(faxes)} shown of {total}{note}[/dim]")
    else:
        for fax in faxes:
            click.echo("\t".join(visible(cell) for cell in _fax_row(fax)))


def _field_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@cli.command("get")
@click.argument("fax_id")
@click.option("--json", "as_json", is_flag=True, help="The record as one JSON object.")
@pass_settings
@run_async
async def get_command(settings: Settings, fax_id: str, as_json: bool) -> None:
    """Show every field of one fax's record, one per line."""
    async with settings.client() as client:
        fax = await client.received.get(fax_id)
    if as_json:
        emit_json(fax)
        return
    record: dict[str, Any] = unstructure(fax)
    width = max(len(name) for name in record)
    for name, value in record.items():
        click.echo(f"{name:<{width}}  {visible(_field_value(value))}")


@cli.command("download")
@click.argument("fax_id")
@click.argument("dest", type=click.Path(), default=".")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@pass_settings
@run_async
async def download_command(settings: Settings, fax_id: str, dest: str, overwrite: bool) -> None:
    """Download one fax's document to DEST: a file, an existing folder, or a folder to create
    (a path ending in /)."""
    async with settings.client() as client:
        result = await client.received.download(fax_id, dest, overwrite=overwrite)
    click.echo(f"{result.path}  {result.bytes:,} bytes  sha256 {result.sha256}")


@cli.command("download-all")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--status", type=STATUSES, help="Only faxes with this status.")
@click.option("--from-date", type=DATETIME)
@click.option("--to-date", type=DATETIME)
@click.option("--from-number")
@click.option("--after", type=click.Choice(["processed", "archived"]), help="Mark each fax once it is on disk.")
@click.option(
    "--template",
    "path_template",
    callback=check_template_option,
    help="File layout, e.g. '{received_at:%Y/%m/%d}/{id}.{ext}' (fields: " + ", ".join(TEMPLATE_FIELDS) + ").",
)
@click.option("--overwrite", is_flag=True, help="Replace existing files that are not in the manifest.")
@click.option("--concurrency", type=click.IntRange(1, 10), help="Downloads at once (at most the account's 10).")
@click.option("--json", "as_json", is_flag=True, help="Write one JSON line per fax to stdout.")
@pass_settings
@run_async
async def download_all_command(
    settings: Settings,
    dest: Path,
    status: str | None,
    from_date: datetime | None,
    to_date: datetime | None,
    from_number: str | None,
    after: Any,
    path_template: str | None,
    overwrite: bool,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Download every matching fax into DEST, resumably (a rerun skips finished faxes).

    Exits with status 1 when any fax failed.
    """
    console = Console(stderr=True)
    async with settings.client() as client, remove_if_left_empty(dest):
        summary = await run_bulk(
            lambda on_progress: client.received.download_all(
                dest,
                status=FaxStatus(status) if status else None,
                from_date=from_date,
                to_date=to_date,
                from_number=from_number,
                after=after,
                path_template=path_template,
                overwrite=overwrite,
                concurrency=concurrency,
                on_progress=on_progress,
            ),
            json_lines=as_json,
            console=console,
            dest=dest,
            marking=after is not None,
        )
    for line in summary.lines():
        console.print(line, soft_wrap=True, highlight=False)
    if summary.failed:
        fail(f"{summary.failed} of {summary.total} faxes failed")


@cli.command("mark-processed")
@click.argument("fax_id")
@pass_settings
@run_async
async def mark_processed_command(settings: Settings, fax_id: str) -> None:
    """Mark a fax as processed."""
    async with settings.client() as client:
        fax = await client.received.mark_processed(fax_id)
    click.echo(f"{fax.id}: {fax.status}")


@cli.command("archive")
@click.argument("fax_id")
@pass_settings
@run_async
async def archive_command(settings: Settings, fax_id: str) -> None:
    """Move a fax to archive storage."""
    async with settings.client() as client:
        fax = await client.received.archive(fax_id)
    click.echo(f"{fax.id}: {fax.status}")


@cli.group("webhooks")
def webhooks_group() -> None:
    """Webhook subscriptions."""


@webhooks_group.command("create")
@click.option("--url", required=True, help="Where events are POSTed.")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice([e.value for e in WebhookEventType]),
    default=["fax_received"],
    show_default=True,
)
@click.option("--format", "fmt", type=click.Choice([f.value for f in WebhookFormat]), default="json")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@pass_settings
@run_async
async def webhooks_create_command(
    settings: Settings, url: str, events: tuple[str, ...], fmt: str, disabled: bool
) -> None:
    """Subscribe a URL to fax events (never retried once sent: no duplicates)."""
    async with settings.client() as client:
        hook = await client.webhooks.create(
            url=url,
            events=[WebhookEventType(event) for event in events],
            enabled=not disabled,
            format=WebhookFormat(fmt),
        )
    emit_json(hook)


@cli.group("routing")
def routing_group() -> None:
    """Routing rules for incoming faxes."""


@routing_group.command("create")
@click.option("--type", "kind", required=True, type=click.Choice([t.value for t in RoutingType]))
@click.option("--destination", required=True, help="Email address or URL.")
@click.option("--attach-document", is_flag=True)
@click.option("--disabled", is_flag=True)
@pass_settings
@run_async
async def routing_create_command(
    settings: Settings, kind: str, destination: str, attach_document: bool, disabled: bool
) -> None:
    """Route incoming faxes to an email address or a webhook."""
    async with settings.client() as client:
        rule = await client.routing.create(
            type=RoutingType(kind), destination=destination, attach_document=attach_document, enabled=not disabled
        )
    emit_json(rule)


@cli.group("numbers")
def numbers_group() -> None:
    """Dedicated fax numbers."""


@numbers_group.command("request")
@click.option("--area-code", required=True)
@click.option("--quantity", default=1, show_default=True, type=click.IntRange(1, 100))
@pass_settings
@run_async
async def numbers_request_command(settings: Settings, area_code: str, quantity: int) -> None:
    """Buy fax numbers (never retried once sent: a retry would buy them twice)."""
    async with settings.client() as client:
        numbers = await client.numbers.request(area_code=area_code, quantity=quantity)
    for number in numbers:
        emit_json(number)


def _attach_optional_commands() -> None:
    try:
        from ..emulator import emulator_command
    except ImportError:

        @cli.command("emulator", context_settings={"ignore_unknown_options": True})
        def emulator_missing() -> None:
            """Run the local emulator (needs the 'emulator' extra)."""
            fail("the emulator needs the 'emulator' extra: pip install 'audian-fax-async[emulator]'")

    else:
        cli.add_command(emulator_command, "emulator")
    try:
        from ..webhooks._cli import listen_command
    except ImportError:
        pass
    else:
        cli.add_command(listen_command, "listen")
    from ._demo import demo_command

    cli.add_command(demo_command, "demo")
    from ._mirror import mirror_group

    cli.add_command(mirror_group, "mirror")


_attach_optional_commands()
