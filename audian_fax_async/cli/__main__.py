"""``python -m audian_fax_async.cli``."""

from . import main

main()
