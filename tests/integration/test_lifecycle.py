"""Starting without a broker and stopping on SIGTERM, with the bridge as a child process.

* No broker at start: the bridge logs one clear line per attempt, spaced by its backoff,
  never logs in to AMI meanwhile, and starts bridging once the broker is reachable.
* SIGTERM with a backlog: the bridge logs off AMI, publishes what is journalled once the
  broker answers again, and exits 0 within ``shutdown_timeout`` with an empty journal.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import re
import signal
from pathlib import Path

from bridge.ami.protocol import Header
from bridge.ami.simulator import AmiSimulator
from bridge.publish.journal import Journal
from tests.ami.fake_server import FULLY_BOOTED, FakeAmiServer
from tests.integration.contract import Body
from tests.integration.harness import (
    SECRET,
    BridgeProcess,
    Consumer,
    broker_address,
    run_args,
    via_proxy,
    wait_for,
)
from tests.support import AmqpNames
from tests.support.tcp_proxy import TcpProxy

SERVER = "pbx1"
_RETRY_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) WARNING bridge\.publish\.failover: (.+); "
    r"retrying in ([\d.]+) s$",
    re.MULTILINE,
)


def retry_lines(log: str) -> list[tuple[float, str, float]]:
    """(time, message, announced delay) of each broker retry line."""
    found = []
    for stamp, message, delay in _RETRY_LINE.findall(log):
        at = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        found.append((at, message, float(delay)))
    return found


def user_event(n: int) -> list[Header]:
    return [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", f"tick-{n}")]


async def test_unreachable_broker_at_start_is_retried_with_backoff_then_bridged(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        AmiSimulator(port=0, secret=SECRET, rate=50, seed=9) as pbx,
    ):
        await proxy.cut()
        args = run_args(
            {SERVER: pbx.port},
            amqp=via_proxy(amqp_url, proxy),
            exchange=amqp_names.exchange,
            journal_dir=tmp_path / "journal",
            ami_reconnect_base=0.4,
            ami_reconnect_cap=1.0,
        )
        env = {"AMI_BRIDGE_AMI_SECRET": SECRET}
        async with BridgeProcess(args, tmp_path / "bridge.log", env) as bridge:
            await wait_for(lambda: len(retry_lines(bridge.log())) >= 5, 20, "5 retry lines")
            assert bridge.running
            assert pbx.sessions == 0  # no AMI login before the broker is there
            retries = retry_lines(bridge.log())
            for (at, message, delay), (next_at, _, _) in itertools.pairwise(retries):
                assert f"127.0.0.1:{proxy.port}" in message
                # Each attempt waits at least its announced delay (printed to 0.1 s).
                assert next_at - at >= delay - 0.06
            span = retries[-1][0] - retries[0][0]
            assert span > 0.5  # not a busy loop: 5 attempts take a while

            async with Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer:
                proxy.heal()
                await consumer.wait_until(lambda b: len(b) > 20, 20, "events once the broker is up")
                bridge.send_signal(signal.SIGTERM)
                assert await bridge.wait(15) == 0
    assert consumer.bodies[0]["event"] == "connected"
    assert consumer.bodies[1]["event"] == "FullyBooted"
    log = bridge.log()
    assert "guest:***@" in log
    assert ":guest@" not in log  # the broker password never shows


async def test_sigterm_logs_off_drains_the_journal_and_exits_0(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    backlog = 300
    journal_dir = tmp_path / "journal"
    async with (
        TcpProxy(*broker_address(amqp_url)) as proxy,
        FakeAmiServer(users={"bridge": SECRET}, after_login=[FULLY_BOOTED]) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        args = run_args(
            {SERVER: pbx.port},
            amqp=via_proxy(amqp_url, proxy),
            exchange=amqp_names.exchange,
            journal_dir=journal_dir,
            shutdown_timeout=5,
        )
        env = {"AMI_BRIDGE_AMI_SECRET": SECRET}
        async with BridgeProcess(args, tmp_path / "bridge.log", env) as bridge:
            await consumer.wait_until(lambda b: len(b) >= 2, 15, "connected and FullyBooted")
            proxy.stall()  # confirms stop coming: the events below wait in the journal
            await pbx.latest.send(*(user_event(n) for n in range(backlog)))
            await asyncio.sleep(0.5)
            assert len(consumer.bodies) == 2

            bridge.send_signal(signal.SIGTERM)
            await wait_for(lambda: bool(pbx.latest.actions_named("Logoff")), 5, "Logoff")
            proxy.heal()
            assert await bridge.wait(5 + 2) == 0

            def everything(bodies: list[Body]) -> bool:
                return len(bodies) >= backlog + 3 and bodies[-1]["event"] == "disconnected"

            await consumer.wait_until(everything, 5, "the backlog and the disconnected status")

    ticks = [b["fields"]["UserEvent"] for b in consumer.bodies if b["event"] == "UserEvent"]
    assert ticks == [f"tick-{n}" for n in range(backlog)]
    assert consumer.bodies[-1]["fields"]["reason"] == "session stopped"
    with Journal.open(journal_dir / SERVER) as journal:
        assert journal.depth == 0
