"""The history stream on the real broker: its declaration, replays, resuming, coexistence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import aiormq
import pytest

from bridge.consumer import (
    Consumer,
    ConsumerError,
    EventMessage,
    Replayed,
    StreamReplay,
    TopicFilter,
    topic_matches,
)
from bridge.events.envelope import message_id
from bridge.publish.amqp import AmqpPublisher, Outcome
from bridge.publish.message import OutgoingMessage
from bridge.publish.topology import StreamRetention, TopologyConflict, declare_stream
from bridge.settings import load_settings
from tests.consumer.bodies import HANGUP, NEWCHANNEL, RECEIVED_AT, event_body
from tests.consumer.conftest import ConsumerNames
from tests.support import amqp_connection

RETENTION = StreamRetention(max_age=3600, max_bytes=50_000_000)


def message(server: str, seq: int) -> OutgoingMessage:
    """An event of ``server``: odd ``seq`` a Newchannel, even a Hangup."""
    text, event = (NEWCHANNEL, "Newchannel") if seq % 2 else (HANGUP, "Hangup")
    return OutgoingMessage(
        routing_key=f"{server}.call.{event.lower()}",
        body=event_body(text, server=server, epoch=1, seq=seq),
        message_id=message_id(server, 1, seq),
        event=event,
        timestamp=1795681364,
    )


async def publish(
    url: str,
    exchange: str,
    messages: Sequence[OutgoingMessage],
    stream: StreamRetention | None = RETENTION,
) -> None:
    """Publish ``messages`` with the bridge's publisher (which declares the stream)."""
    publisher: AmqpPublisher[int] = AmqpPublisher(url, exchange=exchange, stream=stream)
    await publisher.connect()
    try:
        for token, outgoing in enumerate(messages):
            await publisher.publish(outgoing, token)
        confirmed = 0
        async with asyncio.timeout(20):
            async for batch in publisher.results():
                assert {result.outcome for result in batch} == {Outcome.CONFIRMED}
                confirmed += len(batch)
                if confirmed == len(messages):
                    break
    finally:
        await publisher.close()


async def replay_all(url: str, exchange: str, **options: object) -> list[Replayed]:
    async with asyncio.timeout(30), StreamReplay(url, exchange=exchange, **options) as replay:  # type: ignore[arg-type]
        return [item async for item in replay]


def ids(items: Sequence[Replayed]) -> list[str]:
    return [item.message.id for item in items]


# -- topic patterns --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "pbx1.call.hangup", True),
        ("pbx1.#", "pbx1.call.hangup", True),
        ("pbx1.#", "pbx1", True),
        ("pbx1.#", "pbx2.call.hangup", False),
        ("*.call.*", "pbx1.call.hangup", True),
        ("*.call.*", "pbx1.call", False),
        ("*.call", "pbx1.call.hangup", False),
        ("#.hangup", "pbx1.call.hangup", True),
        ("pbx1.#.hangup", "pbx1.hangup", True),
        ("pbx1.*.#", "pbx1", False),
        ("pbx1.call.hangup", "pbx1.call.Hangup", False),
        ("#.#", "", True),
        ("*", "", True),  # one empty word, as a topic exchange sees it
    ],
)
def test_topic_patterns_match_as_a_topic_exchange_does(
    pattern: str, key: str, expected: bool
) -> None:
    assert topic_matches(pattern, key) is expected


def test_a_topic_filter_matches_any_of_its_patterns() -> None:
    keep = TopicFilter(["pbx2.#", "*.call.hangup"])
    assert keep("pbx2.system.peerstatus")
    assert keep("pbx1.call.hangup")
    assert not keep("pbx1.call.newchannel")
    with pytest.raises(ValueError):
        TopicFilter([])


def test_a_replay_refuses_a_naive_time_and_a_negative_offset() -> None:
    with pytest.raises(ValueError, match="time zone"):
        StreamReplay("amqp://x/", start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="offset"):
        StreamReplay("amqp://x/", start=-1)


# -- the stream on the broker ----------------------------------------------------------


async def test_the_stream_carries_the_configured_retention(
    amqp_url: str, names: ConsumerNames
) -> None:
    settings = load_settings({"stream_max_age": 7200, "stream_max_bytes": 123_456_789})
    retention = settings.stream_retention()
    assert retention is not None
    await publish(amqp_url, names.exchange, [message("pbx1", 1)], stream=retention)

    async with amqp_connection(amqp_url) as connection:
        # The broker accepts a declaration only with equivalent arguments: these.
        same = {"x-queue-type": "stream", "x-max-age": "7200s", "x-max-length-bytes": 123_456_789}
        channel = await connection.channel()
        await channel.declare_queue(names.stream, durable=True, arguments=same)
        for other in ({"x-max-age": "86400s"}, {"x-max-length-bytes": 1024**3}):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                await channel.declare_queue(names.stream, durable=True, arguments={**same, **other})


def test_stream_off_means_no_retention() -> None:
    assert load_settings({"stream": False}).stream_retention() is None
    default = load_settings({}).stream_retention()
    assert default == StreamRetention(max_age=86400, max_bytes=1024**3)


async def test_without_the_stream_setting_no_stream_is_declared(
    amqp_url: str, names: ConsumerNames
) -> None:
    await publish(amqp_url, names.exchange, [message("pbx1", 1)], stream=None)

    with pytest.raises(ConsumerError, match=r"stream '.*\.stream' does not exist"):
        await replay_all(amqp_url, names.exchange, until_now=True)


async def test_a_stream_with_other_arguments_is_a_clear_conflict(
    amqp_url: str, names: ConsumerNames
) -> None:
    other = StreamRetention(max_age=60, max_bytes=1_000_000)
    await publish(amqp_url, names.exchange, [message("pbx1", 1)], stream=other)

    publisher: AmqpPublisher[int] = AmqpPublisher(
        amqp_url, exchange=names.exchange, stream=RETENTION
    )
    with pytest.raises(TopologyConflict) as caught:
        await publisher.connect()
    text = str(caught.value)
    assert f"stream '{names.stream}' already exists with other arguments" in text
    assert "x-max-age" in text
    assert "\n" not in text
    assert not publisher.is_connected

    async with amqp_connection(amqp_url) as connection:  # the same retention is fine
        await declare_stream(await connection.channel(), names.exchange, other)


# -- replays ---------------------------------------------------------------------------


async def test_from_the_start_with_patterns_yields_the_matching_history_in_order(
    amqp_url: str, names: ConsumerNames
) -> None:
    history = [message(server, seq) for seq in range(1, 21) for server in ("pbx1", "pbx2")]
    await publish(amqp_url, names.exchange, history)

    items = await replay_all(
        amqp_url, names.exchange, patterns=["pbx2.#", "*.call.hangup"], until_now=True
    )

    expected = [
        m.message_id
        for m in history
        if m.routing_key.startswith("pbx2.") or m.routing_key.endswith(".hangup")
    ]
    assert ids(items) == expected
    assert [item.offset for item in items] == sorted(item.offset for item in items)
    assert all(isinstance(item.message, EventMessage) for item in items)
    hangup = next(item.message for item in items if item.message.event == "Hangup")
    assert isinstance(hangup, EventMessage)
    assert hangup.fields.Cause == 21  # type: ignore[attr-defined]
    assert {item.routing_key for item in items} >= {"pbx2.call.newchannel", "pbx1.call.hangup"}


async def test_resuming_from_a_saved_offset_has_no_gap_and_no_repeat(
    amqp_url: str, names: ConsumerNames
) -> None:
    first = [message("pbx1", seq) for seq in range(1, 31)]
    await publish(amqp_url, names.exchange, first)

    # A reader handles 12 messages, saves the offset of the last, and stops.
    seen: list[Replayed] = []
    async with asyncio.timeout(30), StreamReplay(amqp_url, exchange=names.exchange) as replay:
        async for item in replay:
            seen.append(item)
            if len(seen) == 12:
                break
    saved = seen[-1].offset

    second = [message("pbx1", seq) for seq in range(31, 51)]
    await publish(amqp_url, names.exchange, second)
    resumed = await replay_all(amqp_url, names.exchange, start=saved + 1, until_now=True)

    assert ids(seen) + ids(resumed) == [m.message_id for m in first + second]
    assert resumed[0].offset == saved + 1


async def test_following_live_messages_after_the_history(
    amqp_url: str, names: ConsumerNames
) -> None:
    await publish(amqp_url, names.exchange, [message("pbx1", seq) for seq in range(1, 6)])

    got: list[str] = []
    async with asyncio.timeout(30), StreamReplay(amqp_url, exchange=names.exchange) as replay:
        async for item in replay:
            got.append(item.message.id)
            if len(got) == 5:  # the history is read: publish more while reading
                await publish(amqp_url, names.exchange, [message("pbx1", s) for s in range(6, 9)])
            if len(got) == 8:
                break
    assert got == [message_id("pbx1", 1, seq) for seq in range(1, 9)]


async def test_until_now_on_an_empty_stream_ends_at_once(
    amqp_url: str, names: ConsumerNames
) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_exchange(names.exchange, "topic", durable=True)
        await declare_stream(channel, names.exchange, RETENTION)

    items = await replay_all(amqp_url, names.exchange, until_now=True, probe_timeout=0.5)
    assert items == []


async def test_a_start_time_keeps_what_was_read_from_then_on(
    amqp_url: str, names: ConsumerNames
) -> None:
    history = [message("pbx1", seq) for seq in range(1, 4)]
    await publish(amqp_url, names.exchange, history)
    read_at = datetime.fromtimestamp(RECEIVED_AT, UTC)  # every test body's received_at

    # Stored now, read days ago: the broker's seek by storage time keeps all three, and
    # the read time decides.
    kept = await replay_all(
        amqp_url, names.exchange, start=read_at - timedelta(seconds=1), until_now=True
    )
    assert ids(kept) == [m.message_id for m in history]
    after = await replay_all(
        amqp_url, names.exchange, start=read_at + timedelta(seconds=1), until_now=True
    )
    assert after == []
    # A start in the future is past the present: nothing, and the replay still ends.
    future = datetime.now(UTC) + timedelta(hours=1)
    assert (
        await replay_all(amqp_url, names.exchange, start=future, until_now=True, probe_timeout=1.0)
        == []
    )


async def test_the_stream_coexists_with_a_consumers_quorum_queue(
    amqp_url: str, names: ConsumerNames
) -> None:
    hangups: list[str] = []
    consumer = Consumer(
        amqp_url,
        exchange=names.exchange,
        patterns=["*.call.hangup"],
        queue=names.queue,
        dead_letter_queue=names.dead_letter_queue,
    )
    async with consumer:
        assert consumer.plan.is_quorum
        history = [message("pbx1", seq) for seq in range(1, 11)]
        await publish(amqp_url, names.exchange, history)
        async with asyncio.timeout(20):
            async for delivery in consumer:
                hangups.append(delivery.message.id)
                await delivery.ack()
                if len(hangups) == 5:
                    break

    assert hangups == [m.message_id for m in history if m.event == "Hangup"]
    # The quorum queue took its messages; the stream still has every one of them.
    items = await replay_all(amqp_url, names.exchange, until_now=True)
    assert ids(items) == [m.message_id for m in history]
