"""``python -m audian_fax_async.emulator``: the same as ``audian-fax emulator``, errors on one line too."""

import sys

import click

from ._cli import emulator_command

PROG = "python -m audian_fax_async.emulator"

if __name__ == "__main__":
    try:
        emulator_command.main(prog_name=PROG, standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message().rstrip('.')} (see '{PROG} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
