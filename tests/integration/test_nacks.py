"""A broker that nacks: the refused messages stay journalled, are counted, and are
published again until the broker takes them (within ``publish_refused_retries``).  A
message published again can arrive after later ones that were confirmed meanwhile;
``seq`` restores the order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aio_pika.abc import AbstractQueue

from bridge.ami.simulator import AmiSimulator
from bridge.publish.topology import declare_topology
from tests.integration.contract import Body, check_delivery, first_occurrences
from tests.integration.harness import SECRET, bridge_settings, running_bridge, wait_for
from tests.support import AmqpNames, amqp_connection

SERVER = "pbx1"
EVENTS = 20


async def drain(queue: AbstractQueue, bodies: list[Body], stop: asyncio.Event) -> None:
    """Take one message every 50 ms: slower than the bridge publishes, so the queue fills."""
    while not stop.is_set():
        message = await queue.get(fail=False)
        if message is not None:
            bodies.append(check_delivery(message))
            await message.ack()
        await asyncio.sleep(0.05)


async def test_nacked_messages_are_counted_and_published_again(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    bodies: list[Body] = []
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=0) as pbx,
        amqp_connection(amqp_url) as connection,
    ):
        channel = await connection.channel()
        await declare_topology(channel, amqp_names.exchange)
        # A queue that refuses what it cannot hold: the broker nacks those publishes.
        queue = await channel.declare_queue(
            amqp_names.queue,
            durable=True,
            arguments={"x-max-length": 3, "x-overflow": "reject-publish"},
        )
        await queue.bind(amqp_names.exchange, "#")
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            # Enough retries that every message gets in (test_refusals retires them).
            publish_refused_retries=100,
            publish_refused_backoff=0.1,
        )
        stop = asyncio.Event()
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            for n in range(EVENTS):
                pbx.inject(
                    [
                        ("Event", "UserEvent"),
                        ("Privilege", "user,all"),
                        ("UserEvent", "Fill"),
                        ("N", str(n)),
                    ]
                )
            draining = asyncio.create_task(drain(queue, bodies, stop))
            expected = EVENTS + 2  # + FullyBooted + connected
            await wait_for(
                lambda: len(first_occurrences(bodies)) >= expected, 60, f"{expected} messages"
            )
            await wait_for(lambda: app.pipelines[0].journal.depth == 0, 10, "an empty journal")
            stop.set()
            await draining
            nacked = sum(
                sample.value
                for family in app.metrics.registry.collect()
                if family.name == "ami_bridge_publish_nacked"
                for sample in family.samples
                if sample.name.endswith("_total")
            )
    assert nacked > 0
    unique = sorted(first_occurrences(bodies), key=lambda b: b["seq"])
    assert [b["seq"] for b in unique] == list(range(1, expected + 1))
    assert all(b["kind"] != "invalid" for b in unique)
    assert [b["extra"]["N"] for b in unique if b["event"] == "UserEvent"] == [
        str(n) for n in range(EVENTS)
    ]
