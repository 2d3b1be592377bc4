"""How fast the history stream reads back, and how much disk a message takes in it.

Approach
--------
A fresh exchange and its stream are filled with ``--events`` messages rendered by the
bridge itself from simulated traffic (the bodies and headers the bridge publishes),
through the bridge's publisher.  Then, in the same run:

* **baseline**: a plain aio-pika consumer of the stream, prefetch 1,000, acking in
  batches, doing nothing with the messages: the broker's and the client library's ceiling;
* **library**: :class:`bridge.consumer.StreamReplay` from the first offset to the present,
  every message parsed into its typed model;
* **tail**: ``ami-bridge tail --from-start --until-now --json > /dev/null`` as a child
  process, timed from its start to its exit (so it includes the interpreter's start, the
  connection and the probe for the present).

If the broker's data directory is readable (``--data-dir``, RabbitMQ's mnesia directory),
the stream's size on disk is divided by the message count: the figure for sizing
``stream_max_bytes``.  The exchange and the stream are deleted afterwards.  The last line
printed is one JSON object.

    python bench/replay.py [--url amqp://guest:guest@127.0.0.1:5672/] [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bridge.ami.protocol import AmiParser, Event, serialize
from bridge.ami.traffic import TrafficGenerator
from bridge.consumer import StreamReplay
from bridge.publish.amqp import AmqpPublisher
from bridge.publish.message import OutgoingMessage
from bridge.publish.records import decode, encode_event
from bridge.publish.routing import Router
from bridge.publish.topology import StreamRetention, stream_name, unrouted_name
from bridge.service.render import Renderer

SERVER = "pbx1"
RETENTION = StreamRetention(max_age=3600, max_bytes=2 * 1024**3)


def rendered_messages(count: int) -> list[OutgoingMessage]:
    """``count`` messages as the bridge renders simulated traffic."""
    traffic = TrafficGenerator(7)
    parser = AmiParser(expect_banner=False)
    renderer = Renderer(Router(SERVER))
    now = time.time()
    messages: list[OutgoingMessage] = []
    seq = 0
    while len(messages) < count:
        wire = b"".join(serialize(traffic.next_event()) for _ in range(1000))
        for item in parser.feed(wire):
            if isinstance(item, Event) and len(messages) < count:
                seq += 1
                record = decode(encode_event(1, seq, now, item))
                messages.append(renderer.render(record).message)
    return messages


async def fill(url: str, exchange: str, messages: list[OutgoingMessage]) -> None:
    publisher: AmqpPublisher[int] = AmqpPublisher(url, exchange=exchange, stream=RETENTION)
    await publisher.connect()
    producer = asyncio.create_task(_publish_all(publisher, messages))
    confirmed = 0
    async for batch in publisher.results():
        confirmed += len(batch)
        if confirmed == len(messages):
            break
    await producer
    await publisher.close()


async def _publish_all(publisher: AmqpPublisher[int], messages: list[OutgoingMessage]) -> None:
    for token, message in enumerate(messages):
        await publisher.publish(message, token)


async def baseline(url: str, stream: str, count: int) -> float:
    """Messages/s of a plain aio-pika stream consumer that does nothing with them."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.get_queue(stream, ensure=False)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal seen
            seen += 1
            if seen % 500 == 0 or seen == count:
                await message.ack(multiple=True)
            if seen == count:
                done.set()

        started = time.perf_counter()
        await queue.consume(on_message, arguments={"x-stream-offset": "first"})
        await done.wait()
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


async def library(url: str, exchange: str, count: int) -> float:
    started = time.perf_counter()
    read = 0
    async with StreamReplay(url, exchange=exchange, until_now=True) as replay:
        async for _ in replay:
            read += 1
    elapsed = time.perf_counter() - started
    if read != count:
        raise RuntimeError(f"the replay read {read} of {count} messages")
    return count / elapsed


def tail_rate(url: str, exchange: str, count: int) -> tuple[float, float]:
    """(messages/s, seconds) of ``tail --from-start --until-now --json > /dev/null``."""
    command = [sys.executable, "-m", "bridge", "tail", "--from-start", "--until-now", "--json"]
    command += ["--exchange", exchange, "--amqp", url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_BRIDGE_")}
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=True)
    elapsed = time.perf_counter() - started
    return count / elapsed, elapsed


def stream_disk_bytes(data_dir: Path, stream: str) -> int | None:
    """Bytes of the stream's segment and index files, if the broker's files are readable."""
    # RabbitMQ names the directory __<queue with . as _>_<timestamp>.
    prefix = "__" + stream.replace(".", "_") + "_"
    try:
        directories = [p for p in data_dir.glob("*/stream/*") if p.name.startswith(prefix)]
    except OSError:
        return None
    if len(directories) != 1:
        return None
    return sum(f.stat().st_size for f in directories[0].iterdir() if f.is_file())


async def run(args: argparse.Namespace) -> dict[str, float]:
    exchange = f"bench.replay.{uuid.uuid4().hex[:12]}"
    stream = stream_name(exchange)
    messages = rendered_messages(args.events)
    body_bytes = sum(len(m.body) for m in messages) / len(messages)
    try:
        await fill(args.url, exchange, messages)
        await asyncio.sleep(1.0)  # let the stream's writer settle its last chunk
        disk = stream_disk_bytes(Path(args.data_dir), stream)
        plain = await baseline(args.url, stream, args.events)
        typed = await library(args.url, exchange, args.events)
        rate, seconds = await asyncio.to_thread(tail_rate, args.url, exchange, args.events)
    finally:
        connection = await aio_pika.connect(args.url)
        channel = await connection.channel()
        for queue in (stream, unrouted_name(exchange)):
            await channel.queue_delete(queue)
        for name in (exchange, unrouted_name(exchange)):
            await channel.exchange_delete(name)
        await connection.close()
    print(f"{args.events:,} messages, body {body_bytes:.0f} bytes on average", flush=True)
    print(f"baseline, plain aio-pika stream consumer: {plain:,.0f} msgs/s", flush=True)
    print(f"StreamReplay, typed models: {typed:,.0f} msgs/s ({typed / plain:.2f}x)", flush=True)
    print(
        f"tail --from-start --until-now --json > /dev/null: {rate:,.0f} msgs/s "
        f"({seconds:.1f} s, process start included; {rate / plain:.2f}x the baseline)",
        flush=True,
    )
    figures: dict[str, float] = {
        "events": args.events,
        "body_bytes": round(body_bytes),
        "baseline_msgs_per_s": round(plain),
        "replay_msgs_per_s": round(typed),
        "tail_msgs_per_s": round(rate),
    }
    if disk is not None:
        per_message = disk / args.events
        per_day = per_message * 1000 * 86400 / 1024**3
        print(
            f"stream on disk: {disk / 1024**2:.1f} MiB, {per_message:.0f} bytes a message; "
            f"at 1,000 events/s a day takes {per_day:.1f} GiB",
            flush=True,
        )
        figures["disk_bytes_per_message"] = round(per_message)
    else:
        print(f"stream on disk: {args.data_dir} is not readable here", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--data-dir", default="/var/lib/rabbitmq/mnesia")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
