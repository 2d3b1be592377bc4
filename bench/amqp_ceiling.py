"""How fast can one connection publish confirmed, persistent messages to RabbitMQ?

Measures, on the same ~600-byte JSON bodies and the same topology (topic exchange with its
alternate exchange, one durable queue bound with ``#``):

* ``aio_pika``: the plain loop, ``exchange.publish(Message(...), key)`` with publisher
  confirms, persistent delivery and 1,000 publishes in flight (a task each, a semaphore);
* ``publisher``: :class:`bridge.publish.amqp.AmqpPublisher` with the same window.

Each runs on the default asyncio loop and, when installed, on uvloop.  Every run uses
fresh exchange and queue names and deletes them afterwards.  The last line printed is one
JSON object with every figure (msgs/s, and the
client's CPU time per message in microseconds, which is steadier than the rate on a
busy machine because the broker competes for the same cores, and RabbitMQ's CPU time
per message when the broker runs on this machine).

    python bench/amqp_ceiling.py [--url amqp://guest:guest@127.0.0.1:5672/] [-n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple

import aio_pika
import orjson
from cpu_time import broker_pid, cpu_seconds

from bridge.publish.amqp import AmqpPublisher, Outcome
from bridge.publish.message import HeaderValue, OutgoingMessage
from bridge.publish.topology import declare_topology, unrouted_name

ROUTING_KEY = "pbx1.call.newchannel"


class Figures(NamedTuple):
    rate: float  # messages per second, wall clock
    cpu_us: float  # this process's CPU time per message, microseconds
    #: The broker's CPU time per message, microseconds (None: not a local broker).
    broker_cpu_us: float | None = None


#: The headers of the plain loop's messages unless told otherwise (``seq`` is set per message).
SMALL_HEADERS: dict[str, HeaderValue] = {"event": "Newchannel", "server": "pbx1"}


class Load(NamedTuple):
    """What a ceiling run publishes: ``messages`` messages of ``body`` and ``headers``
    (and each its own ``seq``), ``window`` of them in flight."""

    messages: int
    window: int
    body: bytes
    headers: dict[str, HeaderValue] = SMALL_HEADERS


class _Stopwatch:
    """Wall and CPU time (this process's, the broker's) from construction to :meth:`figures`."""

    def __init__(self, url: str) -> None:
        self._broker = broker_pid(url)
        self._broker_cpu = None if self._broker is None else cpu_seconds(self._broker)
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def figures(self, count: int) -> Figures:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        broker_us = None
        if self._broker is not None and self._broker_cpu is not None:
            now = cpu_seconds(self._broker)
            if now is not None:
                broker_us = (now - self._broker_cpu) * 1e6 / count
        return Figures(count / wall, cpu * 1e6 / count, broker_us)


def _body() -> bytes:
    """A Newchannel event as the bridge would publish it: about 600 bytes of JSON."""
    return orjson.dumps(
        {
            "schema": 1,
            "server": "pbx1",
            "event": "Newchannel",
            "privilege": ["call", "all"],
            "epoch": 1760000000,
            "seq": 123456,
            "received_at": "2025-10-09T08:53:20.123456+00:00",
            "fields": {
                "Channel": "PJSIP/100-000001a4",
                "ChannelState": "0",
                "ChannelStateDesc": "Down",
                "CallerIDNum": "100",
                "CallerIDName": "Reception Desk",
                "ConnectedLineNum": "<unknown>",
                "ConnectedLineName": "<unknown>",
                "Language": "en",
                "AccountCode": "",
                "Context": "from-internal",
                "Exten": "4155550123",
                "Priority": "1",
                "Uniqueid": "1760000000.420",
                "Linkedid": "1760000000.420",
                "SystemName": "pbx1.example.net",
                "Tenantid": "tenant-0042",
                "CallerIDNumRaw": "+14155550100",
            },
        }
    )


async def _with_topology(url: str, run: Callable[[str], Awaitable[Figures]]) -> Figures:
    """Declare a fresh topology and bound queue, call ``run(exchange)``, then delete it all."""
    exchange = f"bench.{uuid.uuid4().hex[:12]}"
    queue = f"{exchange}.queue"
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, exchange)
        declared = await channel.declare_queue(queue, durable=True)
        await declared.bind(exchange, "#")
        figures = await run(exchange)
        await channel.queue_delete(queue)
        await channel.queue_delete(unrouted_name(exchange))
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(unrouted_name(exchange))
        return figures
    finally:
        await connection.close()


async def plain_aio_pika(url: str, load: Load) -> Figures:
    """The baseline: one task per ``Exchange.publish``, at most ``load.window`` in flight;
    every message carries ``load.headers`` and its own ``seq``."""
    count, window, body, headers = load

    async def run(exchange_name: str) -> Figures:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(exchange_name, ensure=False)
            slots = asyncio.Semaphore(window)
            table: dict[str, Any] = dict(headers)  # aio-pika's own header value types
            tasks: set[asyncio.Task[None]] = set()

            async def one(i: int) -> None:
                try:
                    await exchange.publish(
                        aio_pika.Message(
                            body,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            content_type="application/json",
                            message_id=f"m{i}",
                            type="Newchannel",
                            app_id="ami-bridge",
                            timestamp=time.time(),
                            headers={**table, "seq": i},
                        ),
                        ROUTING_KEY,
                        mandatory=True,
                    )
                finally:
                    slots.release()

            watch = _Stopwatch(url)
            for i in range(count):
                await slots.acquire()
                task = asyncio.create_task(one(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
            return watch.figures(count)
        finally:
            await connection.close()

    return await _with_topology(url, run)


async def bridge_publisher(url: str, load: Load) -> Figures:
    """``AmqpPublisher``: one task publishes, another takes the results; every message
    carries ``load.headers`` and its own ``seq``."""
    count, window, body, headers = load

    async def run(exchange: str) -> Figures:
        publisher: AmqpPublisher[int] = AmqpPublisher(url, exchange=exchange, window=window)
        await publisher.connect()

        async def take_results() -> int:
            confirmed = received = 0
            async with contextlib.aclosing(publisher.results()) as batches:
                async for batch in batches:
                    received += len(batch)
                    confirmed += sum(r.outcome is Outcome.CONFIRMED for r in batch)
                    if received >= count:
                        break
            return confirmed

        try:
            watch = _Stopwatch(url)
            taker = asyncio.create_task(take_results())
            for i in range(count):
                message = OutgoingMessage(
                    ROUTING_KEY,
                    body,
                    f"m{i}",
                    "Newchannel",
                    int(time.time()),
                    {**headers, "seq": i},
                )
                await publisher.publish(message, i)
            confirmed = await taker
            figures = watch.figures(count)
        finally:
            await publisher.close()
        if confirmed != count:
            raise RuntimeError(f"only {confirmed} of {count} messages were confirmed")
        return figures

    return await _with_topology(url, run)


def _run_loop(coro: Coroutine[Any, Any, Figures], use_uvloop: bool) -> Figures:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("-n", "--count", type=int, default=20_000, help="messages per run")
    parser.add_argument("--window", type=int, default=1000, help="publishes in flight")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop runs")
    args = parser.parse_args()

    body = _body()
    loops = ["asyncio"] + (["uvloop"] if not args.no_uvloop and _uvloop_available() else [])
    figures: dict[str, Any] = {"count": args.count, "window": args.window, "body_bytes": len(body)}
    for loop_name in loops:
        for name, bench in (("aio_pika", plain_aio_pika), ("publisher", bridge_publisher)):
            rate, cpu_us, broker_us = _run_loop(
                bench(args.url, Load(args.count, args.window, body)), loop_name == "uvloop"
            )
            figures[f"{name}_{loop_name}"] = round(rate)
            figures[f"{name}_{loop_name}_cpu_us"] = round(cpu_us, 1)
            broker = "n/a" if broker_us is None else f"{broker_us:.1f}"
            figures[f"{name}_{loop_name}_broker_cpu_us"] = broker_us and round(broker_us, 1)
            print(
                f"{name:>10} on {loop_name:<8} {rate:>9,.0f} msgs/s  {cpu_us:6.1f} us CPU/msg"
                f"  (RabbitMQ {broker} us/msg)",
                flush=True,
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
