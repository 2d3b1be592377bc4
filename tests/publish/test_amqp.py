"""The confirming publisher, its wire encoding and the message record, against real RabbitMQ.

Broker tests use ``amqp_url`` (``$AMQP_URL`` or a container) and per-test names that are
deleted afterwards.  Outages go through a loopback :class:`TcpProxy` in front of the broker.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aio_pika
import pamqp.frame
import pytest
import trustme
import yarl
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from bridge.publish.amqp import AmqpPublisher, Outcome, PublishResult
from bridge.publish.amqp_frames import PublishEncoder
from bridge.publish.broker import BrokerAuthError, BrokerUnavailable, TlsOptions, mask_url
from bridge.publish.message import HeaderValue, OutgoingMessage
from bridge.publish.topology import TopologyConflict, declare_topology
from tests.support import (
    AmqpNames,
    amqp_connection,
    bind_queue,
    collect,
    collect_until,
    queue_depth,
)
from tests.support.tcp_proxy import TcpProxy

BODY = b'{"event":"Newchannel","server":"pbx1","channel":"PJSIP/100-00000001"}'


def _message(
    i: int, routing_key: str = "pbx1.call.newchannel", **headers: HeaderValue
) -> OutgoingMessage:
    return OutgoingMessage(
        routing_key=routing_key,
        body=BODY,
        message_id=f"pbx1-7-{i}",
        event="Newchannel",
        timestamp=1_760_000_000 + i,
        headers={"event": "Newchannel", "server": "pbx1", "classes": ["call"], "seq": i, **headers},
    )


# -- message record -----------------------------------------------------------------------

_header_values = st.one_of(
    st.text(), st.integers(-(2**63), 2**63 - 1), st.lists(st.text(), max_size=4)
)
_messages = st.builds(
    OutgoingMessage,
    routing_key=st.text(max_size=60),
    body=st.binary(max_size=2000),
    message_id=st.text(min_size=1, max_size=60),
    event=st.text(min_size=1, max_size=60),
    timestamp=st.integers(0, 2**37),  # within datetime's range, for the pamqp comparison
    headers=st.dictionaries(st.text(max_size=20), _header_values, max_size=8),
)


@given(_messages)
def test_record_round_trip(message: OutgoingMessage) -> None:
    assert OutgoingMessage.from_record(message.to_record()) == message


def test_record_keeps_binary_body_exactly() -> None:
    message = OutgoingMessage("k", b"\x00\xff\r\n\xce" * 10, "id", "E", 1, {})
    record = message.to_record()
    assert record.endswith(message.body)
    assert OutgoingMessage.from_record(record).body == message.body


def _record(meta: bytes, version: int = 1, declared: int | None = None) -> bytes:
    size = len(meta) if declared is None else declared
    return bytes([version]) + size.to_bytes(4, "big") + meta


@pytest.mark.parametrize(
    ("record", "error"),
    [
        (b"", "too short"),
        (b"\x01\x00\x00", "too short"),
        (_record(b"[]", version=2), "unknown message record version 2"),
        (_record(b"[]", declared=255), "truncated"),
        (_record(b"{}"), "metadata unreadable"),
        (_record(b"nul"), "metadata unreadable"),
        (_record(b'["k","a","b",1]'), "metadata unreadable"),
        (_record(b'[1,"a","b",1,{}]'), "wrong types"),
        (_record(b'["k","a","b",true,{}]'), "wrong types"),
        (_record(b'["k","a","b",1,[1]]'), "headers must be an object"),
        (_record(b'["k","a","b",1,{"h":true}]'), "unsupported value type"),
        (_record(b'["k","a","b",1,{"h":1.5}]'), "unsupported value type"),
        (_record(b'["k","a","b",1,{"h":[1]}]'), "list of strings"),
    ],
)
def test_bad_records_are_value_errors(record: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        OutgoingMessage.from_record(record)


# -- wire encoding ------------------------------------------------------------------------


def _pamqp_publish(message: OutgoingMessage, channel: int, exchange: str, max_body: int) -> bytes:
    properties = spec.Basic.Properties(
        content_type="application/json",
        headers=message.headers,  # type: ignore[arg-type]
        delivery_mode=2,
        message_id=message.message_id,
        timestamp=datetime.datetime.fromtimestamp(message.timestamp, datetime.UTC),
        message_type=message.event,
        app_id="ami-bridge",
    )
    frames = [
        pamqp.frame.marshal(
            spec.Basic.Publish(exchange=exchange, routing_key=message.routing_key, mandatory=True),
            channel,
        ),
        pamqp.frame.marshal(ContentHeader(0, len(message.body), properties), channel),
    ]
    for start in range(0, len(message.body), max_body):
        frames.append(
            pamqp.frame.marshal(ContentBody(message.body[start : start + max_body]), channel)
        )
    return b"".join(frames)


@pytest.mark.parametrize(
    "message",
    [
        _message(1),
        _message(2, seq=2**40, extra="é ü", empty_list=[]),
        OutgoingMessage("k", b"", "id", "E", 0, {}),
        OutgoingMessage("pbx1.call.x%2Ey", bytes(range(256)) * 40, "id-2", "Big", 5, {"n": -7}),
    ],
)
def test_encoder_matches_pamqp(message: OutgoingMessage) -> None:
    encoder = PublishEncoder(channel_number=3, exchange="ami.events", max_body_frame=4096)
    out: list[bytes] = []
    encoder.encode(message, out)
    encoder.encode(message, out)  # second time through the method-frame cache
    expected = _pamqp_publish(message, 3, "ami.events", 4096)
    assert b"".join(out) == expected * 2


@given(_messages, st.integers(1, 2000))
def test_encoder_matches_pamqp_for_any_message(message: OutgoingMessage, max_body: int) -> None:
    out: list[bytes] = []
    PublishEncoder(1, "ami.events", max_body).encode(message, out)
    assert b"".join(out) == _pamqp_publish(message, 1, "ami.events", max_body)


@pytest.mark.parametrize(
    "headers",
    [
        {"flag": True},
        {"ratio": 0.5},
        {"nested": {"a": 1}},
        {"mixed": ["a", 1]},
        {"a": "x", "k" * 129: "long names are truncated"},
        {"a": "x", "k" * 129: 1},
    ],
)
def test_encoder_leaves_unusual_headers_to_pamqp(headers: Any) -> None:
    message = OutgoingMessage("k", b"body", "id", "E", 1, headers)
    out: list[bytes] = []
    PublishEncoder(1, "x", 4096).encode(message, out)
    assert b"".join(out) == _pamqp_publish(message, 1, "x", 4096)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (OutgoingMessage("é" * 128, b"", "id", "E", 0), "routing key is 256 bytes"),
        (OutgoingMessage("k", b"", "é" * 128, "E", 0), "message id is 256 bytes"),
        (OutgoingMessage("k", b"", "id", "é" * 128, 0), "event name is 256 bytes"),
        (OutgoingMessage("k", b"", "", "E", 0), "message id is empty"),
        (OutgoingMessage("k", b"", "id", "E", -1), "not a 64-bit unix time"),
    ],
)
def test_encoder_rejects_what_amqp_cannot_carry(message: OutgoingMessage, error: str) -> None:
    out: list[bytes] = []
    with pytest.raises(ValueError, match=error):
        PublishEncoder(1, "x", 4096).encode(message, out)
    assert out == []


def test_mask_url_hides_the_password_only() -> None:
    masked = mask_url("amqps://bridge:s3cret@mq.example:5671/prod")
    assert "s3cret" not in masked
    assert masked == "amqps://bridge:***@mq.example:5671/prod"
    assert mask_url("amqp://mq.example/") == "amqp://mq.example/"


def test_tls_verifies_by_default() -> None:
    assert TlsOptions().context().verify_mode is ssl.CERT_REQUIRED
    assert TlsOptions().context().check_hostname
    assert TlsOptions(verify=False).context().verify_mode is ssl.CERT_NONE


# -- against the broker -------------------------------------------------------------------


@pytest.fixture
async def publisher(amqp_url: str, amqp_names: AmqpNames) -> AsyncIterator[AmqpPublisher[int]]:
    publisher: AmqpPublisher[int] = AmqpPublisher(amqp_url, exchange=amqp_names.exchange)
    await publisher.connect()
    yield publisher
    await publisher.close()


async def _results(publisher: AmqpPublisher[int], count: int) -> list[PublishResult[int]]:
    """Take results until ``count`` have arrived (bounded by a timeout)."""
    results: list[PublishResult[int]] = []
    async with asyncio.timeout(10):
        async for batch in publisher.results():
            results += batch
            if len(results) >= count:
                break
    return results


async def _publish_all(publisher: AmqpPublisher[int], messages: Iterable[OutgoingMessage]) -> None:
    for i, message in enumerate(messages):
        await publisher.publish(message, i)


def _with_url_port(url: str, port: int, **changes: str) -> str:
    parsed = yarl.URL(url).with_host("127.0.0.1").with_port(port)
    if "password" in changes:
        parsed = parsed.with_password(changes["password"])
    return str(parsed)


async def test_topology_is_declared_and_idempotent(amqp_url: str, amqp_names: AmqpNames) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        first = await declare_topology(channel, amqp_names.exchange)
        second = await declare_topology(channel, amqp_names.exchange)
        assert first.name == second.name == amqp_names.exchange
        # passive declares fail unless the entities exist
        await channel.declare_exchange(amqp_names.exchange, passive=True)
        await channel.declare_exchange(amqp_names.unrouted, passive=True)
        assert await queue_depth(channel, amqp_names.unrouted) == 0


async def test_topology_conflict_is_a_clear_error(amqp_url: str, amqp_names: AmqpNames) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_exchange(amqp_names.exchange, aio_pika.ExchangeType.DIRECT)
        with pytest.raises(TopologyConflict, match=amqp_names.exchange):
            await declare_topology(channel, amqp_names.exchange)


async def test_unroutable_messages_land_in_the_unrouted_queue(
    publisher: AmqpPublisher[int], amqp_url: str, amqp_names: AmqpNames
) -> None:
    await publisher.publish(_message(1, "nobody.binds.this"), 1)
    [result] = await _results(publisher, 1)
    assert result.outcome is Outcome.CONFIRMED
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(amqp_names.unrouted, passive=True)
        [message] = await collect(queue, 1)
        assert message.routing_key == "nobody.binds.this"
        assert message.message_id == "pbx1-7-1"


async def test_published_messages_arrive_in_order_with_their_properties(
    publisher: AmqpPublisher[int], amqp_url: str, amqp_names: AmqpNames
) -> None:
    count = 500
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        queue = await bind_queue(channel, amqp_names.exchange, amqp_names.queue, "pbx1.call.*")
        await _publish_all(publisher, (_message(i) for i in range(count)))
        results = await _results(publisher, count)
        received = await collect(queue, count)

    assert [r.outcome for r in results] == [Outcome.CONFIRMED] * count
    assert sorted(r.token for r in results) == list(range(count))
    assert (publisher.confirmed, publisher.nacked, publisher.returned, publisher.failed) == (
        count,
        0,
        0,
        0,
    )
    assert publisher.in_flight == 0
    assert [m.message_id for m in received] == [f"pbx1-7-{i}" for i in range(count)]
    first = received[0]
    assert first.body == BODY
    assert first.routing_key == "pbx1.call.newchannel"
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.content_type == "application/json"
    assert first.type == "Newchannel"
    assert first.app_id == "ami-bridge"
    assert first.timestamp == datetime.datetime.fromtimestamp(1_760_000_000, datetime.UTC)
    assert first.headers == {
        "event": "Newchannel",
        "server": "pbx1",
        "classes": ["call"],
        "seq": 0,
    }


async def test_message_with_no_route_is_returned(
    publisher: AmqpPublisher[int], amqp_url: str, amqp_names: AmqpNames
) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        await channel.queue_delete(amqp_names.unrouted)  # now nothing takes unmatched keys
    await publisher.publish(_message(1, "nobody.binds.this"), 41)
    [result] = await _results(publisher, 1)
    assert (result.outcome, result.token) == (Outcome.RETURNED, 41)
    assert "NO_ROUTE" in result.reason
    assert publisher.returned == 1
    assert publisher.confirmed == 0


async def test_message_refused_by_a_full_queue_is_nacked(
    publisher: AmqpPublisher[int], amqp_url: str, amqp_names: AmqpNames
) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        full = await channel.declare_queue(
            amqp_names.queue, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await full.bind(amqp_names.exchange, "#")
        await publisher.publish(_message(1), 7)
        [result] = await _results(publisher, 1)
    assert (result.outcome, result.token) == (Outcome.NACKED, 7)
    assert result.message == _message(1)
    assert publisher.nacked == 1


async def test_window_waits_for_results_to_be_taken(amqp_url: str, amqp_names: AmqpNames) -> None:
    publisher: AmqpPublisher[int] = AmqpPublisher(amqp_url, exchange=amqp_names.exchange, window=3)
    await publisher.connect()
    try:
        await _publish_all(publisher, (_message(i) for i in range(3)))
        blocked = asyncio.create_task(publisher.publish(_message(3), 3))
        async with asyncio.timeout(5):
            await publisher.wait_settled()
        await asyncio.sleep(0.05)
        assert not blocked.done()  # three results outstanding
        assert len(publisher.take_results()) == 3
        async with asyncio.timeout(5):
            await blocked
        assert [r.token for r in await _results(publisher, 1)] == [3]
    finally:
        await publisher.close()


async def test_results_end_after_close(publisher: AmqpPublisher[int]) -> None:
    await publisher.publish(_message(1), 1)
    await publisher.close()
    batches = [batch async for batch in publisher.results()]
    assert [r.outcome for batch in batches for r in batch] == [Outcome.CONFIRMED]
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await publisher.publish(_message(2), 2)


async def test_wrong_credentials_are_a_clear_error_without_the_password(amqp_url: str) -> None:
    url = yarl.URL(amqp_url)
    bad = str(url.with_password("Wr0ng-Pa55word"))
    publisher: AmqpPublisher[int] = AmqpPublisher(bad)
    with pytest.raises(BrokerAuthError) as info:
        await publisher.connect()
    text = f"{info.value} {info.value!r} {publisher!r}"
    assert "Wr0ng-Pa55word" not in text
    assert f"{url.host}:{url.port}" in str(info.value)
    assert repr(url.user) in str(info.value)
    assert info.value.__cause__ is None  # the library's exception is not chained...
    assert info.value.__suppress_context__  # ...nor shown as context
    assert not publisher.is_connected


async def test_unreachable_broker_is_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    publisher: AmqpPublisher[int] = AmqpPublisher(f"amqp://guest:pw-x9@127.0.0.1:{port}/")
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}") as info:
        await publisher.connect()
    assert "pw-x9" not in str(info.value)
    with pytest.raises(BrokerUnavailable):
        await publisher.publish(_message(1), 1)


async def test_connection_cut_fails_in_flight_messages_and_reconnect_delivers_all(
    amqp_url: str, amqp_names: AmqpNames
) -> None:
    broker = yarl.URL(amqp_url)
    async with TcpProxy(broker.host or "127.0.0.1", broker.port or 5672) as proxy:
        url = str(broker.with_host("127.0.0.1").with_port(proxy.port))
        publisher: AmqpPublisher[int] = AmqpPublisher(url, exchange=amqp_names.exchange)
        await publisher.connect()
        async with amqp_connection(amqp_url) as connection:
            channel = await connection.channel()
            queue = await bind_queue(channel, amqp_names.exchange, amqp_names.queue)
            messages = [_message(i) for i in range(300)]

            await _publish_all(publisher, messages[:100])
            assert {r.outcome for r in await _results(publisher, 100)} == {Outcome.CONFIRMED}

            proxy.stall()  # the next 50 go out but can never be confirmed
            for i in range(100, 150):
                await publisher.publish(messages[i], i)
            await asyncio.sleep(0.1)
            assert publisher.in_flight == 50
            await proxy.cut()
            async with asyncio.timeout(5):
                await publisher.wait_connection_lost()
            failed = await _results(publisher, 50)
            assert sorted(r.token for r in failed) == list(range(100, 150))
            assert {r.outcome for r in failed} == {Outcome.FAILED}
            assert all("connection lost" in r.reason for r in failed)
            assert (publisher.failed, publisher.in_flight, publisher.is_connected) == (50, 0, False)
            with pytest.raises(BrokerUnavailable):
                await publisher.publish(messages[150], 150)

            proxy.heal()
            await publisher.connect()
            for result in failed:  # the caller retries what failed, then carries on
                await publisher.publish(result.message, result.token)
            for i in range(150, 300):
                await publisher.publish(messages[i], i)
            again = await _results(publisher, 200)
            assert {r.outcome for r in again} == {Outcome.CONFIRMED}
            await publisher.close()

            wanted = {m.message_id for m in messages}
            received = await collect_until(queue, lambda got: wanted <= {m.message_id for m in got})
            assert {m.message_id for m in received} == wanted  # at least once, none lost


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, str]:
    """A throwaway CA and the path of its certificate."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


@pytest.fixture
async def tls_broker(amqp_url: str, tls_ca: tuple[trustme.CA, str]) -> AsyncIterator[str]:
    """``amqps://`` URL of a TLS-terminating proxy (certificate for localhost) to the broker."""
    ca, _ = tls_ca
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    broker = yarl.URL(amqp_url)
    async with TcpProxy(
        broker.host or "127.0.0.1", broker.port or 5672, tls=server_context
    ) as proxy:
        yield str(broker.with_scheme("amqps").with_host("localhost").with_port(proxy.port))


async def test_tls_with_a_ca_file(
    tls_broker: str, tls_ca: tuple[trustme.CA, str], amqp_names: AmqpNames
) -> None:
    publisher: AmqpPublisher[int] = AmqpPublisher(
        tls_broker, exchange=amqp_names.exchange, tls=TlsOptions(ca_file=tls_ca[1])
    )
    await publisher.connect()
    try:
        await publisher.publish(_message(1), 1)
        [result] = await _results(publisher, 1)
        assert result.outcome is Outcome.CONFIRMED
    finally:
        await publisher.close()


async def test_tls_verifies_the_broker_certificate_by_default(
    tls_broker: str, amqp_names: AmqpNames
) -> None:
    publisher: AmqpPublisher[int] = AmqpPublisher(
        tls_broker, exchange=amqp_names.exchange, tls=TlsOptions()
    )
    with pytest.raises(BrokerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await publisher.connect()


async def test_publish_waiting_for_the_window_fails_when_the_connection_drops(
    amqp_url: str, amqp_names: AmqpNames
) -> None:
    broker = yarl.URL(amqp_url)
    async with TcpProxy(broker.host or "127.0.0.1", broker.port or 5672) as proxy:
        url = str(broker.with_host("127.0.0.1").with_port(proxy.port))
        publisher: AmqpPublisher[int] = AmqpPublisher(url, exchange=amqp_names.exchange, window=2)
        await publisher.connect()
        proxy.stall()
        await _publish_all(publisher, [_message(0), _message(1)])
        blocked = asyncio.create_task(publisher.publish(_message(2), 2))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        await proxy.cut()
        with pytest.raises(BrokerUnavailable, match="not connected"):
            async with asyncio.timeout(5):
                await blocked
        assert [(r.token, r.outcome) for r in publisher.take_results()] == [
            (0, Outcome.FAILED),
            (1, Outcome.FAILED),
        ]
        await publisher.close()


async def test_channel_closed_by_the_broker_fails_the_message_and_reconnect_recovers(
    publisher: AmqpPublisher[int], amqp_url: str, amqp_names: AmqpNames
) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        await channel.exchange_delete(amqp_names.exchange)
    await publisher.publish(_message(1), 1)  # the broker answers with 404 NOT_FOUND
    async with asyncio.timeout(5):
        await publisher.wait_connection_lost()
    [result] = await _results(publisher, 1)
    assert result.outcome is Outcome.FAILED
    assert "NOT_FOUND" in result.reason
    assert not publisher.is_connected

    await publisher.connect()  # declares the exchange again
    await publisher.publish(_message(2), 2)
    [result] = await _results(publisher, 1)
    assert (result.token, result.outcome) == (2, Outcome.CONFIRMED)


async def test_close_reports_unconfirmed_messages_as_failed_and_ends_results(
    amqp_url: str, amqp_names: AmqpNames
) -> None:
    broker = yarl.URL(amqp_url)
    async with TcpProxy(broker.host or "127.0.0.1", broker.port or 5672) as proxy:
        url = str(broker.with_host("127.0.0.1").with_port(proxy.port))
        publisher: AmqpPublisher[int] = AmqpPublisher(url, exchange=amqp_names.exchange)
        await publisher.connect()
        proxy.stall()
        await _publish_all(publisher, [_message(i) for i in range(5)])

        async def take_all() -> list[PublishResult[int]]:
            return [r async for batch in publisher.results() for r in batch]

        taker = asyncio.create_task(take_all())
        closing = asyncio.create_task(publisher.close(grace=0.2))
        async with asyncio.timeout(5):
            results = await taker
            await proxy.cut()  # the stalled broker would never answer Connection.Close
            await closing
        assert [(r.token, r.outcome, r.reason) for r in results] == [
            (i, Outcome.FAILED, "publisher closed") for i in range(5)
        ]


async def test_missing_tls_file_is_a_config_error_not_an_outage(tmp_path: Path) -> None:
    publisher: AmqpPublisher[int] = AmqpPublisher(
        "amqps://guest:guest@localhost:5671/", tls=TlsOptions(ca_file=str(tmp_path / "no.pem"))
    )
    with pytest.raises(FileNotFoundError):
        await publisher.connect()
