"""``python -m audian_fax_async.emulator``: the same as ``audian-fax emulator``."""

from ._cli import emulator_command

if __name__ == "__main__":
    emulator_command(prog_name="python -m audian_fax_async.emulator")
