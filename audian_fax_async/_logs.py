"""``AUDIAN_LOG``: the SDK's own log lines on stderr, without configuring logging in the application.

``AUDIAN_LOG=debug|info|warning`` (read once, at import) gives the ``audian_fax_async`` logger a stderr
handler at that level; otherwise the library stays silent (a ``NullHandler``) and the application's
logging configuration decides. At DEBUG each request and answer is one line: method, path, status,
time, the API's request id and the attempt. No line ever holds the API key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TextIO

__all__ = ["LOG_ENV", "setup_logging"]

LOG_ENV = "AUDIAN_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class _AudianLogHandler(logging.StreamHandler[TextIO]):
    """The stderr handler ``AUDIAN_LOG`` adds (told apart from an application's own handlers)."""


def setup_logging(env: Mapping[str, str] | None = None) -> logging.Logger:
    """Configure the ``audian_fax_async`` logger from ``AUDIAN_LOG`` (once; the logger is returned)."""
    logger = logging.getLogger("audian_fax_async")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    level = _LEVELS.get((env if env is not None else os.environ).get(LOG_ENV, "").strip().lower())
    if level is not None and not any(isinstance(h, _AudianLogHandler) for h in logger.handlers):
        handler = _AudianLogHandler()
        handler.setFormatter(
            logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
        )
        logger.addHandler(handler)
        logger.setLevel(level)
    return logger
