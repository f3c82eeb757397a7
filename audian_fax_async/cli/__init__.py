"""The ``audian-fax`` command line (extra ``cli``: click and rich)."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``audian-fax`` script."""
    try:
        from ._app import cli
    except ImportError as exc:  # the cli extra is missing
        raise SystemExit(
            f"audian-fax needs the 'cli' extra: pip install 'audian-fax-async[cli]' ({exc.name} is missing)"
        ) from None
    cli(prog_name="audian-fax")
