"""``audian-fax emulator``: serve the emulator from the command line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import click

from ._config import PROFILES, EmulatorConfig, FaultConfig, fault_profile

__all__ = ["emulator_command"]


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.option("--faxes", default=500, show_default=True, type=click.IntRange(min=0), help="Faxes per new account.")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of faxes, documents and faults.")
@click.option(
    "--faults",
    "profile",
    default="none",
    show_default=True,
    type=click.Choice(sorted(PROFILES)),
    help="Named fault profile; the options below override it.",
)
@click.option("--latency", type=click.FloatRange(min=0), help="Seconds added to every API request.")
@click.option("--bandwidth", type=click.IntRange(min=1), help="Bytes per second for each download.")
@click.option("--p500", type=click.FloatRange(0, 1), help="Probability of a 500.")
@click.option("--p503", type=click.FloatRange(0, 1), help="Probability of a 503 (with Retry-After).")
@click.option("--p429", type=click.FloatRange(0, 1), help="Probability of a 429 (with Retry-After).")
@click.option("--drop", type=click.FloatRange(0, 1), help="Probability a download's connection drops mid-body.")
@click.option("--truncate", type=click.FloatRange(0, 1), help="Probability a download body is cut at half.")
@click.option("--slow-first-byte", type=click.FloatRange(min=0), help="Seconds before a download's first byte.")
@click.option(
    "--max-concurrent-downloads",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Concurrent downloads allowed per account before 429.",
)
@click.option(
    "--retry-after",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retry-After seconds of 429s and 503s.",
)
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Multiplies webhook retry delays (24 h at 1.0).",
)
@click.option("--admin-key", default=None, help="Require this X-Admin-Key on the admin API.")
@click.option(
    "--keys",
    default=None,
    metavar="KEY[,KEY...]",
    help="The API keys that exist (comma-separated); others get 401. Default: every key is an account.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def emulator_command(
    host: str,
    port: int,
    faxes: int,
    seed: int,
    profile: str,
    latency: float | None,
    bandwidth: int | None,
    p500: float | None,
    p503: float | None,
    p429: float | None,
    drop: float | None,
    truncate: float | None,
    slow_first_byte: float | None,
    max_concurrent_downloads: int,
    retry_after: int,
    time_scale: float,
    admin_key: str | None,
    keys: str | None,
    log_level: str,
) -> None:
    """Serve an emulator of the Audian Receive Fax API (and its admin API under /_emulator)."""
    from ._server import run_emulator

    overrides = {
        "latency": latency,
        "bandwidth": bandwidth,
        "p500": p500,
        "p503": p503,
        "p429": p429,
        "drop": drop,
        "truncate": truncate,
        "slow_first_byte": slow_first_byte,
    }
    try:
        faults = FaultConfig.from_json(
            {"retry_after": retry_after, **{k: v for k, v in overrides.items() if v is not None}},
            base=fault_profile(profile),
        )
        config = EmulatorConfig(
            host=host,
            port=port,
            faxes=faxes,
            seed=seed,
            faults=faults,
            max_concurrent_downloads=max_concurrent_downloads,
            retry_after=retry_after,
            time_scale=time_scale,
            admin_key=admin_key,
            keys=_key_list(keys),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    async def serve() -> None:
        async with run_emulator(config, log_level=log_level, handle_signals=True) as emulator:
            click.echo(
                f"Audian emulator: API {emulator.base_url}  admin {emulator.admin_url}  (Ctrl-C to stop)",
            )
            await emulator.wait_stopped()

    try:
        _run(serve)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _key_list(keys: str | None) -> list[str] | None:
    """``--keys a,b``: the keys, without blanks around them; empty names are refused."""
    if keys is None:
        return None
    names = [name.strip() for name in keys.split(",")]
    if not all(names):
        raise ValueError(f"--keys takes comma-separated API keys, got {keys!r}")
    return names


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the server on uvloop where it is installed (the ``emulator`` extra brings it, with httptools):
    cheaper per request than asyncio and h11, which matters when it shares the machine with the
    client it serves; plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
