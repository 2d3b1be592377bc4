"""``ami-bridge simulate``: serve simulated Asterisk AMI traffic until Ctrl+C or SIGTERM.

A thin shell around :class:`bridge.ami.simulator.AmiSimulator`: flags in, one log line
out (host, port and user, never the secret), then serve until a signal arrives.

``--replay FILE [--speed X]`` plays a capture at the pace of its ``Timestamp:`` headers
instead of generated traffic; ``--write-timeout`` is Asterisk's ``writetimeout``: a
session whose write blocks longer is dropped, and the last line counts those drops.

``--tls-cert FILE`` (with ``--tls-key FILE`` unless the key is in the same file) serves
``amis://`` instead, on port 5039 unless ``--port`` says otherwise, as Asterisk does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
from pathlib import Path

from bridge.ami.simulator import AmiSimulator
from bridge.ami.target import DEFAULT_PORT, DEFAULT_TLS_PORT
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


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
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
        default=None,
        help=f"TCP port, 0 for any free one (default: {DEFAULT_PORT}, "
        f"{DEFAULT_TLS_PORT} with --tls-cert)",
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
    parser.add_argument(
        "--write-timeout",
        type=_positive,
        default=0.1,
        help="seconds one write to a session may block before the session is dropped and "
        "its queued events thrown away, as Asterisk's writetimeout (default: %(default)s)",
    )
    parser.add_argument(
        "--sequence-numbers",
        action="store_true",
        help="add SequenceNumber to every event, as Asterisk's 'debug = on' does",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="FILE",
        help="play the events of an AMI capture (.ami or .ami.gz) at the pace of its "
        "Timestamp headers, from the first login, instead of generated traffic",
    )
    parser.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="with --replay: play the capture this many times faster (default: %(default)s)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        help="PEM certificate chain: serve AMI over TLS (amis://)",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        default=None,
        help="PEM private key of --tls-cert (default: read from the --tls-cert file)",
    )


def server_context(cert_file: Path, key_file: Path | None) -> ssl.SSLContext:
    """The TLS context that presents ``cert_file`` (and its key) to clients.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: a file holds no certificate or key, or they do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def resolve_secret(flag: str | None) -> str:
    """The ``--secret`` flag, else ``$AMI_BRIDGE_SIMULATOR_SECRET``, else the default."""
    return flag or os.environ.get(SECRET_ENV) or DEFAULT_SECRET


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.tls_key is not None and args.tls_cert is None:
        log.error("--tls-key needs --tls-cert")
        return int(ExitCode.CONFIG_ERROR)
    context = None
    if args.tls_cert is not None:
        try:
            context = server_context(args.tls_cert, args.tls_key)
        except OSError as e:  # ssl.SSLError included
            log.error("cannot load the TLS certificate %s: %s", args.tls_cert, e)
            return int(ExitCode.CONFIG_ERROR)
    port = args.port
    if port is None:
        port = DEFAULT_TLS_PORT if context is not None else DEFAULT_PORT
    try:
        simulator = AmiSimulator(
            host=args.host,
            port=port,
            user=args.user,
            secret=resolve_secret(args.secret),
            rate=args.rate,
            duration=args.duration,
            seed=args.seed,
            legacy=args.legacy,
            write_timeout=args.write_timeout,
            sequence_numbers=args.sequence_numbers,
            replay=args.replay,
            speed=args.speed,
            ssl_context=context,
        )
    except OSError as e:
        log.error("cannot read the capture %s: %s", args.replay, e.strerror or e)
        return int(ExitCode.CONFIG_ERROR)
    try:
        asyncio.run(_serve(simulator, _traffic(args)))
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", args.host, port, e.strerror or e)
        return int(ExitCode.FAILURE)
    return int(ExitCode.OK)


def _traffic(args: argparse.Namespace) -> str:
    if args.replay is not None:
        return f"replay of {args.replay.name} at {args.speed:g}x"
    return f"{args.rate:g} events/s"


async def _serve(simulator: AmiSimulator, traffic: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with simulator:
        log.info(
            "AMI simulator listening on %s://%s:%d as user %r (%s, %s, write timeout %s s)",
            "amis" if simulator.tls else "ami",
            simulator.host,
            simulator.port,
            simulator.user,
            traffic,
            "Asterisk 1.4 shapes" if simulator.legacy else "Asterisk 22 shapes",
            simulator.write_timeout,
        )
        await stop.wait()
    log.info(
        "AMI simulator stopped: %d events sent, %d sessions dropped, longest write stall %.1f ms",
        simulator.events_sent,
        simulator.dropped_sessions,
        1000 * simulator.max_write_stall,
    )
