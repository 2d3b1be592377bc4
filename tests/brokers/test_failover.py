"""Coming back: publishing resumes within 2 s of a node answering again, however long the
backoff had grown, because nodes that were unreachable are probed during the wait."""

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


async def test_publishing_resumes_within_2_s_of_the_broker_answering_again(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)  # every logger, the libraries' too
    loop = asyncio.get_running_loop()
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=200, duration=18.0, seed=51) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=via_proxy(amqp_url, proxy),
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            traffic_ends = loop.time() + 18.0
            await consumer.wait_until(lambda b: len(b) > 100, 10, "events flowing")
            await proxy.cut()
            outage_from = len(caplog.records)
            await asyncio.sleep(12.0)  # long enough for the backoff to reach its 5 s cap
            confirmed = app.publisher.confirmed
            proxy.heal()
            healed_at = loop.time()
            await wait_for(lambda: app.publisher.confirmed > confirmed, 10, "confirms again")
            resumed_after = loop.time() - healed_at
            outage_lines = caplog.records[outage_from:]
            await asyncio.sleep(max(0.0, traffic_ends + 0.3 - loop.time()))
            expected = pbx.events_sent + 2
            await consumer.wait_until(
                lambda b: len(first_occurrences(b)) >= expected, 30, f"{expected} messages"
            )
    assert resumed_after < 2.0, f"publishing resumed {resumed_after:.1f} s after the heal"
    # A 12 s outage is a few clean lines: the loss, one per attempt (a round waits 2.5 s
    # on average once the backoff is capped), no library line, no traceback.
    print(*(f"{r.levelname} {r.name}: {r.getMessage()}" for r in outage_lines), sep="\n")
    assert len(outage_lines) <= 15, [r.getMessage() for r in outage_lines]
    assert all(r.name.startswith("bridge.") for r in outage_lines), outage_lines
    assert not any(r.exc_info for r in outage_lines)
    assert_contiguous(sorted(first_occurrences(consumer.bodies), key=lambda b: b["seq"]))
