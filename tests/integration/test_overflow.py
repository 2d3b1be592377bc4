"""A full journal: drops are counted, announced on ``{server}.bridge.overflow``, and the
newest events still arrive (the default ``drop_oldest`` policy)."""

from __future__ import annotations

from pathlib import Path

from bridge.ami.simulator import AmiSimulator
from tests.integration.contract import Body
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


def fill_seqs(bodies: list[Body]) -> list[int]:
    """The ``Seq`` of each filler UserEvent (a user field: it is kept under ``extra``)."""
    return [int(b["extra"]["Seq"]) for b in bodies if b["event"] == "UserEvent"]


async def test_a_full_journal_drops_the_oldest_and_announces_it(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=0) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=via_proxy(amqp_url, proxy),
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            journal_max_bytes=64 * 1024,
        )
        async with running_bridge(settings) as app:
            pipeline = app.pipelines[0]
            await pbx.wait_for_sessions(1, 10)
            await proxy.cut()  # nothing is confirmed: everything read stays journalled
            for n in range(600):  # about 140 KiB of events, over twice the cap
                pbx.inject(
                    [
                        ("Event", "UserEvent"),
                        ("Privilege", "user,all"),
                        ("UserEvent", "Fill"),
                        ("Seq", str(n)),
                        ("Padding", "x" * 180),
                    ]
                )
            await wait_for(lambda: pbx.events_sent == 600, 10, "600 events sent")
            await wait_for(
                lambda: pipeline.journal.dropped > 0, 10, "the journal to drop its oldest"
            )
            proxy.heal()

            def announced(bodies: list[Body]) -> bool:
                return any(b["event"] == "overflow" for b in bodies) and 599 in fill_seqs(bodies)

            await consumer.wait_until(announced, 30, "the overflow status and the newest event")
            await wait_for(lambda: pipeline.journal.depth == 0, 10, "the journal to drain")
            dropped_metric = app.metrics.registry.get_sample_value(
                "ami_bridge_journal_dropped_total", {"server": SERVER, "reason": "max_bytes"}
            )

    overflow = [b for b in consumer.bodies if b["event"] == "overflow"]
    assert overflow[0]["kind"] == "status"
    assert overflow[0]["fields"]["reason"] == "max_bytes"
    dropped = sum(b["fields"]["dropped"] for b in overflow)
    assert dropped == pipeline.journal.dropped == dropped_metric > 0
    seqs = fill_seqs(consumer.bodies)
    # The oldest went, the newest stayed, and what arrived is in order.
    assert seqs == sorted(seqs)
    assert seqs[-1] == 599
    assert len(set(seqs)) + dropped >= 600
