"""A hot-standby pair that starts while the broker is down.

Both members are given the address of a loopback proxy in front of the shared broker
that does not listen yet, so every connection is refused, as by a broker that is down.
A proxy rather than a private RabbitMQ node: the outage is only the members' way to the
broker, which costs no node start on a shared machine and lets the consumer be bound on
the real broker before the members can reach it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yarl

from bridge.cli.exit_codes import ExitCode
from tests.ha.pair import (
    Traffic,
    actives,
    assert_each_id_names_one_message,
    number,
    running_pair,
)
from tests.ha.test_takeover import everything_arrived
from tests.integration.harness import broker_address, free_port, via_proxy, wait_for
from tests.support import AmqpNames
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

RATE = 500.0


def journalled(folder: Path) -> int:
    """Bytes in a member's journal folder."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


async def test_both_start_while_the_broker_is_down_and_one_publishes(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    # Not listening yet: the members are refused until the proxy opens on this port.
    proxy = TcpProxy(*broker_address(amqp_url), port=free_port())
    members_url = via_proxy(amqp_url, proxy)
    async with running_pair(
        amqp_url, amqp_names.exchange, amqp_names.queue, tmp_path, members_amqp=members_url
    ) as pair:
        await pair.simulator.wait_for_sessions(2, 30)
        traffic = Traffic(pair.simulator, RATE)
        traffic.start()
        folders = [tmp_path / name for name in pair.members]
        await wait_for(lambda: all(journalled(f) > 0 for f in folders), 10, "both journals")
        before = [journalled(f) for f in folders]
        await asyncio.sleep(2)
        after = [journalled(f) for f in folders]
        assert all(b > a for a, b in zip(before, after, strict=True)), (before, after)
        assert not pair.consumer.bodies, "nothing can be published while the broker is down"
        assert all(member.running for member in pair.members.values())

        read_while_down = traffic.sent
        async with proxy:
            await pair.consumer.wait_until(
                lambda b: bool(actives(b)), 20, "a member to take the lock"
            )
            await asyncio.sleep(1)
            await traffic.stop()
            await everything_arrived(pair, traffic)
            await asyncio.sleep(1)  # whatever a second publisher would still send

            bodies = pair.consumer.bodies
            events = [b for b in bodies if number(b) is not None]
            # Dedupe by the PBX-wide id: each id names one injected event.
            by_id = {b["event_id"]: number(b) for b in events}
            assert set(by_id.values()) == set(range(traffic.sent))
            assert len(by_id) == traffic.sent
            taken = actives(bodies)
            assert len(taken) == 1, taken
            active = taken[0]["fields"]["instance"]
            standby = next(name for name in pair.members if name != active)
            # One AMI session published: every event carries the same epoch.
            epochs = {b["epoch"] for b in events}
            assert len(epochs) == 1, f"events from {len(epochs)} sessions: {epochs}"
            assert_each_id_names_one_message(bodies)
            duplicates = pair.consumer.duplicates
            print(f"{traffic.sent} events, {duplicates} duplicates, active {active}")
            # The active published what it had read while the broker was down.
            assert taken[0]["fields"]["republished"] >= read_while_down
            assert "stands by" in pair.members[standby].log()
            assert all(member.running for member in pair.members.values())


async def test_a_member_refused_at_start_exits_2_after_reading(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    """Reading at once changes nothing of the exit on a refusal at start."""
    wrong = yarl.URL(amqp_url).with_password("wrong")
    async with running_pair(
        amqp_url,
        amqp_names.exchange,
        amqp_names.queue,
        tmp_path,
        names=("a",),
        members_amqp=str(wrong),
    ) as pair:
        member = pair.members["a"]
        assert await member.wait(30) == ExitCode.CONFIG_ERROR
        log = member.log()
        assert "exiting (amqp_on_auth_failure=exit)" in log
        assert "Traceback" not in log
        assert ":wrong@" not in log
        assert not pair.consumer.bodies
