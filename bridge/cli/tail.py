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
reported on stderr.  Ctrl+C and SIGTERM exit 0; an unusable broker exits 1 with a one-line reason.

History: ``--since 10m`` (``s``, ``m``, ``h``, ``d``, or an RFC 3339 time such as
``2026-11-26T08:00:00Z``), ``--from-start`` and ``--offset N`` read the bridge's stream,
``<exchange>.stream`` (:class:`~bridge.consumer.StreamReplay`), through the same
patterns, matched on the client, and then go on with live messages from the same
stream, so nothing falls between the past and the present.  ``--until-now`` stops
instead at the newest message the stream held when ``tail`` started.  ``--offsets``
prefixes each line with the message's stream offset (``--offset`` takes it back).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from bridge.cli.exit_codes import ExitCode
from bridge.cli.flags import ConfigError, settings_from_args
from bridge.cli.pipes import silence_stdout
from bridge.cli.run import configure_logging, new_event_loop
from bridge.consumer import (
    Consumer,
    ConsumerError,
    Message,
    StreamReplay,
    StreamStart,
    format_line,
)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``10m``, ``2h``, ``90s``, ``1d`` before ``now``, or an RFC 3339 time, as aware UTC.

    Raises:
        ValueError: neither a duration nor an RFC 3339 time with its offset.
    """
    duration = _DURATION.fullmatch(text.strip())
    if duration:
        seconds = float(duration[1]) * _UNIT_SECONDS[duration[2]]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(
            f"--since {text!r} is neither a duration (10m, 2h, 90s, 1d) nor an RFC 3339 "
            "time with its offset (2026-11-26T08:00:00Z)"
        )
    return moment.astimezone(UTC)


def stream_start(args: argparse.Namespace) -> StreamStart | None:
    """Where the flags say to start reading the stream; None for live messages only.

    Raises:
        ValueError: a bad ``--since``, or ``--until-now`` without a start.
    """
    start: StreamStart | None = None
    if args.since is not None:
        start = parse_since(args.since)
    elif args.from_start:
        start = "first"
    elif args.offset is not None:
        start = args.offset
    if args.until_now and start is None:
        raise ValueError("--until-now needs --since, --from-start or --offset")
    return start


def _offset(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("an offset is 0 or more")
    return value


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
    history = parser.add_mutually_exclusive_group()
    history.add_argument(
        "--since",
        default=None,
        metavar="WHEN",
        help="first show the stream's messages since 10m, 2h, 1d ago or an RFC 3339 time",
    )
    history.add_argument(
        "--from-start", action="store_true", help="first show every message the stream keeps"
    )
    history.add_argument(
        "--offset", type=_offset, default=None, metavar="N", help="start at stream offset N"
    )
    parser.add_argument(
        "--until-now",
        action="store_true",
        help="with a history flag: stop at the newest message when tail started",
    )
    parser.add_argument(
        "--offsets", action="store_true", help="prefix each line with its stream offset"
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
    start: StreamStart | None = None,
    until_now: bool = False,
    offsets: bool = False,
    out: TextIO = sys.stdout,
) -> None:
    """Print every message bound by ``patterns`` to ``out`` until cancelled.

    With ``start``, the stream is read from there instead (then live, or up to the
    present with ``until_now``).

    Raises:
        ConsumerError: the broker cannot be used, or the exchange (or stream) does not
            exist.
        BrokenPipeError: ``out`` was closed by its reader.
    """
    colour = not as_json and wants_colour(out)
    if start is not None:
        replay = StreamReplay(
            url,
            exchange=exchange,
            patterns=patterns,
            start=start,
            until_now=until_now,
            track_gaps=track_gaps,
        )
        async with replay:
            print(_replay_banner(replay, patterns), file=sys.stderr, flush=True)
            async for item in replay:
                line = _line(item.message, item.body, as_json=as_json, colour=colour)
                print(f"{item.offset} {line}" if offsets else line, file=out, flush=True)
        return
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
            line = _line(delivery.message, delivery.body, as_json=as_json, colour=colour)
            print(line, file=out, flush=True)
            await delivery.ack()


def _line(message: Message, body: bytes, *, as_json: bool, colour: bool) -> str:
    return body.decode("utf-8", "replace") if as_json else format_line(message, colour=colour)


def _replay_banner(replay: StreamReplay, patterns: Sequence[str]) -> str:
    if not replay.until_now:
        then = "then live; Ctrl+C stops"
    elif replay.present is None:
        then = "stopping at once: the stream is empty"
    else:
        then = f"stopping at offset {replay.present}"
    return (
        f"tail: reading stream {replay.stream!r} from {_describe(replay.start_at)} for "
        f"{', '.join(map(repr, patterns))}; {then}"
    )


def _describe(start: StreamStart) -> str:
    if isinstance(start, datetime):
        return start.isoformat().replace("+00:00", "Z")
    if isinstance(start, int):
        return f"offset {start}"
    return f"the {start} message" if start != "first" else "the start"


async def until_sigterm(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or SIGTERM arrives: a stop, like Ctrl+C, not a failure."""
    task = asyncio.current_task()
    assert task is not None
    terminated = asyncio.Event()

    def terminate() -> None:
        terminated.set()
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    try:
        await work
    except asyncio.CancelledError:
        if not terminated.is_set():  # Ctrl+C, handled by the runner
            raise
        task.uncancel()


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        url = settings.amqp_url_with_password()
        start = stream_start(args)
    except (ConfigError, ValueError) as exc:
        print(f"ami-bridge tail: {exc}", file=sys.stderr)
        return int(ExitCode.CONFIG_ERROR)
    # aiormq logs a failed connect before raising it; the error is reported once, below.
    configure_logging("WARNING", library_level="CRITICAL")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            runner.run(
                until_sigterm(
                    tail(
                        url,
                        settings.exchange,
                        args.patterns,
                        as_json=args.json,
                        track_gaps=args.gaps,
                        start=start,
                        until_now=args.until_now,
                        offsets=args.offsets,
                    )
                )
            )
        except KeyboardInterrupt:
            return int(ExitCode.OK)
        except ConsumerError as exc:
            print(f"ami-bridge tail: {exc}", file=sys.stderr)
            return int(ExitCode.FAILURE)
        except BrokenPipeError:  # the reader (``| head``) is gone: stop quietly
            silence_stdout()
            return int(ExitCode.OK)
    return int(ExitCode.OK)
