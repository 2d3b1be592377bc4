"""``ami-bridge demo``: the simulator, the bridge and a live view of the bus, in one process.

It starts the built-in AMI simulator on a free loopback port, runs the bridge against it
and the local RabbitMQ (journal in a temporary directory), binds an exclusive queue to
everything on the exchange, and prints each routing key as it arrives plus a count per
second.  Ctrl+C stops it all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import aio_pika

from bridge.ami.simulator import AmiSimulator
from bridge.cli.exit_codes import ExitCode
from bridge.cli.run import configure_logging, new_event_loop
from bridge.settings import DEFAULT_AMQP_URL, DEFAULT_EXCHANGE, load_settings

_SECRET = "demo-secret"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=20.0, help="simulated events/s (20)")
    parser.add_argument("--legacy", action="store_true", help="Asterisk 1.4 event shapes")
    parser.add_argument("--amqp", default=DEFAULT_AMQP_URL, help="broker URL (local RabbitMQ)")
    parser.add_argument("--exchange", default=DEFAULT_EXCHANGE, help="exchange (ami.events)")
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    parser.add_argument("--metrics-port", type=int, default=9108, help="probes/metrics (9108)")


async def _watch(url: str, exchange: str) -> None:
    """Print every routing key on the exchange, and a count per second."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        count, total, second = 0, 0, time.monotonic()
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                print(message.routing_key, flush=True)
                count += 1
                total += 1
                if time.monotonic() - second >= 1.0:
                    print(f"-- {count} messages in the last second, {total} in all", flush=True)
                    count, second = 0, time.monotonic()


async def _demo(args: argparse.Namespace, journal: Path) -> int:
    from bridge.publish.broker import BrokerError
    from bridge.service.app import BridgeApp

    async with AmiSimulator(
        port=0, secret=_SECRET, rate=args.rate, legacy=args.legacy, seed=1
    ) as simulator:
        settings = load_settings(
            {
                "ami": [f"demo=ami://{simulator.user}@127.0.0.1:{simulator.port}"],
                "ami_secret": _SECRET,
                "amqp": args.amqp,
                "exchange": args.exchange,
                "journal_dir": journal,
                "metrics_port": args.metrics_port,
            }
        )
        app = BridgeApp(settings)
        bridge = asyncio.create_task(app.run())
        # The watcher binds to the exchange the bridge declares once the broker is up.
        ready = asyncio.create_task(app.broker_ready.wait())
        await asyncio.wait([bridge, ready], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        watcher = asyncio.create_task(_watch(args.amqp, args.exchange))
        print(
            f"demo: simulator on 127.0.0.1:{simulator.port} at {args.rate:g} events/s, "
            f"exchange {args.exchange!r}; Ctrl+C stops",
            file=sys.stderr,
        )
        try:
            done, _ = await asyncio.wait(
                [bridge, watcher], timeout=args.duration, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                task.result()  # surface the error that ended it
        except (BrokerError, OSError, aio_pika.exceptions.AMQPException) as exc:
            print(f"demo: cannot use the broker at {args.amqp}: {exc}", file=sys.stderr)
            return int(ExitCode.FAILURE)
        finally:
            app.request_stop()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
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
        except KeyboardInterrupt:
            return int(ExitCode.OK)
