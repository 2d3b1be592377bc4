"""``ami-bridge demo``: the simulator, the bridge and a live view of the bus, in one process.

It starts the built-in AMI simulator on a free loopback port and runs the bridge against
it and the local RabbitMQ (journal in a temporary directory).  The live view binds its
exclusive queue to the demo's own server (``demo.#``) before the bridge starts, so it
shows the bridge's first status messages (``connected``, ``resync``) and nothing of other
traffic on a shared exchange; each message is one line, as ``ami-bridge tail`` prints
it, with a count per second.  Ctrl+C stops it all.

Mistakes are told in one line before anything starts: a busy probe port, a broker that
does not answer (with how to start one), a broker that refuses the login.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from bridge.ami.simulator import AmiSimulator
from bridge.cli.exit_codes import ExitCode
from bridge.cli.run import (
    StartupError,
    configure_logging,
    discard_app,
    new_event_loop,
    start_app,
)
from bridge.consumer import Consumer, ConsumerError, format_line
from bridge.publish.broker import mask_url
from bridge.settings import DEFAULT_AMQP_URL, DEFAULT_EXCHANGE, Settings, load_settings

SERVER_ID = "demo"
_SECRET = "demo-secret"
_START_RABBITMQ = (
    "start it (sudo systemctl start rabbitmq-server, or "
    "docker run -d -p 5672:5672 rabbitmq:3) or give --amqp URL"
)


class DemoError(Exception):
    """The demo cannot start; one line for the user, and the exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=20.0, help="simulated events/s (20)")
    parser.add_argument("--legacy", action="store_true", help="Asterisk 1.4 event shapes")
    parser.add_argument("--amqp", default=DEFAULT_AMQP_URL, help="broker URL (local RabbitMQ)")
    parser.add_argument("--exchange", default=DEFAULT_EXCHANGE, help="exchange (ami.events)")
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    parser.add_argument("--metrics-port", type=int, default=9108, help="probes/metrics (9108)")


def demo_settings(args: argparse.Namespace, ami_port: int, journal: Path) -> Settings:
    """The bridge's settings for the demo.

    Raises:
        DemoError: a flag is wrong (exit code 2).
    """
    try:
        return load_settings(
            {
                "ami": [f"{SERVER_ID}=ami://bridge@127.0.0.1:{ami_port}"],
                "ami_secret": _SECRET,
                "amqp": args.amqp,
                "exchange": args.exchange,
                "journal_dir": journal,
                "metrics_port": args.metrics_port,
            }
        )
    except ValidationError as exc:
        why = exc.errors(include_input=False)[0]["msg"].removeprefix("Value error, ")
        raise DemoError(why, ExitCode.CONFIG_ERROR) from None


def check_reachable(url: str) -> None:
    """A TCP connect to the broker, so an absent RabbitMQ is one clear line.

    Raises:
        DemoError: nothing answers there (exit code 1).
    """
    parts = urlsplit(url)
    default_port = 5671 if parts.scheme == "amqps" else 5672
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        socket.create_connection(address, timeout=3).close()
    except OSError as exc:
        why = exc.strerror or "no answer"
        raise DemoError(
            f"RabbitMQ is not reachable at {mask_url(url)} ({why}): {_START_RABBITMQ}",
            ExitCode.FAILURE,
        ) from None


async def _watch(consumer: Consumer) -> None:
    """Print every message of the demo's server as one line, and a count per second."""
    colour = sys.stdout.isatty()
    count, total, second = 0, 0, time.monotonic()
    async for delivery in consumer:
        print(format_line(delivery.message, colour=colour), flush=True)
        await delivery.ack()
        count += 1
        total += 1
        if time.monotonic() - second >= 1.0:
            print(f"-- {count} messages in the last second, {total} in all", flush=True)
            count, second = 0, time.monotonic()


async def _bound_view(settings: Settings) -> Consumer:
    """The live view's queue, bound to the demo's server.

    Raises:
        DemoError: the broker does not answer (exit 1) or refuses the demo (exit 2).
    """
    url = settings.amqp_url_with_password()
    check_reachable(url)
    consumer = Consumer(
        url, exchange=settings.exchange, patterns=[f"{SERVER_ID}.#"], dead_letters=False
    )
    try:
        await consumer.start()
    except ConsumerError as exc:  # a refused login, virtual host or permission
        raise DemoError(str(exc), ExitCode.CONFIG_ERROR) from None
    return consumer


async def _demo(args: argparse.Namespace, journal: Path) -> int:
    async with AmiSimulator(
        port=0, secret=_SECRET, rate=args.rate, legacy=args.legacy, seed=1
    ) as simulator:
        settings = demo_settings(args, simulator.port, journal)
        try:
            app = await start_app(settings)  # binds the probe port: a busy one stops here
        except StartupError as exc:
            raise DemoError(str(exc), ExitCode.CONFIG_ERROR) from None
        try:
            consumer = await _bound_view(settings)
        except DemoError:
            await discard_app(app)
            raise
        print(
            f"demo: simulator on 127.0.0.1:{simulator.port} at {args.rate:g} events/s, "
            f"exchange {args.exchange!r}, showing {SERVER_ID}.#; Ctrl+C stops",
            file=sys.stderr,
        )
        bridge = asyncio.create_task(app.run())
        watcher = asyncio.create_task(_watch(consumer))
        try:
            done, _ = await asyncio.wait(
                [bridge, watcher], timeout=args.duration, return_when=asyncio.FIRST_COMPLETED
            )
            if watcher in done:
                watcher.result()  # surface the error that ended it
        except ConsumerError as exc:
            print(f"demo: the live view stopped: {exc}", file=sys.stderr)
        finally:
            app.request_stop()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
            await consumer.close()
            code = await bridge
        return int(code)


def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    with (
        tempfile.TemporaryDirectory(prefix="ami-bridge-demo-") as journal,
        asyncio.Runner(loop_factory=new_event_loop) as runner,
    ):
        try:
            return runner.run(_demo(args, Path(journal)))
        except DemoError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return int(exc.code)
        except KeyboardInterrupt:
            return int(ExitCode.OK)
