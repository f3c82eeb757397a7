"""What every command shares: options, the client, output and one-line errors."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, ParamSpec, TypeVar

import anyio
import click
from rich.text import Text

from .._client import FaxClient
from .._converter import unstructure
from .._exceptions import AudianError, DestinationError
from .._models import FaxStatus, ReceivedFax
from .._paths import render_template, template_fields

P = ParamSpec("P")
R = TypeVar("R")


class Settings:
    """The group's options, handed to each command."""

    def __init__(
        self, api_key: str | None, base_url: str | None, max_retries: int, verbose: int, *, transport: str = "httpx2"
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url
        self.max_retries = max_retries
        self.verbose = verbose
        self.transport = transport

    def client(self, **kwargs: Any) -> FaxClient:
        if self.transport == "aiohttp" and "transport" not in kwargs:
            from .._aiohttp import AiohttpTransport

            kwargs["transport"] = AiohttpTransport()  # ConfigurationError (one line) without the extra
        return FaxClient(self.api_key, base_url=self.base_url, max_retries=self.max_retries, **kwargs)


pass_settings = click.make_pass_decorator(Settings)


class CommandLine(click.Group):
    """The ``audian-fax`` group: every error, a usage error too, is one line on stderr and a
    non-zero exit status (2 for usage errors, as click has it)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            fail(exc.format_message().rstrip(".") + hint, code=exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), code=exc.exit_code)
        except click.Abort:
            fail("interrupted", code=130)
        except BrokenPipeError:
            quiet_broken_pipe()
        sys.exit(code if isinstance(code, int) else 0)


def quiet_broken_pipe() -> NoReturn:
    """The reader of our output went away (``audian-fax list | head``): stop quietly, status 1."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    except (OSError, ValueError):
        pass
    sys.exit(1)


def run_async(func: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """Run an async command on anyio; any error becomes one clear line and exit status 1.

    An SDK error is shown as its type and message, an OS error (a folder that cannot be written,
    say) as its message; anything else is a bug of ours: one line too, and with ``-vv`` the
    traceback goes to the log first.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return anyio.run(functools.partial(func, *args, **kwargs))
        except AudianError as exc:
            return fail(f"{type(exc).__name__}: {exc}")
        except BrokenPipeError:
            return quiet_broken_pipe()
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            return fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            return fail("interrupted", code=130)
        except (click.ClickException, click.exceptions.Exit):
            raise
        except Exception as exc:
            logging.getLogger("audian_fax_async").debug("unexpected error", exc_info=True)
            return fail(f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; -vv logs the traceback)")

    return wrapper


#: Python spellings in the SDK's messages and the options that say the same on the command line.
_CLI_WORDS = ((re.compile(r"\boverwrite=True\b"), "--overwrite"),)


def cli_words(message: str) -> str:
    """``message`` as the command line says it: ``--overwrite`` where the SDK says ``overwrite=True``."""
    for pattern, words in _CLI_WORDS:
        message = pattern.sub(words, message)
    return message


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal (a table for people) rather than a pipe or a file."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced by something without it, or closed
        return False


def visible(text: str) -> str:
    """``text`` with control and format characters shown as escapes (``\\x1b``): text from a
    server must not move the cursor, clear the screen or hide itself on the user's terminal."""
    return "".join(ch if ch == " " or unicodedata.category(ch)[0] not in "CZ" else ascii(ch)[1:-1] for ch in text)


def plain(text: str, style: str = "") -> Text:
    """Server-supplied ``text`` for rich: never read as markup, control characters shown visibly."""
    return Text(visible(text), style=style)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line of stderr (in the command line's words) and exit."""
    click.echo(click.style("error: ", fg="red", bold=True) + visible(cli_words(message)), err=True)
    sys.exit(code)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(unstructure(obj) if not isinstance(obj, dict) else obj, default=str, sort_keys=False))


class DateTimeParam(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic only in click >= 8.2
    """An ISO 8601 date or timestamp; without a zone it is taken as UTC."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip().replace("Z", "+00:00").replace("z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or timestamp (e.g. 2024-01-28T00:00:00Z)", param, ctx)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


DATETIME = DateTimeParam()


#: A fax with every field set, to try a ``--template`` on.
_SAMPLE_FAX = ReceivedFax(
    id="fax_received_123",
    from_number="+12025551234",
    to_number="+15551234567",
    pages=1,
    received_at=datetime(2024, 2, 4, 13, 15, tzinfo=UTC),
    status=FaxStatus.RECEIVED,
    from_name="John Smith",
    file_size=1,
    created_at=datetime(2024, 2, 4, 13, 15, tzinfo=UTC),
)


#: The fields a ``--template`` may use (``render_template``'s).
TEMPLATE_FIELDS = tuple(template_fields(_SAMPLE_FAX))


def check_template_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a template that cannot lay out a fax before any fax is listed (not once per fax)."""
    if value is not None:
        try:
            render_template(value, _SAMPLE_FAX)
        except DestinationError as exc:
            raise click.BadParameter(f"{exc} (fields: {', '.join(TEMPLATE_FIELDS)})", ctx, param) from None
    return value
