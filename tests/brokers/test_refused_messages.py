"""Messages the broker keeps refusing do not hold up the rest.

A third party's queue that rejects what it cannot hold nacks every Newchannel once it is
full: each is published again a bounded number of times, then retired and announced on
``{server}.bridge.refused``, while every other message flows at full rate.  A deleted
unrouted queue makes the broker return messages with ``NO_ROUTE``: the bridge declares
its topology again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiormq
import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.publish.topology import declare_topology
from tests.integration.contract import first_occurrences
from tests.integration.harness import SECRET, Consumer, bridge_settings, running_bridge, wait_for
from tests.support import AmqpNames, amqp_connection, queue_depth

SERVER = "pbx1"


def counter_total(app: object, name: str) -> float:
    registry = app.metrics.registry  # type: ignore[attr-defined]
    return sum(
        sample.value
        for family in registry.collect()
        if family.name == name
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def test_a_queue_that_rejects_does_not_slow_the_others(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge")
    rejecting = f"{amqp_names.exchange}.unrouted-rejecting"  # deleted with the test's names
    loop = asyncio.get_running_loop()
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=500, duration=8.0, seed=41) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
        amqp_connection(amqp_url) as connection,
    ):
        channel = await connection.channel()
        full = await channel.declare_queue(
            rejecting,
            auto_delete=True,
            arguments={"x-max-length": 50, "x-overflow": "reject-publish"},
        )
        await full.bind(amqp_names.exchange, "*.call.newchannel")
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            publish_refused_retries=2,
            publish_refused_backoff=0.2,
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            traffic_ends = loop.time() + 8.0
            deepest = 0
            while loop.time() < traffic_ends:
                deepest = max(deepest, app.pipelines[0].journal.depth)
                await asyncio.sleep(0.25)
            expected = pbx.events_sent + 2
            await consumer.wait_until(
                lambda b: len({x["id"] for x in b if x["event"] != "refused"}) >= expected,
                20,
                f"{expected} messages",
            )
            # Retries take 0.2 + 0.4 s: the journal is empty a moment after the traffic.
            await wait_for(lambda: app.pipelines[0].journal.depth == 0, 5, "an empty journal")
            refused_total = counter_total(app, "ami_bridge_publish_refused")
            await full.delete(if_unused=False, if_empty=False)
    # Never more than about a second of traffic waited in the journal.
    assert deepest < 1000, deepest
    refused = [b for b in first_occurrences(consumer.bodies) if b["event"] == "refused"]
    assert refused
    assert len(refused) == refused_total
    ids = {b["id"] for b in consumer.bodies}
    for status in refused:
        fields = status["fields"]
        assert fields["event"] == "Newchannel"
        assert fields["outcome"] == "nacked"
        assert fields["attempts"] == 3
        assert fields["message_id"] in ids  # the healthy queue got it
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.service.refusals"]
    assert 1 <= len(lines) <= 3, lines  # one line, then a summary every 10 s


async def test_a_deleted_unrouted_queue_is_declared_again(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge")
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=200, duration=10.0, seed=42) as pbx,
        amqp_connection(amqp_url) as connection,
    ):
        channel = await connection.channel()
        await declare_topology(channel, amqp_names.exchange)  # nothing bound: all unrouted
        settings = bridge_settings(
            {SERVER: pbx.port}, amqp=amqp_url, exchange=amqp_names.exchange, journal_dir=tmp_path
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            await wait_for(
                lambda: queue_depth(channel, amqp_names.unrouted), 10, "unrouted messages"
            )
            await channel.queue_delete(amqp_names.unrouted)
            await wait_for(
                lambda: counter_total(app, "ami_bridge_publish_returned") > 0, 10, "a return"
            )

            async def declared_again_and_filling() -> bool:
                probe = await connection.channel()  # a missing queue closes its channel
                try:
                    return await queue_depth(probe, amqp_names.unrouted) > 0
                except aiormq.exceptions.ChannelNotFoundEntity:
                    return False

            await wait_for(declared_again_and_filling, 10, "the queue declared again")
            await asyncio.sleep(10.5)
            await wait_for(lambda: app.pipelines[0].journal.depth == 0, 10, "an empty journal")
            assert counter_total(app, "ami_bridge_publish_refused") == 0
    lines = [r.getMessage() for r in caplog.records if "NO_ROUTE" in r.getMessage()]
    assert 1 <= len(lines) <= 3, lines
