"""A hung broker: the TCP connection stays open and nothing answers.  The heartbeat (or
the confirm deadline) notices within 15 s, and the bridge fails over to the next node."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bridge.ami.simulator import AmiSimulator
from tests.integration.contract import assert_contiguous, first_occurrences
from tests.integration.harness import (
    SECRET,
    Consumer,
    bridge_settings,
    broker_address,
    running_bridge,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames
from tests.support.tcp_proxy import TcpProxy

SERVER = "pbx1"


async def test_a_stalled_link_is_detected_within_15_s_and_the_next_node_takes_over(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge")
    loop = asyncio.get_running_loop()
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=200, duration=20.0, seed=31) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        hung = via_proxy(amqp_url, proxy)
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=[hung, amqp_url],  # two ways to one broker: the first one will hang
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            traffic_ends = loop.time() + 20.0
            assert app.publisher.url == hung
            await consumer.wait_until(lambda b: len(b) > 100, 10, "events flowing")
            proxy.stall()
            stalled_at = loop.time()
            await wait_for(lambda: app.publisher.url == amqp_url, 20, "the failover")
            detected_after = loop.time() - stalled_at
            await asyncio.sleep(max(0.0, traffic_ends + 0.3 - loop.time()))
            expected = pbx.events_sent + 2
            await consumer.wait_until(
                lambda b: len(first_occurrences(b)) >= expected, 30, f"{expected} messages"
            )
            proxy.heal()
    assert detected_after < 15.0, f"a hung broker went unnoticed for {detected_after:.1f} s"
    assert_contiguous(sorted(first_occurrences(consumer.bodies), key=lambda b: b["seq"]))
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert any("stopped answering" in line for line in lost), lost
    assert not any(r.exc_info for r in caplog.records)
