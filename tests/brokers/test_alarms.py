"""A resource alarm on a private node: the broker blocks publishing, the bridge says so
once, keeps reading into the journal, and loses nothing once the alarm clears."""

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
    running_bridge,
    wait_for,
)
from tests.support import AmqpNames
from tests.support.rabbit_nodes import RabbitNode

SERVER = "pbx1"


async def test_a_memory_alarm_is_reported_and_nothing_is_lost(
    rabbit_node: RabbitNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = AmqpNames("test.alarm")
    caplog.set_level(logging.INFO, logger="bridge")
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=200, duration=10.0, seed=21) as pbx,
        Consumer.bound(rabbit_node.url, names.exchange, names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port}, amqp=rabbit_node.url, exchange=names.exchange, journal_dir=tmp_path
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            traffic_ends = asyncio.get_running_loop().time() + 10.0
            await consumer.wait_until(lambda b: len(b) > 100, 10, "events flowing")
            try:
                await asyncio.to_thread(rabbit_node.ctl, "set_vm_memory_high_watermark", "0.0001")
                await wait_for(lambda: app.publisher.blocked is not None, 15, "the alarm")
                ready, why = app.readiness()
                assert not ready
                assert "broker blocks publishing" in why
                assert app.metrics.broker_blocked._value.get() == 1
                depth = app.pipelines[0].journal.depth
                await asyncio.sleep(2.0)
                # Reading and journalling go on; publishing waits within its window.
                assert app.pipelines[0].journal.depth > depth + 200
                assert app.publisher.in_flight <= settings.publish_window
            finally:
                await asyncio.to_thread(rabbit_node.ctl, "set_vm_memory_high_watermark", "0.4")
            await wait_for(lambda: app.publisher.blocked is None, 15, "the alarm to clear")
            assert app.metrics.broker_blocked._value.get() == 0
            await asyncio.sleep(max(0.0, traffic_ends + 0.3 - asyncio.get_running_loop().time()))
            expected = pbx.events_sent + 2
            await consumer.wait_until(
                lambda b: len(first_occurrences(b)) >= expected, 30, f"{expected} messages"
            )
            assert app.readiness() == (True, "ready")
    unique = first_occurrences(consumer.bodies)
    assert_contiguous(sorted(unique, key=lambda b: b["seq"]))
    blocked = [r for r in caplog.records if "blocked publishing:" in r.getMessage()]
    unblocked = [r for r in caplog.records if "unblocked publishing" in r.getMessage()]
    assert len(blocked) == 1
    assert blocked[0].levelno == logging.WARNING
    assert "low on memory" in blocked[0].getMessage()  # the broker's own reason
    assert len(unblocked) == 1
