"""AMI actions over the bus: a client -> real RabbitMQ -> the bridge (in-process) -> simulator.

Every request must get exactly one reply with its correlation id, or, when no bridge
takes requests at all, fail fast on the client's side; nothing may hang.  Requests the
client library would refuse to send (CR/LF, bad JSON, no ``reply_to``) are published
raw, to check what the bridge does with them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue

from bridge.ami.simulator import AmiSimulator
from bridge.events.rpc import ErrorCode
from bridge.service.app import BridgeApp
from bridge.service.rpc_broker import declare_rpc_topology
from bridge.service.rpc_client import ActionClient, NoReply, NotDelivered
from tests.integration.harness import (
    SECRET,
    bridge_settings,
    broker_address,
    free_port,
    running_bridge,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames, amqp_connection, delete_names, queue_depth
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def rpc_exchange(amqp_url: str, amqp_names: AmqpNames) -> AsyncIterator[str]:
    """A request exchange of the test's own; it and its alternate are deleted after."""
    names = AmqpNames(f"{amqp_names.exchange}.actions")
    yield names.exchange
    await delete_names(amqp_url, names)


@dataclass
class Raw:
    """Publishes request bodies as they are and collects the replies by correlation id."""

    exchange: AbstractExchange
    replies: AbstractQueue
    arrived: dict[str, asyncio.Future[AbstractIncomingMessage]]

    async def request(
        self, routing_key: str, body: bytes, *, reply_to: bool = True, within: float = 5.0
    ) -> AbstractIncomingMessage:
        correlation = uuid.uuid4().hex
        future: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()
        self.arrived[correlation] = future
        message = aio_pika.Message(
            body,
            correlation_id=correlation,
            reply_to=self.replies.name if reply_to else None,
        )
        await self.exchange.publish(message, routing_key)
        async with asyncio.timeout(within):
            return await future


@asynccontextmanager
async def raw_requests(url: str, exchange: str) -> AsyncIterator[Raw]:
    async with amqp_connection(url) as connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        raw = Raw(await channel.get_exchange(exchange), replies, {})

        async def on_reply(message: AbstractIncomingMessage) -> None:
            raw.arrived[message.correlation_id or ""].set_result(message)

        await replies.consume(on_reply, no_ack=True)
        yield raw


def reply_of(message: AbstractIncomingMessage) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(message.body)
    return document


@asynccontextmanager
async def serving(
    amqp_url: str,
    exchange: str,
    rpc_exchange: str,
    journal_dir: Path,
    simulator: AmiSimulator,
    **extra: Any,
) -> AsyncIterator[BridgeApp]:
    """A bridge serving ``pbx1`` (the simulator), logged in and taking requests."""
    settings = bridge_settings(
        {"pbx1": simulator.port},
        amqp=amqp_url,
        exchange=exchange,
        journal_dir=journal_dir,
        rpc_exchange=rpc_exchange,
        **extra,
    )
    async with running_bridge(settings) as app:
        assert app.rpc is not None
        await simulator.wait_for_sessions(1, 10)
        async with asyncio.timeout(10):
            await app.rpc.ready.wait()
        yield app


async def test_ping_and_a_list_action_with_every_item(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    # Generated calls bring channels up; CoreShowChannels must list every one.
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=300, duration=0.5, seed=3) as pbx,
        serving(amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx),
        ActionClient(amqp_url, exchange=rpc_exchange) as client,
    ):
        await asyncio.sleep(0.8)  # the generated traffic is over: the channel count holds
        assert pbx.channel_count > 3

        ping = await client.call("pbx1", "Ping", timeout=5)
        channels = await client.call("pbx1", "coreshowchannels", timeout=5)

    assert ping.ok
    assert ping.response is not None
    assert ping.response["Ping"] == "Pong"
    assert (ping.server, ping.action, ping.events) == ("pbx1", "Ping", [])
    assert channels.ok
    assert channels.action == "CoreShowChannels"  # the allow-list's spelling
    assert channels.events is not None
    assert len(channels.events) == pbx.channel_count
    assert {e["Event"] for e in channels.events} == {"CoreShowChannel"}
    assert len({e["Uniqueid"] for e in channels.events}) == pbx.channel_count
    assert channels.complete is not None
    assert channels.complete["ListItems"] == str(pbx.channel_count)


async def test_a_reply_carries_the_correlation_id_and_the_contract_properties(
    amqp_url: str,
    amqp_names: AmqpNames,
    rpc_exchange: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cret-mailbox-pin"
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=0) as pbx,
        serving(amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx),
        raw_requests(amqp_url, rpc_exchange) as raw,
    ):
        with caplog.at_level(logging.INFO, logger="bridge.service.rpc"):
            # Two requests at once: each reply finds its own request.
            first, second = await asyncio.gather(
                raw.request("pbx1.ping", b"{}"), raw.request("pbx1", b'{"action": "ping"}')
            )
            request = {"action": "MailboxCount", "headers": {"Mailbox": "100", "Pin": secret}}
            failed = await raw.request("pbx1", orjson.dumps(request))

            def lines() -> list[str]:
                return [r.getMessage() for r in caplog.records if r.name == "bridge.service.rpc"]

            # The line is written once the reply is out, so it may follow the reply.
            await wait_for(lambda: len(lines()) >= 3, 5, "a log line per request")

    for message in (first, second, failed):
        assert message.content_type == "application/json"
        assert message.type == "ActionReply"
        assert message.app_id == "ami-bridge"
    assert reply_of(first)["ok"] is reply_of(second)["ok"] is True
    assert first.correlation_id != second.correlation_id
    assert reply_of(failed)["error"]["code"] == ErrorCode.ACTION_FAILED
    # One line per request: server, action, correlation id, outcome, duration; no values.
    logged = lines()
    assert any(
        line.startswith(f"action MailboxCount on pbx1 (correlation {failed.correlation_id!r}):")
        and " action_failed in " in line
        and line.endswith(" ms")
        for line in logged
    ), logged
    assert any(f"(correlation {first.correlation_id!r}): ok in" in line for line in logged)
    assert secret not in caplog.text


async def test_originate_is_refused_unless_enabled(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    headers = {"Channel": "PJSIP/101", "Exten": "200", "Context": "default", "Priority": "1"}
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as pbx:
        async with (
            serving(amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx),
            ActionClient(amqp_url, exchange=rpc_exchange) as client,
        ):
            refused = await client.call("pbx1", "Originate", headers, timeout=5)
        async with (
            serving(
                amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx, rpc_enable=["Originate"]
            ),
            ActionClient(amqp_url, exchange=rpc_exchange) as client,
        ):
            forwarded = await client.call("pbx1", "Originate", headers, timeout=5)
            broken = await client.call(
                "pbx1", "Originate", {**headers, "Channel": "PJSIP"}, timeout=5
            )

    assert refused.error is not None
    assert refused.error.code is ErrorCode.NOT_ALLOWED
    assert refused.response is None  # the PBX never saw it
    # Enabled, it reaches the PBX, which answers it (sync: once the call is answered).
    assert forwarded.ok, forwarded
    assert forwarded.response is not None
    assert forwarded.response["Message"] == "Originate successfully queued"
    assert broken.error is not None
    assert broken.error.code is ErrorCode.ACTION_FAILED
    assert broken.error.message == "Invalid channel"
    assert broken.response is not None
    assert broken.response["Response"] == "Error"


async def test_unknown_servers_and_malformed_requests_get_error_replies(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=0) as pbx,
        serving(amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx),
        ActionClient(amqp_url, exchange=rpc_exchange) as client,
        raw_requests(amqp_url, rpc_exchange) as raw,
    ):
        # No binding matches these: the alternate exchange's queue gets them.
        unknown = await client.call("pbx9", "Ping", timeout=5)
        too_deep = reply_of(await raw.request("pbx1.ping.now", b"{}"))
        # These reach pbx1's queue and are refused before the PBX sees them.
        injected = reply_of(
            await raw.request(
                "pbx1", orjson.dumps({"action": "Ping", "headers": {"X": "1\r\nAction: Logoff"}})
            )
        )
        not_json = reply_of(await raw.request("pbx1.ping", b"\xff{"))
        no_action = reply_of(await raw.request("pbx1", b'{"headers": {}}'))
        headers_not_object = reply_of(
            await raw.request("pbx1", b'{"action": "Ping", "headers": 1}')
        )
        # A request without reply_to is dropped; the consumer goes on with the next one.
        with pytest.raises(TimeoutError):
            await raw.request("pbx1.ping", b"{}", reply_to=False, within=0.3)
        after = await client.call("pbx1", "Ping", timeout=5)
        assert pbx.sessions == 1  # the injected Logoff never reached the PBX

    assert unknown.error is not None
    assert unknown.error.code is ErrorCode.UNKNOWN_SERVER
    assert unknown.server == "pbx9"
    assert too_deep["error"]["code"] == ErrorCode.MALFORMED_REQUEST
    for reply in (injected, not_json, no_action, headers_not_object):
        assert reply["ok"] is False
        assert reply["error"]["code"] == ErrorCode.MALFORMED_REQUEST, reply
        assert reply["server"] == "pbx1"
    assert "CR or LF" in injected["error"]["message"]
    assert after.ok


async def test_a_pbx_that_stops_answering_gives_a_timeout_reply_and_blocks_nothing(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=0) as pbx,
        serving(amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx, rpc_timeout=0.6),
        ActionClient(amqp_url, exchange=rpc_exchange) as client,
    ):
        pbx.answer_pings = False
        ping = asyncio.create_task(client.call("pbx1", "Ping", timeout=5))
        await asyncio.sleep(0.1)
        # Another request is not held up by the one waiting for its answer.
        channels = await client.call("pbx1", "CoreShowChannels", timeout=5)
        assert not ping.done()
        timed_out = await ping

    assert channels.ok
    assert timed_out.error is not None
    assert timed_out.error.code is ErrorCode.TIMEOUT
    assert "0.6 s" in timed_out.error.message


async def test_a_server_whose_ami_is_down_gets_not_connected(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    settings = bridge_settings(
        {"pbx1": free_port()},  # nothing listens there
        amqp=amqp_url,
        exchange=amqp_names.exchange,
        journal_dir=tmp_path,
        rpc_exchange=rpc_exchange,
    )
    async with running_bridge(settings) as app:
        assert app.rpc is not None
        async with asyncio.timeout(10):
            await app.rpc.ready.wait()
        async with ActionClient(amqp_url, exchange=rpc_exchange) as client:
            reply = await client.call("pbx1", "Ping", timeout=5)

    assert reply.error is not None
    assert reply.error.code is ErrorCode.NOT_CONNECTED


async def test_without_a_running_bridge_the_client_fails_at_once(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    with pytest.raises(NotDelivered, match="does not exist"):
        async with ActionClient(amqp_url, exchange=rpc_exchange):
            pass
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as pbx:
        async with serving(amqp_url, amqp_names.exchange, rpc_exchange, tmp_path, pbx) as app:
            assert app.rpc is not None
            queue = app.rpc.queue_name
        # The bridge is gone, and with it every queue its requests could go to.
        async with ActionClient(amqp_url, exchange=rpc_exchange) as client:
            async with asyncio.timeout(3):
                with pytest.raises(NotDelivered, match="no bridge takes requests"):
                    await client.call("pbx1", "Ping", timeout=5)
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue(queue, passive=True)


async def test_requests_are_taken_again_after_the_broker_connection_drops(
    amqp_url: str, amqp_names: AmqpNames, rpc_exchange: str, tmp_path: Path
) -> None:
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=0) as pbx,
    ):
        fast = {"amqp_reconnect_base": 0.1, "amqp_reconnect_cap": 0.5}
        async with (
            serving(
                via_proxy(amqp_url, proxy), amqp_names.exchange, rpc_exchange, tmp_path, pbx, **fast
            ) as app,
            ActionClient(amqp_url, exchange=rpc_exchange) as client,
        ):
            before = await client.call("pbx1", "Ping", timeout=5)
            await proxy.cut()
            await asyncio.sleep(0.3)
            # The bridge's queues went with its connection: nothing takes the request.
            with pytest.raises(NotDelivered):
                await client.call("pbx1", "Ping", timeout=1)
            proxy.heal()

            async def answered() -> bool:
                try:
                    return (await client.call("pbx1", "Ping", timeout=1)).ok
                except (NotDelivered, NoReply):
                    return False

            await wait_for(answered, 10, "a reply after the reconnect")
            # Stopping while the publisher still reconnects would end the bridge as forced.
            await wait_for(lambda: app.publisher.is_connected, 10, "the publisher to reconnect")

    assert before.ok


async def test_a_conflicting_request_exchange_turns_requests_off_not_the_bridge(
    amqp_url: str,
    amqp_names: AmqpNames,
    rpc_exchange: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_exchange(rpc_exchange, aio_pika.ExchangeType.FANOUT)
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as pbx:
        settings = bridge_settings(
            {"pbx1": pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            rpc_exchange=rpc_exchange,
        )
        with caplog.at_level(logging.ERROR, logger="bridge.service.rpc"):
            # running_bridge also checks that the bridge still exits 0.
            async with running_bridge(settings) as app:
                await wait_for(
                    lambda: "action requests are off" in caplog.text, 10, "the RPC error"
                )
                await pbx.wait_for_sessions(1, 10)
                ready, why = app.readiness()
                assert ready
                assert why.startswith("ready; action requests are off: ")
                assert rpc_exchange in why

    assert f"exchange {rpc_exchange!r}" in caplog.text


async def test_a_request_nobody_takes_in_time_expires_instead_of_running_late(
    amqp_url: str, rpc_exchange: str
) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        queues = await declare_rpc_topology(
            channel, rpc_exchange, f"{rpc_exchange}.bridge-test", ["pbx1"], ttl=0.2
        )
        exchange = await channel.get_exchange(rpc_exchange)
        for key in ("pbx1", "pbx1.ping", "pbx9.ping"):
            await exchange.publish(aio_pika.Message(b"{}", reply_to="nobody"), key)
        assert await queue_depth(channel, queues.own.name) == 2
        assert await queue_depth(channel, queues.unrouted.name) == 1  # no binding matched
        await asyncio.sleep(0.4)
        assert await queue_depth(channel, queues.own.name) == 0
