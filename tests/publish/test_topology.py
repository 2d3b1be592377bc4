"""The unrouted queue's length cap, and an existing queue declared without it."""

from __future__ import annotations

import logging

import aio_pika
import pytest

from bridge.publish.topology import (
    DEFAULT_UNROUTED_MAX_LENGTH,
    declare_topology,
    unrouted_queue_arguments,
)
from bridge.settings import Settings
from tests.support import AmqpNames, amqp_connection, collect, queue_depth


async def _publish_unroutable(exchange: aio_pika.abc.AbstractExchange, count: int) -> None:
    for n in range(count):
        await exchange.publish(aio_pika.Message(str(n).encode()), routing_key="no.binding")


def test_the_default_cap_is_the_settings_default() -> None:
    assert Settings().unrouted_max_length == DEFAULT_UNROUTED_MAX_LENGTH == 100_000
    assert unrouted_queue_arguments("quorum", 0) == {"x-queue-type": "quorum"}
    assert unrouted_queue_arguments("classic", 5) == {"x-max-length": 5, "x-overflow": "drop-head"}


async def test_the_unrouted_queue_keeps_the_newest_messages_up_to_its_cap(
    amqp_url: str, amqp_names: AmqpNames
) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_topology(channel, amqp_names.exchange, unrouted_max_length=3)
        await _publish_unroutable(exchange, 5)
        assert await queue_depth(channel, amqp_names.unrouted) == 3
        queue = await channel.declare_queue(amqp_names.unrouted, passive=True)
        assert [m.body for m in await collect(queue, 3)] == [b"2", b"3", b"4"]


async def test_an_existing_uncapped_unrouted_queue_is_used_with_one_warning(
    amqp_url: str, amqp_names: AmqpNames, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.publish.topology")
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(amqp_names.unrouted, durable=True)  # no arguments
        exchange = await declare_topology(channel, amqp_names.exchange)
        # The channel was reopened and is usable; the queue is bound as the alternate's.
        await _publish_unroutable(exchange, 2)
        assert await queue_depth(channel, amqp_names.unrouted) == 2
        await declare_topology(channel, amqp_names.exchange)  # again, on a reconnect
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # one per declaration, never an exception
    assert amqp_names.unrouted in warnings[0]
    assert "PRECONDITION_FAILED" in warnings[0]
    assert "delete it while it is empty" in warnings[0]
    assert "max-length 100000, overflow drop-head" in warnings[0]
