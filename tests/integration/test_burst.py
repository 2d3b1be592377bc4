"""A burst on a busy host, against a PBX that drops a slow reader as Asterisk does.

The simulator runs as a process of its own (``ami-bridge simulate``, as Asterisk is
another process) and replays the real 450-call burst (55,597 events, up to 44,000
events/s over a quarter second) on Asterisk's schedule, with Asterisk's default
``writetimeout`` of 100 ms: a session whose write blocks longer is dropped and its
queued events thrown away, which no journal can undo.  It stamps every event with
``SequenceNumber`` (Asterisk's ``debug = on``), so the test knows exactly which events
reached the bus.  The broker link is cut for the whole
burst, so the bridge can only read and journal, and two busy-looping processes take the
host's CPUs meanwhile.  Nothing may be lost: the session is never dropped and every
event is on the bus once the broker is back.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import orjson

from bridge.publish.topology import declare_topology
from tests.integration.harness import (
    SECRET,
    BridgeProcess,
    broker_address,
    free_port,
    run_args,
    scrape_metrics,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames, amqp_connection, bind_queue
from tests.support.cpu_hog import cpu_hogs
from tests.support.tcp_proxy import TcpProxy

SERVER = "pbx1"
CAPTURE = Path(__file__).parent.parent / "fixtures" / "captures" / "burst-450.ami.gz"
EVENTS = 55_597
#: How long the capture lasts, at its own pace.
SECONDS = 10.5
#: Asterisk's default ``writetimeout``.
WRITE_TIMEOUT = 0.1
PRODUCED = re.compile(r"replay done, (\d+) events")


async def sequence_numbers(url: str, queue: str, expected: int) -> tuple[set[int], int]:
    """Read ``queue`` until ``expected`` messages came, or it stays empty for a second.

    Returns the distinct ``SequenceNumber`` values of its events (under ``extra`` in the
    body) and how many ``connected`` statuses it held.  Read after the fact, with no
    contract check per message, so the reading costs the bridge nothing.
    """
    numbers: set[int] = set()
    connected = 0
    count = 0
    async with amqp_connection(url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=5000)
        declared = await channel.get_queue(queue)
        async with declared.iterator(no_ack=True) as messages:
            while count < expected:
                try:
                    async with asyncio.timeout(1.0):
                        message = await anext(messages)
                except TimeoutError:
                    break
                count += 1
                body = orjson.loads(message.body)
                if body.get("event") == "connected":
                    connected += 1
                extra = body.get("extra") or {}
                if "SequenceNumber" in extra:
                    numbers.add(int(extra["SequenceNumber"]))
    return numbers, connected


async def test_a_burst_on_a_busy_host_with_the_broker_cut_loses_nothing(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    port = free_port()
    simulate = ["simulate", "--port", str(port), "--secret", SECRET, "--sequence-numbers"]
    simulate += ["--replay", str(CAPTURE), "--write-timeout", str(WRITE_TIMEOUT)]
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        await declare_topology(channel, amqp_names.exchange)
        await bind_queue(channel, amqp_names.exchange, amqp_names.queue)
    metrics_port = free_port()
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        BridgeProcess(simulate, tmp_path / "simulator.log") as pbx,
    ):
        await wait_for(lambda: "listening on" in pbx.log(), 20, "the simulator to listen")
        args = run_args(
            {SERVER: port},
            amqp=via_proxy(amqp_url, proxy),
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            metrics_host="127.0.0.1",
            metrics_port=metrics_port,
        )
        env = {"AMI_BRIDGE_AMI_SECRET": SECRET}
        async with BridgeProcess(args, tmp_path / "bridge.log", env) as bridge:
            await wait_for(lambda: "AMI logged in" in bridge.log(), 15, "the bridge to log in")
            await proxy.cut()  # the bridge only reads and journals during the burst
            with cpu_hogs(2):
                await wait_for(
                    lambda: PRODUCED.search(pbx.log()) is not None, SECONDS + 15, "the burst"
                )
            proxy.heal()
            assert "session dropped" not in pbx.log(), pbx.log()

            async def all_confirmed() -> bool:
                figures = await scrape_metrics(metrics_port)
                published = figures.get("ami_bridge_events_published_total", 0.0)
                return published >= EVENTS + 2 and figures["ami_bridge_journal_depth"] == 0

            await wait_for(all_confirmed, 40, f"{EVENTS} events confirmed")
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.wait(15) == 0
        pbx.send_signal(signal.SIGTERM)
        assert await pbx.wait(10) == 0
    assert f"{EVENTS} events sent, 0 sessions dropped" in pbx.log()
    numbers, connected = await sequence_numbers(amqp_url, amqp_names.queue, EVENTS + 2)
    # "0 sessions dropped" and every SequenceNumber below are the proof: the simulator,
    # like Asterisk, sends nothing to a session that is not logged in.
    assert connected >= 1
    assert len(numbers) == EVENTS
    assert numbers == set(range(EVENTS))
