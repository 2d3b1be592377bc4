"""Outages on either side of the bridge: the broker link cut, a SIGKILL, the PBX dropping us.

The broker sits behind a :class:`~tests.support.tcp_proxy.TcpProxy`, so the bridge loses it
while the test's consumer (connected directly) keeps receiving.  Delivery is
at-least-once: the checks dedupe by message id and then demand every message, in order.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from bridge.ami.simulator import AmiSimulator
from bridge.publish.journal import Journal
from tests.integration.contract import Body, assert_contiguous, first_occurrences
from tests.integration.harness import (
    SECRET,
    BridgeProcess,
    Consumer,
    bridge_settings,
    broker_address,
    free_port,
    run_args,
    running_bridge,
    scrape_metrics,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames
from tests.support.tcp_proxy import TcpProxy

SERVER = "pbx1"
STREAM_SECONDS = 8.0


async def test_broker_cut_for_5_s_at_1000_events_per_s_loses_nothing(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=1000, duration=STREAM_SECONDS, seed=3) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=via_proxy(amqp_url, proxy),
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            ami_reconnect_base=0.2,
            ami_reconnect_cap=1.0,
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            traffic_ends = asyncio.get_running_loop().time() + STREAM_SECONDS
            await asyncio.sleep(1.5)
            await proxy.cut()
            received_before_cut = len(consumer.bodies)
            await asyncio.sleep(5.0)
            # The AMI side kept reading into the journal while the broker was away.
            assert app.pipelines[0].journal.depth > 2000
            assert not app.publisher.is_connected
            proxy.heal()
            await asyncio.sleep(traffic_ends + 0.3 - asyncio.get_running_loop().time())
            expected = pbx.events_sent + 2  # + FullyBooted + connected

            def all_arrived(bodies: list[Body]) -> bool:
                return len(first_occurrences(bodies)) >= expected

            await consumer.wait_until(all_arrived, 30, f"{expected} distinct messages")
            await wait_for(lambda: app.pipelines[0].journal.depth == 0, 10, "the journal to drain")
            assert pbx.dropped_sessions == 0  # reads never waited on the broker

    assert 0 < received_before_cut < expected
    unique = first_occurrences(consumer.bodies)
    assert_contiguous(unique[:expected])
    assert len({b["epoch"] for b in unique[:expected]}) == 1


async def test_sigkill_with_a_journalled_backlog_loses_nothing(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "journal"
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=500, duration=2.0, seed=5) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        metrics_port = free_port()
        args = run_args(
            {SERVER: pbx.port},
            amqp=via_proxy(amqp_url, proxy),
            exchange=amqp_names.exchange,
            journal_dir=journal_dir,
            metrics_host="127.0.0.1",
            metrics_port=metrics_port,
            ami_reconnect_base=0.2,
            ami_reconnect_cap=1,
        )
        env = {"AMI_BRIDGE_AMI_SECRET": SECRET}
        async with BridgeProcess(args, tmp_path / "first.log", env) as first:
            await pbx.wait_for_sessions(1, 15)
            await proxy.cut()
            await asyncio.sleep(2.3)  # the simulator's traffic is over
            expected = pbx.events_sent + 2  # + FullyBooted + connected

            async def all_journalled() -> bool:
                figures = await scrape_metrics(metrics_port)
                published = figures.get("ami_bridge_events_published_total", 0.0)
                return published + figures.get("ami_bridge_journal_depth", 0.0) >= expected

            await wait_for(all_journalled, 10, f"{expected} messages read by the bridge")
            figures = await scrape_metrics(metrics_port)
            journalled = int(figures["ami_bridge_journal_depth"])
            assert journalled > expected // 2
            first.send_signal(signal.SIGKILL)
            assert await first.wait(5) == -signal.SIGKILL

        proxy.heal()
        async with BridgeProcess(args, tmp_path / "second.log", env) as second:

            def killed_epoch_complete(bodies: list[Body]) -> bool:
                epoch = min(b["epoch"] for b in bodies) if bodies else None
                seqs = {b["seq"] for b in bodies if b["epoch"] == epoch}
                return len(seqs) >= expected

            await consumer.wait_until(killed_epoch_complete, 20, f"{expected} killed-epoch seqs")

            async def drained() -> bool:
                return (await scrape_metrics(metrics_port)).get("ami_bridge_journal_depth") == 0

            await wait_for(drained, 10, "the restarted bridge's journal to drain")
            second.send_signal(signal.SIGTERM)
            assert await second.wait(15) == 0

    epochs = sorted({b["epoch"] for b in consumer.bodies})
    assert len(epochs) == 2  # the killed run's and the restarted run's
    killed = first_occurrences(
        sorted((b for b in consumer.bodies if b["epoch"] == epochs[0]), key=lambda b: b["seq"])
    )
    assert [b["seq"] for b in killed] == list(range(1, expected + 1))
    with Journal.open(journal_dir / SERVER) as journal:
        assert journal.depth == 0


async def test_ami_drop_publishes_disconnected_gap_connected_then_a_new_epoch(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=300, seed=7) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            ami_reconnect_base=0.2,
            ami_reconnect_cap=0.5,
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            await consumer.wait_until(lambda b: len(b) > 100, 10, "traffic before the drop")
            pbx.drop_connections()

            def events_after_reconnect(bodies: list[Body]) -> bool:
                gap = next((i for i, b in enumerate(bodies) if b["event"] == "gap"), None)
                return gap is not None and len(bodies) > gap + 50

            await consumer.wait_until(events_after_reconnect, 10, "events after the reconnect")
            await pbx.wait_for_sessions(1, 5)
            await wait_for(lambda: app.pipelines[0].journal.depth == 0, 5, "the journal to drain")

    bodies = consumer.bodies
    assert_contiguous(bodies)
    statuses = [(i, b) for i, b in enumerate(bodies) if b["kind"] == "status"]
    names = [b["event"] for _, b in statuses]
    assert names[:4] == ["connected", "disconnected", "gap", "connected"]
    (_, first), (d, disconnected), (g, gap), (c, connected) = statuses[:4]
    assert first["epoch"] == disconnected["epoch"] < gap["epoch"] == connected["epoch"]
    assert (d, c) == (g - 1, g + 1)  # nothing between them
    assert bodies[d - 1]["epoch"] == first["epoch"]  # events ran right up to the drop
    assert gap["fields"]["previous_epoch"] == first["epoch"]
    assert gap["fields"]["last_seq"] == disconnected["seq"]
    assert 0 < gap["fields"]["disconnected_for"] < 5
    assert consumer.messages[g].routing_key == f"{SERVER}.bridge.gap"
    after = bodies[c + 1 :]
    assert len(after) >= 50
    assert all(b["epoch"] == gap["epoch"] for b in after[:50])
    assert after[0]["event"] == "FullyBooted"
