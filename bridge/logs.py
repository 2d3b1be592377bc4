"""How the bridge logs: one handler on stderr, as text or one JSON object per line.

The bridge's own loggers (``bridge.*``) log at ``level``; every other logger (aiormq,
aio_pika, asyncio...) at ``library_level``, WARNING by default, so ``--log-level DEBUG``
shows what the bridge does rather than AMQP frame dumps.

Lines about one PBX go through :func:`server_log`: the text starts with the server id,
and a JSON line carries it in its ``server`` field, so two PBXs on one host never give
identical lines.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LogFormat", "ServerLog", "configure_logging", "server_log"]

LogFormat = Literal["text", "json"]

#: The logger every module of the bridge logs under.
BRIDGE_LOGGER = "bridge"
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    return logging.Formatter(_TEXT)


def configure_logging(
    level: str,
    *,
    library_level: str = "WARNING",
    fmt: LogFormat = "text",
    stream: TextIO | None = None,
) -> None:
    """Log to ``stream`` (stderr): the bridge at ``level``, the others at ``library_level``."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(_formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(library_level)
    logging.getLogger(BRIDGE_LOGGER).setLevel(level)
    # aio-pika's Connection.__del__ creates a close() coroutine it never awaits when a
    # connection that failed mid-handshake is collected: nothing is left open, and the
    # warning would be a stray line on stderr at every broker outage.
    warnings.filterwarnings(
        "ignore", "coroutine 'Connection.close' was never awaited", RuntimeWarning
    )


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines name one PBX: ``pbx1: ...`` in text, ``"server"`` in JSON."""

    def __init__(self, logger: logging.Logger, server: str) -> None:
        super().__init__(logger, {"server": server})
        self.server = server

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "server": self.server}
        return f"{self.server}: {msg}", kwargs


def server_log(logger: logging.Logger, server: str | None) -> logging.Logger | ServerLog:
    """``logger`` naming ``server`` in each line, or ``logger`` itself without a server."""
    return logger if server is None else ServerLog(logger, server)
