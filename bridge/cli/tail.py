"""``ami-bridge tail``: a live view of the messages on the bus.

An exclusive, auto-delete queue is bound to each routing pattern (``#``, everything, by
default; keys are ``{server}.{class}.{event}``), so the view takes nothing from other
consumers and leaves nothing behind.  Each message becomes one line (see
:mod:`bridge.consumer.oneline`), coloured by class when stdout is a terminal and
``NO_COLOR`` is not set, or with ``--json`` the body itself, one JSON object per line.

The broker and exchange come from the same settings as the bridge's (flags,
``AMI_BRIDGE_*`` variables, the TOML file), so the password can stay in
``AMI_BRIDGE_AMQP_PASSWORD_FILE``.  Nothing is declared but the queue: a missing
exchange is an error rather than a new, empty one.  Gaps and unreadable bodies are
reported on stderr.  Ctrl+C exits 0; an unusable broker exits 1 with a one-line reason.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bridge.cli.exit_codes import ExitCode
from bridge.cli.flags import ConfigError, settings_from_args
from bridge.cli.run import configure_logging, new_event_loop
from bridge.consumer import Consumer, ConsumerError, format_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "patterns",
        nargs="*",
        default=["#"],
        metavar="PATTERN",
        help="routing pattern to bind, e.g. 'pbx1.#' or '*.call.hangup' (default '#')",
    )
    parser.add_argument("--json", action="store_true", help="print each body as one JSON line")
    parser.add_argument("--amqp", default=None, help="broker URL (default: the bridge's)")
    parser.add_argument("--exchange", default=None, help="exchange (default: the bridge's)")
    parser.add_argument(
        "--gaps",
        action="store_true",
        help="report sequence gaps (only meaningful when the patterns cover whole servers)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML settings file (also AMI_BRIDGE_CONFIG)"
    )


def wants_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


async def tail(
    url: str,
    exchange: str,
    patterns: Sequence[str],
    *,
    as_json: bool = False,
    track_gaps: bool = False,
    out: TextIO = sys.stdout,
) -> None:
    """Print every message bound by ``patterns`` to ``out`` until cancelled.

    Raises:
        ConsumerError: the broker cannot be used or the exchange does not exist.
        BrokenPipeError: ``out`` was closed by its reader.
    """
    colour = not as_json and wants_colour(out)
    consumer = Consumer(
        url,
        exchange=exchange,
        patterns=patterns,
        dead_letters=False,
        declare_exchange=False,
        track_gaps=track_gaps,
    )
    async with consumer:
        print(
            f"tail: bound {', '.join(map(repr, patterns))} on exchange {exchange!r}; Ctrl+C stops",
            file=sys.stderr,
            flush=True,
        )
        async for delivery in consumer:
            if as_json:
                line = delivery.body.decode("utf-8", "replace")
            else:
                line = format_line(delivery.message, colour=colour)
            print(line, file=out, flush=True)
            await delivery.ack()


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        url = settings.amqp_url_with_password()
    except (ConfigError, ValueError) as exc:
        print(f"ami-bridge tail: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG_ERROR)
    configure_logging("WARNING")
    # aiormq logs a failed connect before raising it; the error is reported once, below.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            runner.run(
                tail(url, settings.exchange, args.patterns, as_json=args.json, track_gaps=args.gaps)
            )
        except KeyboardInterrupt:
            return int(ExitCode.OK)
        except ConsumerError as exc:
            print(f"ami-bridge tail: {exc}", file=sys.stderr)
            return int(ExitCode.FAILURE)
        except BrokenPipeError:
            # The reader (``| head``) is gone: stop quietly, and keep the interpreter's
            # final flush of stdout from failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return int(ExitCode.OK)
    return int(ExitCode.OK)
