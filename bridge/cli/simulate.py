"""``ami-bridge simulate``: serve simulated Asterisk AMI traffic until Ctrl+C or SIGTERM.

A thin shell around :class:`bridge.ami.simulator.AmiSimulator`: flags in, one log line
out (host, port and user, never the secret), then serve until a signal arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from bridge.ami.simulator import AmiSimulator
from bridge.cli.exit_codes import ExitCode

log = logging.getLogger(__name__)

#: Environment variable that supplies the secret when ``--secret`` is not given.
SECRET_ENV = "AMI_BRIDGE_SIMULATOR_SECRET"
DEFAULT_SECRET = "bridge-secret"


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (0-65535), got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=5038,
        help="TCP port, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=_non_negative,
        default=50.0,
        help="generated events per second, 0 for none (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=_non_negative,
        default=None,
        help="seconds of traffic, counted from the first login (default: forever)",
    )
    parser.add_argument("--user", default="bridge", help="AMI user name (default: %(default)s)")
    # No %(default)s here: the default may come from the environment and is a secret.
    parser.add_argument(
        "--secret",
        default=None,
        help=f"AMI secret (default: ${SECRET_ENV} if set, else {DEFAULT_SECRET})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for a reproducible event sequence (default: random)",
    )
    parser.add_argument(
        "--legacy",
        action="store_true",
        help="send Asterisk 1.4 event shapes (default: Asterisk 22)",
    )


def resolve_secret(flag: str | None) -> str:
    """The ``--secret`` flag, else ``$AMI_BRIDGE_SIMULATOR_SECRET``, else the default."""
    return flag or os.environ.get(SECRET_ENV) or DEFAULT_SECRET


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    simulator = AmiSimulator(
        host=args.host,
        port=args.port,
        user=args.user,
        secret=resolve_secret(args.secret),
        rate=args.rate,
        duration=args.duration,
        seed=args.seed,
        legacy=args.legacy,
    )
    try:
        asyncio.run(_serve(simulator))
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, e.strerror or e)
        return int(ExitCode.FAILURE)
    return int(ExitCode.OK)


async def _serve(simulator: AmiSimulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with simulator:
        log.info(
            "AMI simulator listening on %s:%d as user %r (%s events/s, %s)",
            simulator.host,
            simulator.port,
            simulator.user,
            simulator.rate,
            "Asterisk 1.4 shapes" if simulator.legacy else "Asterisk 22 shapes",
        )
        await stop.wait()
    log.info("AMI simulator stopped")
