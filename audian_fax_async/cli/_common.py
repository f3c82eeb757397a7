"""What every command shares: options, the client, output and one-line errors."""

from __future__ import annotations

import functools
import json
import sys
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, ParamSpec, TypeVar

import anyio
import click
from rich.text import Text

from .._client import FaxClient
from .._converter import unstructure
from .._exceptions import AudianError

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


def run_async(func: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """Run an async command on anyio; an SDK error becomes one clear line and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return anyio.run(functools.partial(func, *args, **kwargs))
        except AudianError as exc:
            return fail(f"{type(exc).__name__}: {exc}")
        except KeyboardInterrupt:
            return fail("interrupted", code=130)

    return wrapper


def visible(text: str) -> str:
    """``text`` with control and format characters shown as escapes (``\\x1b``): text from a
    server must not move the cursor, clear the screen or hide itself on the user's terminal."""
    return "".join(ch if ch == " " or unicodedata.category(ch)[0] not in "CZ" else ascii(ch)[1:-1] for ch in text)


def plain(text: str, style: str = "") -> Text:
    """Server-supplied ``text`` for rich: never read as markup, control characters shown visibly."""
    return Text(visible(text), style=style)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(click.style("error: ", fg="red", bold=True) + visible(message), err=True)
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
