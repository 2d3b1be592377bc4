"""Consumer against the real broker: typed events from a running bridge, retries, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import aiormq
import pytest
import yarl

from bridge.ami.shapes import CAUSES
from bridge.ami.simulator import AmiSimulator
from bridge.consumer import (
    Consumer,
    ConsumerError,
    EventMessage,
    Message,
    StatusMessage,
    parse_message,
)
from bridge.events.generated import Hangup, Newchannel
from bridge.events.status import ConnectedFields
from tests.consumer.bodies import HANGUP, NEWCHANNEL, event_body
from tests.consumer.conftest import ConsumerNames
from tests.integration.harness import SECRET, bridge_settings, free_port, running_bridge, wait_for
from tests.support import amqp_connection, queue_depth
from tests.support.tcp_proxy import TcpProxy


async def publish(url: str, exchange: str, *bodies: bytes) -> None:
    """Publish message bodies as the bridge does: routed by event, ``message_id`` = id."""
    async with amqp_connection(url) as connection:
        channel = await connection.channel()
        target = await channel.get_exchange(exchange)
        for body in bodies:
            try:
                message = parse_message(body)
                key, message_id = f"{message.server}.call.{message.event.lower()}", message.id
            except ValueError:
                key, message_id = "pbx1.call.garbage", "garbage"
            await target.publish(
                aio_pika.Message(body, message_id=message_id), routing_key=key, mandatory=True
            )


async def depth(url: str, queue: str) -> int:
    async with amqp_connection(url) as connection:
        return await queue_depth(await connection.channel(), queue)


async def dead_letter_bodies(url: str, queue: str, expected: int) -> list[bytes]:
    """The bodies in the dead-letter ``queue`` once ``expected`` are there and no more come."""
    await wait_for(lambda: _has(url, queue, expected), 10.0, f"{expected} dead letters")
    await asyncio.sleep(0.5)  # a second copy would arrive by now
    async with amqp_connection(url) as connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        bodies = []
        while (incoming := await declared.get(fail=False)) is not None:
            bodies.append(incoming.body)
            await incoming.ack()
    return bodies


async def dead_letters(url: str, queue: str, expected: int) -> list[Message]:
    """:func:`dead_letter_bodies`, parsed."""
    return [parse_message(body) for body in await dead_letter_bodies(url, queue, expected)]


async def _has(url: str, queue: str, count: int) -> bool:
    return await depth(url, queue) >= count


@asynccontextmanager
async def consuming(task: Awaitable[None]) -> AsyncIterator[None]:
    """Run ``task`` in the background for the block; cancel it after."""
    running = asyncio.ensure_future(task)
    try:
        yield
        if running.done():
            running.result()  # surface the error that ended it
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def failing_on(event: str, calls: list[Message]) -> Callable[[Message], Awaitable[None]]:
    async def handle(message: Message) -> None:
        calls.append(message)
        if message.event == event:
            raise RuntimeError("billing database is down")

    return handle


# -- from a running bridge ----------------------------------------------------------


async def test_typed_events_from_a_running_bridge_are_handled_and_acked(
    amqp_url: str, names: ConsumerNames, tmp_path: Path
) -> None:
    received: list[Message] = []

    async def handle(message: Message) -> None:
        received.append(message)

    def seen(event: str) -> bool:
        return any(message.event == event for message in received)

    consumer = Consumer(
        amqp_url,
        exchange=names.exchange,
        patterns=["pbx9.#"],
        queue=names.queue,
        dead_letter_queue=names.dead_letter_queue,
        track_gaps=True,
    )
    async with AmiSimulator(port=0, secret=SECRET, rate=400, seed=5) as simulator, consumer:
        settings = bridge_settings(
            {"pbx9": simulator.port}, amqp=amqp_url, exchange=names.exchange, journal_dir=tmp_path
        )
        async with consuming(consumer.run(handle)):
            async with running_bridge(settings):
                await wait_for(lambda: seen("Hangup") and seen("Newchannel"), 15.0, "a hangup")

            async def settled() -> bool:
                count = len(received)
                await asyncio.sleep(0.3)
                return count == len(received) == consumer.stats.acked and not await depth(
                    amqp_url, names.queue
                )

            # The bridge has stopped: everything it published is handled and acked.
            await wait_for(settled, 10.0, "the queue to drain")
    assert await depth(amqp_url, names.queue) == 0

    first = received[0]
    assert isinstance(first, StatusMessage)
    assert isinstance(first.fields, ConnectedFields)
    hangup = next(m for m in received if m.event == "Hangup")
    assert isinstance(hangup, EventMessage)
    assert isinstance(hangup.fields, Hangup)
    assert type(hangup.fields.Cause) is int
    assert CAUSES[hangup.fields.Cause] == hangup.fields.Cause_txt
    newchannel = next(m for m in received if m.event == "Newchannel")
    assert isinstance(newchannel, EventMessage)
    assert isinstance(newchannel.fields, Newchannel)
    assert newchannel.fields.Channel is not None
    assert newchannel.fields.Channel.startswith("PJSIP/")
    assert newchannel.fields.Uniqueid == newchannel.fields.Linkedid  # the caller's leg
    # pbx9.# covers the whole server: every seq of the epoch arrived once, in order.
    assert {m.epoch for m in received} == {first.epoch}
    assert [m.seq for m in received] == list(range(1, len(received) + 1))
    assert (consumer.tracker.sequence_gaps, consumer.tracker.duplicates) == (0, 0)
    assert (consumer.stats.requeued, consumer.stats.dead_lettered) == (0, 0)


# -- retries and dead letters ---------------------------------------------------------


async def test_a_quorum_queue_message_is_dead_lettered_once_after_max_attempts(
    amqp_url: str, names: ConsumerNames, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: defaultdict[str, list[int]] = defaultdict(list)
    consumer = Consumer(
        amqp_url,
        exchange=names.exchange,
        patterns=["pbx1.#"],
        queue=names.queue,
        max_attempts=3,
        dead_letter_queue=names.dead_letter_queue,
    )

    async def consume() -> None:
        async for delivery in consumer:
            attempts[delivery.message.id].append(delivery.attempt)
            if delivery.message.event == "Hangup":
                await delivery.fail(RuntimeError("billing database is down"))
            else:
                await delivery.ack()

    caplog.set_level(logging.WARNING, logger="bridge.consumer")
    async with consumer, consuming(consume()):
        await publish(
            amqp_url, names.exchange, event_body(HANGUP, seq=1), event_body(NEWCHANNEL, seq=2)
        )
        dead = await dead_letters(amqp_url, names.dead_letter_queue, 1)

    # The attempt numbers are the quorum queue's own delivery count.
    assert dict(attempts) == {"pbx1:1:1": [1, 2, 3], "pbx1:1:2": [1]}
    assert [message.id for message in dead] == ["pbx1:1:1"]
    assert (consumer.stats.requeued, consumer.stats.dead_lettered) == (2, 1)
    assert await depth(amqp_url, names.queue) == 0
    failures = [r.getMessage() for r in caplog.records if "handler failed" in r.getMessage()]
    assert failures[0] == (
        "handler failed on pbx1:1:1 (pbx1 Hangup) at attempt 1 of 3: "
        "RuntimeError: billing database is down; requeued"
    )
    assert failures[-1] == (
        "handler failed on pbx1:1:1 (pbx1 Hangup) at attempt 3 of 3: RuntimeError: "
        f"billing database is down; dead-lettered to '{names.dead_letter_exchange}'"
    )


async def test_the_quorum_queue_itself_dead_letters_a_message_requeued_max_attempts_times(
    amqp_url: str, names: ConsumerNames
) -> None:
    consumer = Consumer(
        amqp_url,
        exchange=names.exchange,
        patterns=["#"],
        queue=names.queue,
        max_attempts=3,
        dead_letter_queue=names.dead_letter_queue,
    )
    async with consumer:
        pass  # declares the durable queue and its dead-letter pair
    deliveries = 0

    async def requeue_always(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal deliveries
        deliveries += 1
        await message.nack(requeue=True)

    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(names.queue, passive=True)
        await queue.consume(requeue_always)
        await publish(amqp_url, names.exchange, event_body(HANGUP))
        dead = await dead_letters(amqp_url, names.dead_letter_queue, 1)

    assert deliveries == 3
    assert [message.id for message in dead] == ["pbx1:1:1"]


async def test_an_exclusive_queue_counts_attempts_itself_and_dead_letters_once(
    amqp_url: str, names: ConsumerNames
) -> None:
    calls: list[Message] = []
    consumer = Consumer(
        amqp_url,
        exchange=names.exchange,
        patterns=["pbx1.call.*"],
        max_attempts=4,
        dead_letter_queue=names.dead_letter_queue,
    )

    async with consumer, consuming(consumer.run(failing_on("Hangup", calls))):
        queue_name = consumer.queue_name
        await publish(
            amqp_url, names.exchange, event_body(HANGUP, seq=1), event_body(NEWCHANNEL, seq=2)
        )
        dead = await dead_letters(amqp_url, names.dead_letter_queue, 1)

    assert [m.id for m in calls].count("pbx1:1:1") == 4
    assert [m.id for m in calls].count("pbx1:1:2") == 1
    assert [message.id for message in dead] == ["pbx1:1:1"]
    stats = consumer.stats
    assert (stats.acked, stats.requeued, stats.dead_lettered) == (1, 3, 1)
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await depth(amqp_url, queue_name)  # the exclusive queue left with its consumer


async def test_duplicates_are_skipped_and_unreadable_bodies_dead_lettered_at_once(
    amqp_url: str, names: ConsumerNames
) -> None:
    calls: list[Message] = []
    consumer = Consumer(
        amqp_url,
        exchange=names.exchange,
        patterns=["pbx1.#"],
        dead_letter_queue=names.dead_letter_queue,
    )

    async with consumer, consuming(consumer.run(failing_on("none", calls))):
        hangup = event_body(HANGUP, seq=1)
        await publish(
            amqp_url, names.exchange, hangup, hangup, b"{oops", event_body(NEWCHANNEL, seq=2)
        )
        await wait_for(lambda: len(calls) == 2, 10.0, "two handled messages")
        dead_bodies = await dead_letter_bodies(amqp_url, names.dead_letter_queue, 1)

    assert [m.id for m in calls] == ["pbx1:1:1", "pbx1:1:2"]
    assert consumer.tracker.duplicates == 1
    assert consumer.stats.unreadable == 1
    assert dead_bodies == [b"{oops"]


# -- errors -----------------------------------------------------------------------------


async def test_an_unreachable_broker_is_a_consumer_error_without_the_password() -> None:
    consumer = Consumer(f"amqp://guest:s3cret@127.0.0.1:{free_port()}/", patterns=["#"])

    with pytest.raises(ConsumerError, match="cannot connect to the broker") as caught:
        await consumer.start()

    assert "s3cret" not in str(caught.value)
    assert "guest:***@" in str(caught.value)


async def test_a_missing_exchange_is_an_error_when_not_declaring_it(
    amqp_url: str, names: ConsumerNames
) -> None:
    consumer = Consumer(
        amqp_url,
        exchange=names.exchange,
        patterns=["#"],
        declare_exchange=False,
        dead_letters=False,
    )

    with pytest.raises(ConsumerError, match=f"exchange '{names.exchange}' does not exist"):
        await consumer.start()


async def test_a_queue_declared_with_other_settings_is_a_consumer_error(
    amqp_url: str, names: ConsumerNames
) -> None:
    async with amqp_connection(amqp_url) as connection:
        await (await connection.channel()).declare_queue(names.queue, durable=True)  # classic
    consumer = Consumer(amqp_url, exchange=names.exchange, patterns=["#"], queue=names.queue)

    with pytest.raises(ConsumerError, match="already exists with other settings"):
        await consumer.start()


@pytest.mark.parametrize("patterns", [[], "pbx1.#"])
def test_patterns_must_be_a_non_empty_list(patterns: list[str]) -> None:
    with pytest.raises(ValueError, match="patterns"):
        Consumer("amqp://127.0.0.1/", patterns=patterns)


async def test_iterating_before_start_says_how_to_start() -> None:
    consumer = Consumer("amqp://127.0.0.1/", patterns=["#"])

    with pytest.raises(RuntimeError, match="async with Consumer"):
        await anext(aiter(consumer))


# -- outages ----------------------------------------------------------------------------


async def test_the_consumer_resumes_after_the_broker_connection_is_lost(
    amqp_url: str, names: ConsumerNames
) -> None:
    upstream = yarl.URL(amqp_url)
    calls: list[Message] = []
    async with TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5672) as proxy:
        through_proxy = upstream.with_port(proxy.port).update_query(reconnect_interval="0.2")
        consumer = Consumer(
            str(through_proxy), exchange=names.exchange, patterns=["pbx1.#"], queue=names.queue
        )
        async with consumer, consuming(consumer.run(failing_on("none", calls))):
            await publish(amqp_url, names.exchange, event_body(HANGUP, seq=1))
            await wait_for(lambda: len(calls) == 1, 10.0, "the first message")

            await proxy.cut()
            await publish(amqp_url, names.exchange, event_body(NEWCHANNEL, seq=2))
            await asyncio.sleep(0.5)
            proxy.heal()

            await wait_for(lambda: len(calls) == 2, 15.0, "the message sent during the outage")
            assert proxy.accepted >= 2  # it did reconnect

    assert [m.id for m in calls] == ["pbx1:1:1", "pbx1:1:2"]
    assert await depth(amqp_url, names.queue) == 0
